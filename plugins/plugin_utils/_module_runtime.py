# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ansible-core internals that run a module inside the worker, one row per ansible-core minor.

Running a module in the worker needs what ansible-core keeps private: the loader the AnsiballZ wrapper runs a
module with, the controller's result parsing and cleaning, interpreter discovery.  They change between minors
(2.21 moved result cleaning into ``UnifiedTaskResult``), so only the minors the test matrix covers have a row;
any other ansible-core, or a row whose internals are not all there, leaves every task on the ordinary module
path.  Everything is looked up and checked here, before any module runs: a task never finds out halfway that
this ansible-core is different.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import inspect
import io
import json
import os
import sys

# The serialization profile of modules without their own (every module of this collection).
PROFILE = "legacy"

# The minors make test runs the in-process parity test under (2.19: the pinned line; 2.21: the compatibility
# phase), and how each hands back a module's result: "dict" (_parse_returned_data returns a dict cleaned by
# ansible.vars.clean.remove_internal_keys) or "unified" (2.21: a UnifiedTaskResult cleans itself).  2.20 has
# 2.19's internals but no row until the test matrix runs it.
RESULT_STYLES = {
    (2, 19): "dict",
    (2, 21): "unified",
}
COVERED = ", ".join("%d.%d" % minor for minor in sorted(RESULT_STYLES))

# Keys of a module's own JSON kept by the fallback parser (what remove_internal_keys keeps of _ansible_*).
KEPT_INTERNAL_KEYS = ("_ansible_parsed", "_ansible_no_log")


class UnsupportedCore(Exception):
    """This ansible-core cannot run modules in the worker; the message says why."""


def minor_of(version):
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        raise UnsupportedCore("ansible-core %s has a version this collection cannot read" % version)


def _require(condition, what):
    if not condition:
        raise UnsupportedCore("its %s is not the one this collection was tested with" % what)


def _parameters(function):
    return list(inspect.signature(function).parameters)


class ModuleRuntime:
    """Runs a module in the current process and turns its output into a task result, as the ordinary path does."""

    def __init__(self, version):
        minor = minor_of(version)
        if minor not in RESULT_STYLES:
            raise UnsupportedCore("ansible-core %s is not one of the lines this collection runs modules in process "
                                  "on (%s)" % (version, COVERED))
        self.style = RESULT_STYLES[minor]
        try:
            self._load(minor)
        except UnsupportedCore as exc:
            raise UnsupportedCore("ansible-core %s: %s" % (version, exc))
        except Exception as exc:  # ImportError, AttributeError, ...: an internal moved
            raise UnsupportedCore("ansible-core %s: %s: %s" % (version, type(exc).__name__, exc))

    def _load(self, minor):
        # pylint: disable=import-outside-toplevel
        from ansible.executor.interpreter_discovery import discover_interpreter
        from ansible.module_utils import _internal as module_internal
        from ansible.module_utils._internal._ansiballz import _loader
        from ansible.module_utils.common.json import Direction, get_module_encoder
        from ansible.plugins.action import ActionBase

        _require(set(["json_params", "profile", "module_fqn", "modlib_path", "extensions"])
                 <= set(_parameters(_loader.run_module)), "module loader (run_module)")
        _require(hasattr(module_internal, "is_controller"), "module_utils._internal.is_controller")
        _require(_parameters(discover_interpreter) == ["action", "interpreter_name", "discovery_mode", "task_vars"],
                 "interpreter discovery")
        _require(_parameters(ActionBase._parse_returned_data)[1:] == ["res", "profile"],
                 "ActionBase._parse_returned_data")
        for name in ("_update_module_args", "_compute_environment_string"):
            _require(callable(getattr(ActionBase, name, None)), "ActionBase." + name)
        if self.style == "dict":
            from ansible.vars.clean import remove_internal_keys
            self._remove_internal_keys = remove_internal_keys
        else:
            from ansible._internal._task import UnifiedTaskResult
            _require(callable(getattr(UnifiedTaskResult, "remove_internal_keys", None))
                     and "for_round_trip" in _parameters(UnifiedTaskResult.as_result_dict), "UnifiedTaskResult")
        self._discover = discover_interpreter
        self._module_internal = module_internal
        self._loader = _loader
        self._encoder = get_module_encoder(PROFILE, Direction.CONTROLLER_TO_MODULE)

    def discover_interpreter(self, action, discovery_mode, task_vars):
        return self._discover(action=action, interpreter_name="python", discovery_mode=discovery_mode,
                              task_vars=task_vars)

    def run_module(self, module_fqn, module_args, environment):
        """The module's printed result and exit code, run as the AnsiballZ wrapper runs it.

        The worker goes on with Ansible's own work afterwards: environment, argv and the controller flag are put
        back whatever the module did."""
        json_params = json.dumps({"ANSIBLE_MODULE_ARGS": module_args}, cls=self._encoder).encode()
        saved_environ, saved_argv = dict(os.environ), list(sys.argv)
        output = io.StringIO()
        rc = 0
        # Module-side code paths (warnings into the result, target-side JSON) as in a module process.
        was_controller, self._module_internal.is_controller = self._module_internal.is_controller, False
        os.environ.update(dict((str(name), str(value)) for name, value in environment.items()))
        try:
            with contextlib.redirect_stdout(output):
                self._loader.run_module(json_params=json_params, profile=PROFILE, module_fqn=module_fqn,
                                        modlib_path="", extensions={})
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            self._module_internal.is_controller = was_controller
            os.environ.clear()
            os.environ.update(saved_environ)
            sys.argv[:] = saved_argv
        return output.getvalue(), rc

    def task_result(self, action, stdout, rc):
        """The module's output parsed and cleaned by the controller's own code, as the ordinary path does."""
        low_level = {"rc": rc, "stdout": stdout, "stdout_lines": stdout.splitlines(), "stderr": "",
                     "stderr_lines": []}
        parsed = action._parse_returned_data(low_level, PROFILE)
        if self.style == "dict":
            parsed.pop("_ansible_suppress_tmpdir_delete", None)
            self._remove_internal_keys(parsed)
            return parsed
        parsed.remove_internal_keys()
        return parsed.as_result_dict(for_round_trip=True)


def plain_task_result(stdout, rc):
    """The fallback when the controller's parser fails after the module ran: its JSON as the module printed it,
    without internal keys (the module's work is done and must not be reported as a failure of ours)."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return {"failed": True, "rc": rc, "module_stdout": stdout,
                "msg": "The module printed no JSON result (exit code %s)." % rc}
    if not isinstance(data, dict):
        return {"failed": True, "rc": rc, "msg": "The module printed a JSON %s, not a result." % type(data).__name__}
    for key in list(data):
        if key.startswith("_ansible_") and key not in KEPT_INTERNAL_KEYS:
            del data[key]
    if rc and "failed" not in data:
        data["failed"] = True
    return data


_LOADED = {}


def load(version):
    """(runtime, None) for this ansible-core, or (None, why it cannot run modules in process); looked up once."""
    if version not in _LOADED:
        try:
            _LOADED[version] = (ModuleRuntime(version), None)
        except UnsupportedCore as exc:
            _LOADED[version] = (None, str(exc))
    return _LOADED[version]
