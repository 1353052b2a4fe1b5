# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: append every task result as one JSON line to $KEYOPS_RECORD_FILE, and describe the
controller process (pid, command line, ansible-core's local temporary directory) in $KEYOPS_RECORD_FILE.controller."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: record_results
type: aggregate
short_description: write task results as JSON lines for the test-suite
description:
  - Used by tests/integration only.
"""

import json
import os
import time

from ansible import constants as C
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.task_started = None

    def v2_playbook_on_start(self, playbook):
        path = os.environ.get("KEYOPS_RECORD_FILE")
        if not path:
            return
        with open("/proc/self/cmdline", "rb") as handle:
            cmdline = [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
        with open(path + ".controller", "w") as handle:
            json.dump({"pid": os.getpid(), "cmdline": cmdline, "local_tmp": C.DEFAULT_LOCAL_TMP}, handle)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.task_started = time.perf_counter()

    def _record(self, status, result):
        path = os.environ.get("KEYOPS_RECORD_FILE")
        if not path:
            return
        # Seconds from task start to this result: the task's cost without ansible-playbook's start-up.
        seconds = time.perf_counter() - self.task_started if self.task_started else None
        # ansible-core 2.19+ names them host and result; 2.16-2.18 only _host and _result
        host = result.host if hasattr(result, "host") else result._host
        data = result.result if hasattr(result, "result") else result._result
        task = result.task if hasattr(result, "task") else result._task
        name = result.task_name
        role = getattr(task, "_role", None)
        prefix, _sep, rest = name.partition(" : ")
        if role is not None and rest and prefix.rsplit(".", 1)[-1] == role._role_name:
            name = rest  # ansible-core 2.21 prefixes a role's task names with the role
        entry = {"task": name, "host": host.get_name(), "status": status,
                 "seconds": seconds, "result": data}
        with open(path, "a") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._record("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record("failed", result)

    def v2_runner_on_skipped(self, result):
        self._record("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._record("unreachable", result)
