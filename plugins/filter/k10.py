# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind the k10_migration role; the logic lives in module_utils/_k10.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def k10_migration_results(*args, **kwargs):
    # Imported on use: Ansible imports every filter file of the collection, in every worker process, to find any
    # one filter, and _k10 pulls in the Kubernetes layer (~0.01 s per task that uses a collection filter).
    from ansible_collections.keyops.lifecycle.plugins.module_utils import _k10  # pylint: disable=import-outside-toplevel
    return _k10.migration_results(*args, **kwargs)


class FilterModule(object):
    def filters(self):
        return {"k10_migration_results": k10_migration_results}
