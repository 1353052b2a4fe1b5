# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""keyrepo_info runs inside Ansible's worker process when its target is the controller (plugin_utils/_in_process.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.keyops.lifecycle.plugins.plugin_utils._in_process import ActionModule  # noqa: F401 pylint: disable=unused-import
