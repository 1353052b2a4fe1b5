# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind playbooks/vault_upgrade.yml; the logic lives in module_utils/_upgrade.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.keyops.lifecycle.plugins.module_utils import _upgrade
from ansible_collections.keyops.lifecycle.plugins.plugin_utils._filters import reporting


_wrap = reporting(_upgrade.UpgradeInputError)


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
