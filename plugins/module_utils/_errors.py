# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error base of the collection's module_utils (private).

Every stack (Vault, Kubernetes, databases, files) raises a subclass of :class:`KeyopsModuleError`;
:func:`run_module` turns any of them into ``fail_json`` with the message and the details, so a module
that talks to two stacks (a database rewrap through Vault) needs one ``except``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class KeyopsModuleError(Exception):
    """A failure explained for the operator: what went wrong and how to fix it, never a secret."""

    def __init__(self, msg, status=None, **details):
        super(KeyopsModuleError, self).__init__(msg)
        self.msg = msg
        self.status = status
        self.details = details


def run_module(module, connect, work):
    """``work(connect(module))`` -> ``exit_json``; every :class:`KeyopsModuleError` -> ``fail_json``.

    ``work`` may always return a ``diff``: it is dropped unless the task runs with ``--diff``.  A partial
    result may travel in the error's ``details`` so the operator sees how far the task got.
    """
    try:
        result = work(connect(module))
    except KeyopsModuleError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    if not getattr(module, "_diff", False):
        result.pop("diff", None)
    module.exit_json(**result)
