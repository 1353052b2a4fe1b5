# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's modules inside the Ansible worker when their target is the controller.

Every module task normally starts a new Python interpreter that imports ``ansible.module_utils.basic`` and the
client libraries again (about 0.4 s per task on a small machine) - most of the time of a rotation with little to
do.  When the task runs on the controller itself (local connection, no become, no async, and the host's Python
is the one running Ansible), this action plugin runs the same module code in the worker process Ansible forked
for the task, the way the AnsiballZ wrapper runs it: same arguments (module defaults, check mode, diff, no_log,
verbosity), same JSON result, parsed and cleaned by the same controller code.  Any other task - another host, a
different interpreter, become, async, or ``keyops_lifecycle_in_process: false`` - runs exactly as without it.

Each module that may run this way has an action plugin of its own name in ``plugins/action/`` that is this class.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile

from ansible import constants as C
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.plugins.action.normal import ActionModule as OrdinaryAction
from ansible.utils.vars import merge_hash
from ansible.vars.clean import remove_internal_keys

try:  # ansible-core 2.19+: the code the AnsiballZ wrapper itself runs a module with
    from ansible.module_utils import _internal as _module_internal
    from ansible.module_utils._internal._ansiballz import _loader
    from ansible.module_utils.common.json import Direction, get_module_encoder
except ImportError:  # older ansible-core: every task takes the ordinary path
    _loader = None

# The serialization profile of modules without their own (every module of this collection).
PROFILE = "legacy"
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local", "ansible.legacy.local")
OPT_OUT = "keyops_lifecycle_in_process"


def why_not_in_process(transport, become, async_val, interpreter, controller_python, enabled, supported=True):
    """None when the task may run in the worker process, else the reason it takes the ordinary path."""
    if not supported:
        return "this ansible-core cannot run modules in process"
    if not enabled:
        return "%s is false" % OPT_OUT
    if transport not in LOCAL_CONNECTIONS:
        return "the task runs over the %s connection, not on the controller" % transport
    if become:
        return "the task uses become"
    if async_val:
        return "the task is async"
    if not interpreter or os.path.normpath(os.path.abspath(interpreter)) != os.path.normpath(controller_python):
        return "the host's Python (%s) is not the one running Ansible (%s)" % (interpreter or "auto", controller_python)
    return None


class ActionModule(OrdinaryAction):
    """ansible.builtin.normal (a separate module process), unless the task may run in the worker process."""

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        reason = self._why_not_in_process(task_vars)
        if reason is not None:
            self._display.vvvv("keyops.lifecycle: %s runs as a separate module process: %s" % (self._task.action, reason))
            return super(ActionModule, self).run(tmp, task_vars)
        result = ActionBase.run(self, tmp, task_vars)  # the checks every action makes, without normal's execution
        return merge_hash(result, self._execute_in_process(task_vars))

    def _why_not_in_process(self, task_vars):
        host_vars = task_vars
        if self._task.delegate_to:
            host_vars = task_vars.get("ansible_delegated_vars", {}).get(self._task.delegate_to, task_vars)
        interpreter = C.config.get_config_value("INTERPRETER_PYTHON", variables=host_vars)
        interpreter = self._templar.template(interpreter) if interpreter else interpreter
        enabled = boolean(self._templar.template(host_vars.get(OPT_OUT, True)), strict=False)
        return why_not_in_process(self._connection.transport, self._play_context.become, self._task.async_val,
                                  interpreter if isinstance(interpreter, str) else None, sys.executable, enabled,
                                  supported=_loader is not None)

    def _execute_in_process(self, task_vars):
        module_name = self._task.action
        module_args = dict(self._task.args)
        self._update_module_args(module_name, module_args, task_vars)
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(
            module_name, collection_list=self._task.collections)
        module_fqn = "ansible_collections.%s.plugins.modules.%s" % tuple(found.resolved_fqcn.rsplit(".", 1))
        # What a module process would find in its temporary directory, removed afterwards as that one is.
        module_tmp = tempfile.mkdtemp(prefix="ansible-moduletmp-keyops-")
        module_args["_ansible_tmpdir"] = module_tmp
        environment = {}
        self._compute_environment_string(environment)
        self._display.vvv("keyops.lifecycle: running %s in the worker process" % module_fqn)
        try:
            stdout, rc = self._run_module(module_fqn, module_args, environment)
        finally:
            if not module_args.get("_ansible_keep_remote_files"):
                shutil.rmtree(module_tmp, ignore_errors=True)
        data = self._parse_returned_data({"rc": rc, "stdout": stdout, "stderr": ""}, PROFILE)
        data.pop("_ansible_suppress_tmpdir_delete", None)
        remove_internal_keys(data)
        return data

    @staticmethod
    def _run_module(module_fqn, module_args, environment):
        """The module's printed result and exit code, run as the AnsiballZ wrapper runs it."""
        encoder = get_module_encoder(PROFILE, Direction.CONTROLLER_TO_MODULE)
        json_params = json.dumps({"ANSIBLE_MODULE_ARGS": module_args}, cls=encoder).encode()
        saved_environ, saved_argv = dict(os.environ), list(sys.argv)
        output = io.StringIO()
        rc = 0
        # Module-side code paths (warnings into the result, target-side JSON) as in a module process.
        was_controller, _module_internal.is_controller = _module_internal.is_controller, False
        os.environ.update(dict((str(name), str(value)) for name, value in environment.items()))
        try:
            with contextlib.redirect_stdout(output):
                _loader.run_module(json_params=json_params, profile=PROFILE, module_fqn=module_fqn, modlib_path="",
                                   extensions={})
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            _module_internal.is_controller = was_controller
            os.environ.clear()
            os.environ.update(saved_environ)
            sys.argv[:] = saved_argv
        return output.getvalue(), rc
