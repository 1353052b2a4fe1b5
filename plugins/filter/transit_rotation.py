# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind the transit_rotation role; the logic lives in module_utils/_rotation.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.keyops.lifecycle.plugins.module_utils import _rotation
from ansible_collections.keyops.lifecycle.plugins.plugin_utils._filters import reporting


_wrap = reporting(_rotation.RotationInputError)


class FilterModule(object):
    def filters(self):
        return {
            "transit_rotation_plan": _wrap(_rotation.plan),
            "transit_rotation_records": _wrap(_rotation.records),
            "transit_rotation_shares": _wrap(_rotation.shares),
            "transit_rotation_latest": _wrap(_rotation.latest_version),
            "transit_rotation_pending": _wrap(_rotation.pending),
            "transit_rotation_decide": _wrap(_rotation.decide),
            "transit_rotation_report": _wrap(_rotation.report),
        }
