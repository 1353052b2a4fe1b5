# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: record which strategy really runs each play, as JSON lines in $KEYOPS_RECORD_FILE.strategy."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: record_strategy
type: aggregate
short_description: record the strategy that runs each play, for the test-suite
description:
  - Used by tests/integration only (the mitogen fast-path tests).
  - At the first task of every play, writes the play's strategy name, which code serves the plugin loaders
    (mitogen's strategy replaces them while it runs a play) and mitogen's worker model when one is active.
"""

import json
import os
import sys

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import action_loader, connection_loader


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_strategy"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.play = None
        self.recorded = True

    def v2_playbook_on_play_start(self, play):
        self.play = play
        self.recorded = False

    def v2_playbook_on_task_start(self, task, is_conditional):
        # Called from inside the strategy's run(): what it installed for the play is in place now.
        path = os.environ.get("KEYOPS_RECORD_FILE")
        if self.recorded or not path:
            return
        self.recorded = True
        process = sys.modules.get("ansible_mitogen.process")
        worker_model = getattr(process, "_worker_model", None) if process else None
        entry = {
            "play": self.play.get_name() if self.play else None,
            "strategy": self.play.strategy if self.play else None,
            "action_loader": action_loader.get_with_context.__module__,
            "connection_loader": connection_loader.get_with_context.__module__,
            "mitogen_worker_model": type(worker_model).__name__ if worker_model is not None else None,
        }
        with open(path + ".strategy", "a") as handle:
            handle.write(json.dumps(entry) + "\n")
