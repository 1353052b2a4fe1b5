# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: SIGKILL ansible-playbook when task number $KEYOPS_CRASH_AT_TASK starts
(or, with $KEYOPS_CRASH_AFTER_SECONDS, that long after it started: the whole process group, modules too).

Simulates a controller crash at a step boundary (the previous task finished, the next never ran).
Task names seen are appended to $KEYOPS_CRASH_TASK_LOG so tests can enumerate the boundaries.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: crash_at
type: aggregate
short_description: kill the controller at a chosen task for crash tests
description:
  - Used by tests/integration only.
"""

import os
import signal
import threading

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "crash_at"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.started = 0

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started += 1
        log = os.environ.get("KEYOPS_CRASH_TASK_LOG")
        if log:
            with open(log, "a") as handle:
                handle.write("%d\t%s\n" % (self.started, task.get_name()))
        if str(self.started) == os.environ.get("KEYOPS_CRASH_AT_TASK"):
            delay = float(os.environ.get("KEYOPS_CRASH_AFTER_SECONDS") or 0)
            if not delay:
                os.kill(os.getpid(), signal.SIGKILL)
            # Inside the task: kill the whole process group (controller and the module processes) later.
            timer = threading.Timer(delay, os.killpg, (os.getpgrp(), signal.SIGKILL))
            timer.daemon = True
            timer.start()
