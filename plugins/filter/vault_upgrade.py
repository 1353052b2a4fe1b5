# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind playbooks/vault_upgrade.yml; the logic lives in module_utils/_upgrade.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.keyops.lifecycle.plugins.module_utils import _upgrade


def _wrap(function):
    def filter_function(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except _upgrade.UpgradeInputError as exc:
            raise AnsibleFilterError(str(exc))
    filter_function.__name__ = function.__name__
    filter_function.__doc__ = function.__doc__
    return filter_function


def ready(state, node_id=None, version=None):
    ok, reason = _upgrade.autopilot_ready(state, node_id, version)
    return {"ok": ok, "reason": reason}


def report(plan, versions_after, snapshot=None, preflight=None):
    entry = _upgrade.upgrade_report(plan, versions_after, snapshot, preflight)
    entry["markdown"] = _upgrade.upgrade_report_markdown(entry)
    return entry


class FilterModule(object):
    def filters(self):
        return {"vault_upgrade_plan": _wrap(_upgrade.plan_upgrade),
                "vault_upgrade_ready": _wrap(ready),
                "vault_upgrade_report": _wrap(report)}
