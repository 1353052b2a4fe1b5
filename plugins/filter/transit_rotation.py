# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind the transit_rotation role; the logic lives in module_utils/_rotation.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.keyops.lifecycle.plugins.module_utils import _rotation


def _wrap(function):
    def filter_function(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except _rotation.RotationInputError as exc:
            raise AnsibleFilterError(str(exc))
    filter_function.__name__ = function.__name__
    filter_function.__doc__ = function.__doc__
    return filter_function


class FilterModule(object):
    def filters(self):
        return {
            "transit_rotation_plan": _wrap(_rotation.plan),
            "transit_rotation_records": _wrap(_rotation.records),
            "transit_rotation_shares": _wrap(_rotation.shares),
            "transit_rotation_latest": _wrap(_rotation.latest_version),
            "transit_rotation_decide": _wrap(_rotation.decide),
            "transit_rotation_report": _wrap(_rotation.report),
        }
