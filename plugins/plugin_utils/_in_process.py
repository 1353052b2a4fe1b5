# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's modules inside the Ansible worker when their target is the controller.

Every module task normally starts a new Python interpreter that imports ``ansible.module_utils.basic`` and the
client libraries again - most of the time of a rotation with little to do.  When the task runs on the
controller itself (local connection, no become, no async) and the host's Python is the very Python running
Ansible (the same executable in the same environment, see ``_interpreter.py``), this action plugin runs the same
module code in the worker process Ansible forked for the task, the way the AnsiballZ wrapper runs it: same
arguments (module defaults, check mode, diff, no_log, verbosity), same JSON result, parsed and cleaned by the
same controller code.  Any other task - another host, another interpreter or environment, become, async, an
ansible-core line the test matrix does not cover, or ``keyops_lifecycle_in_process: false`` - runs exactly as
without it.  The choice is made before the module runs; ``-vvv`` says which path a task took, ``-vvvv`` why.

Only public ansible-core APIs are imported here; the internals live in ``_module_runtime.py``, looked up and
checked per ansible-core minor.  Each module that may run this way has an action plugin of its own name in
``plugins/action/`` that is this class.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import sys
import tempfile

from ansible import constants as C
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.plugins.action.normal import ActionModule as OrdinaryAction
from ansible.release import __version__ as ANSIBLE_CORE_VERSION
from ansible.utils.vars import merge_hash

from ansible_collections.keyops.lifecycle.plugins.plugin_utils import _interpreter, _module_runtime

LOCAL_CONNECTIONS = ("local", "ansible.builtin.local", "ansible.legacy.local")
OPT_OUT = "keyops_lifecycle_in_process"
DISCOVERED_FACT = "discovered_interpreter_python"


def why_not_in_process(transport, become, async_val, enabled, environment):
    """None when nothing about the task itself keeps it from the worker process, else the reason."""
    if not enabled:
        return "%s is false" % OPT_OUT
    if transport not in LOCAL_CONNECTIONS:
        return "the task runs over the %s connection, not on the controller" % transport
    if become:
        return "the task uses become"
    if async_val:
        return "the task is async"
    python_settings = sorted(name for name in environment if str(name).startswith("PYTHON"))
    if python_settings:
        return "the task's environment sets %s for the module's Python" % ", ".join(python_settings)
    return None


class ActionModule(OrdinaryAction):
    """ansible.builtin.normal (a separate module process), unless the task may run in the worker process."""

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars if task_vars is not None else {}
        try:
            runtime, reason = self._in_process_runtime(task_vars)
        except Exception as exc:  # pylint: disable=broad-except  # the ordinary path never depends on this one
            runtime, reason = None, "the in-process check failed (%s: %s)" % (type(exc).__name__, exc)
        if runtime is None:
            self._display.vvvv("keyops.lifecycle: %s runs as a separate module process: %s" % (self._task.action, reason))
            return super(ActionModule, self).run(tmp, task_vars)
        result = ActionBase.run(self, tmp, task_vars)  # the checks every action makes, without normal's execution
        return merge_hash(result, self._execute_in_process(runtime, task_vars))

    def _host_vars(self, task_vars):
        if self._task.delegate_to:
            return task_vars.get("ansible_delegated_vars", {}).get(self._task.delegate_to, task_vars)
        return task_vars

    def _in_process_runtime(self, task_vars):
        """(runtime, None) when the task may run in the worker process, else (None, the reason)."""
        host_vars = self._host_vars(task_vars)
        self._task_environment = {}
        self._compute_environment_string(self._task_environment)
        enabled = boolean(self._templar.template(host_vars.get(OPT_OUT, True)), strict=False)
        reason = why_not_in_process(self._connection.transport, self._play_context.become, self._task.async_val,
                                    enabled, self._task_environment)
        if reason is not None:
            return None, reason
        runtime, reason = _module_runtime.load(ANSIBLE_CORE_VERSION)
        if runtime is None:
            return None, reason
        try:
            controller = _interpreter.controller_environment(sys.executable, sys.prefix, sys.base_prefix)
        except _interpreter.UnknownInterpreter as exc:
            return None, str(exc)
        search_path = self._task_environment.get("PATH", os.environ.get("PATH", os.defpath))
        reason = _interpreter.same_python(self._host_interpreter(runtime, task_vars, host_vars), search_path,
                                          controller)
        return (runtime, None) if reason is None else (None, reason)

    def _host_interpreter(self, runtime, task_vars, host_vars):
        """The host's Python as the ordinary path would run it, discovering it first when it is to be discovered
        (recorded as the fact ansible-core itself records, so neither path discovers it again)."""
        interpreter = C.config.get_config_value("INTERPRETER_PYTHON", variables=host_vars)
        interpreter = self._templar.template(interpreter) if interpreter else interpreter
        if interpreter and interpreter not in _interpreter.DISCOVERY_MODES:
            return str(interpreter)
        facts = host_vars.setdefault("ansible_facts", {})
        if not facts.get(DISCOVERED_FACT):
            facts[DISCOVERED_FACT] = runtime.discover_interpreter(self, interpreter or "auto", host_vars)
            if not self._task.delegate_to or self._task.delegate_facts:
                self._discovered_interpreter_key = DISCOVERED_FACT
                self._discovered_interpreter = facts[DISCOVERED_FACT]
        return str(facts[DISCOVERED_FACT])

    def _execute_in_process(self, runtime, task_vars):
        module_name = self._task.action
        module_args = dict(self._task.args)
        self._update_module_args(module_name, module_args, task_vars)
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(
            module_name, collection_list=self._task.collections)
        module_fqn = "ansible_collections.%s.plugins.modules.%s" % tuple(found.resolved_fqcn.rsplit(".", 1))
        # What a module process would find in its temporary directory, removed afterwards as that one is.
        module_tmp = tempfile.mkdtemp(prefix="ansible-moduletmp-keyops-")
        module_args["_ansible_tmpdir"] = module_tmp
        self._display.vvv("keyops.lifecycle: running %s in the worker process" % module_fqn)
        try:
            stdout, rc = runtime.run_module(module_fqn, module_args, self._task_environment)
        finally:
            if not module_args.get("_ansible_keep_remote_files"):
                shutil.rmtree(module_tmp, ignore_errors=True)
        try:
            data = runtime.task_result(self, stdout, rc)
        except Exception as exc:  # pylint: disable=broad-except  # the module's work is done: report it anyway
            self._display.vvvv("keyops.lifecycle: the controller's result parser failed (%s: %s); %s's own JSON "
                               "result is reported" % (type(exc).__name__, exc, module_name))
            data = _module_runtime.plain_task_result(stdout, rc)
        if self._discovered_interpreter_key:
            data.setdefault("ansible_facts", {})[self._discovered_interpreter_key] = self._discovered_interpreter
        return data
