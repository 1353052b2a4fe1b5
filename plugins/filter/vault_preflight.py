# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind the vault_upgrade_preflight role; the logic lives in module_utils/_k8s_auth.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _k8s_auth():
    # Imported on use: Ansible imports every filter file of the collection, in every worker process, to find any
    # one filter, and _k8s_auth pulls in the Vault and transit layers (~0.01 s per task that uses a collection filter).
    from ansible_collections.keyops.lifecycle.plugins.module_utils import _k8s_auth as k8s_auth  # pylint: disable=import-outside-toplevel
    return k8s_auth


def preflight_report(*args, **kwargs):
    return _k8s_auth().preflight_report(*args, **kwargs)


def seal_storage(config_text, current_version, target_version, flavor="openbao"):
    status, findings = _k8s_auth().seal_storage_findings(config_text, current_version, target_version, flavor)
    return {"status": status, "findings": findings, "current_version": current_version,
            "target_version": target_version}


class FilterModule(object):
    def filters(self):
        return {"vault_preflight_report": preflight_report,
                "vault_preflight_seal_storage": seal_storage}
