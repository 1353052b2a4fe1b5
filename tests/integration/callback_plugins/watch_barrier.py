# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: hold every task start, and the end of the run, until the keystone validators have validated
each node's keys $KEYOPS_WATCH_EACH more times (their counts: $KEYOPS_WATCH_PROGRESS, from lab/keyrepo_race.py).

So every state the role leaves between two tasks - before the first, after each step, after the last - is
validated on every node however busy the machine is, and "0 false rejections" means the validators looked.
One line per barrier goes to $KEYOPS_WATCH_LOG: "ok" with the counts, or "starved" when the validators did not
get there within $KEYOPS_WATCH_TIMEOUT seconds (the test fails on it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: watch_barrier
type: aggregate
short_description: wait for the keystone validators at every task boundary
description:
  - Used by tests/integration only.
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


def read_counts(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):  # not written yet
        return None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "watch_barrier"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.previous = None

    def _barrier(self, where):
        progress = os.environ["KEYOPS_WATCH_PROGRESS"]
        each = int(os.environ.get("KEYOPS_WATCH_EACH", "3"))
        deadline = time.monotonic() + float(os.environ.get("KEYOPS_WATCH_TIMEOUT", "120"))
        while True:
            counts = read_counts(progress)
            if counts is not None and self.previous is None:
                self.previous = counts  # the first barrier of a run waits from the counts it finds
            if counts is not None and all(now >= before + each for now, before in zip(counts, self.previous)):
                status = "ok"
                break
            if time.monotonic() > deadline:
                status = "starved"
                break
            time.sleep(0.01)
        with open(os.environ["KEYOPS_WATCH_LOG"], "a") as handle:
            handle.write("%s\t%s\t%s\n" % (status, where, json.dumps(counts)))
        self.previous = counts

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._barrier(task.get_name())

    def v2_playbook_on_stats(self, stats):
        self._barrier("end of run")
