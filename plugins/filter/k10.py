# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind the k10_migration role; the logic lives in module_utils/_k10.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.keyops.lifecycle.plugins.module_utils import _k10


class FilterModule(object):
    def filters(self):
        return {"k10_migration_results": _k10.migration_results}
