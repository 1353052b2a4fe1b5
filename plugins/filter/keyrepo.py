# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind the keyrepo role; the logic lives in module_utils/_keyrepo.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible.errors import AnsibleFilterError

from ansible_collections.keyops.lifecycle.plugins.module_utils import _keyrepo


def keyrepo_plan(hosts, hostvars, result_var):
    """The reconciliation plan over ``hosts`` from each host's registered ``result_var`` (keyrepo_rotate info)."""
    try:
        return _keyrepo.plan_cluster(dict((host, hostvars[host][result_var]["keys"]) for host in hosts))
    except _keyrepo.KeyRepoError as exc:
        raise AnsibleFilterError(exc.msg)


def keyrepo_keys_needed(token_expiration, allow_expired_window, rotation_interval):
    try:
        return _keyrepo.keys_needed(int(token_expiration), int(allow_expired_window), int(rotation_interval))
    except _keyrepo.KeyRepoError as exc:
        raise AnsibleFilterError(exc.msg)


def keyrepo_material(plan, fetched, new_keys):
    """Index -> key for the reconciliation: the reference's files, or ``new_keys`` (staged, primary) to set up."""
    if plan["initialize"]:
        return {0: new_keys[0], 1: new_keys[1]}
    return dict((result["item"], base64.b64decode(result["content"]).decode().strip())
                for result in fetched or [] if "content" in result)


def keyrepo_select(material, indexes):
    by_index = dict((int(index), value) for index, value in material.items())
    return dict((str(index), by_index[int(index)]) for index in indexes)


def keyrepo_state(hosts, hostvars, *result_vars):
    """Per host, the repository report of the latest of ``result_vars`` that ran there."""
    states = {}
    for host in hosts:
        for var in result_vars:
            result = hostvars[host].get(var) or {}
            if "keys" in result:
                states[host] = {"keys": result["keys"], "staged_fingerprint": result.get("staged_fingerprint"),
                                "primary_fingerprint": (result["keys"][-1]["fingerprint"]
                                                        if result.get("primary_index") is not None else None)}
    return states


def keyrepo_barrier(hosts, hostvars, read_var, *result_vars):
    """The barrier before a promotion, from every host's latest report (``read_var`` first, then ``result_vars``).

    ``agreed``: every host reported, and all hold the same staged key and the same primary key (fingerprints).
    ``staged_fingerprint`` and ``primary_fingerprint`` are those keys' (None unless agreed).
    ``last_rotation_age``: seconds since the last rotation - the largest ``staged_age_seconds`` of ``read_var``
    (the oldest copy of the current staged key; every rotation writes a new one), None when no host has one.
    """
    nodes = keyrepo_state(hosts, hostvars, read_var, *result_vars)
    staged = set(state["staged_fingerprint"] for state in nodes.values())
    primary = set(state["primary_fingerprint"] for state in nodes.values())
    # (A repository of a lone staged key has no primary: agreed when no node has one.)
    agreed = len(nodes) == len(hosts) > 0 and len(staged) == 1 and None not in staged and len(primary) == 1
    ages = [(hostvars[host].get(read_var) or {}).get("staged_age_seconds") for host in hosts]
    ages = [age for age in ages if isinstance(age, (int, float)) and not isinstance(age, bool)]
    return {"nodes": nodes, "agreed": agreed,
            "staged_fingerprint": next(iter(staged)) if agreed else None,
            "primary_fingerprint": next(iter(primary)) if agreed else None,
            "last_rotation_age": max(ages) if ages else None}


class FilterModule(object):
    def filters(self):
        return {"keyrepo_plan": keyrepo_plan, "keyrepo_keys_needed": keyrepo_keys_needed,
                "keyrepo_material": keyrepo_material, "keyrepo_select": keyrepo_select,
                "keyrepo_state": keyrepo_state, "keyrepo_barrier": keyrepo_barrier}
