# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mounts, policies and tokens: the Vault side of the K10 transit-key rotation's setup, as plan (pure) + apply (I/O)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.keyops.lifecycle.plugins.module_utils import _atomic
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import parse_duration

TTL_FIELDS = ("default_lease_ttl", "max_lease_ttl")


def mount_view(entry):
    """The comparable part of one entry of sys/mounts or sys/auth."""
    if entry is None:
        return None
    config = dict(entry.get("config") or {})
    return {
        "type": entry.get("type"),
        "description": entry.get("description") or "",
        "config": dict((k, v) for k, v in config.items() if v not in (None, "", [], {})),
        "options": dict((k, str(v)) for k, v in (entry.get("options") or {}).items()),
    }


def plan_mount(current, desired):
    """Return ``(operation, payload, predicted)`` for a mount; operation in create/tune/delete/None."""
    if desired["state"] == "absent":
        if current is None:
            return None, None, None
        if desired["kind"] == "secret" and not desired.get("allow_data_loss"):
            raise VaultModuleError(
                "refusing to disable the %s secrets engine at %r: every secret and key stored in it is destroyed. "
                "Set allow_data_loss: true to confirm" % (current["type"], desired["path"]))
        return "delete", None, None
    if not desired.get("type"):
        raise VaultModuleError("type is required with state=present (e.g. transit, kv, approle, kubernetes)")
    config = {}
    for key, value in (desired.get("config") or {}).items():
        config[key] = parse_duration(value, "config.%s" % key) if key in TTL_FIELDS else value
    options = dict((k, str(v)) for k, v in (desired.get("options") or {}).items())
    if current is None:
        payload = {"type": desired["type"], "config": config, "options": options}
        if desired.get("description") is not None:
            payload["description"] = desired["description"]
        predicted = {"type": desired["type"], "description": desired.get("description") or "",
                     "config": config, "options": options}
        return "create", payload, predicted
    if current["type"] != desired["type"]:
        raise VaultModuleError(
            "%r is a %s mount, not %s: changing the type means disabling it (destroying its data) and enabling it "
            "again; do that explicitly (state: absent with allow_data_loss, then present)"
            % (desired["path"], current["type"], desired["type"]))
    tune, predicted = {}, json.loads(json.dumps(current))
    if desired.get("description") is not None and desired["description"] != current["description"]:
        tune["description"] = predicted["description"] = desired["description"]
    for key, value in config.items():
        if current["config"].get(key) != value:
            tune[key] = predicted["config"][key] = value
    changed_options = dict((k, v) for k, v in options.items() if current["options"].get(k) != v)
    if changed_options:
        tune["options"] = changed_options
        predicted["options"].update(changed_options)
    return ("tune", tune, predicted) if tune else (None, None, current)


def normalize_policy(text):
    return "\n".join(line.rstrip() for line in (text or "").strip().splitlines())


def write_private_file(path, text):
    """Atomically write ``text`` to ``path`` with mode 0600 (directory created 0700)."""
    return _atomic.write_file(path, text, mode=0o600, make_dirs=True)


def token_request(params):
    body = {}
    for name in ("policies", "ttl", "period", "explicit_max_ttl", "display_name", "num_uses", "meta"):
        if params.get(name) not in (None, [], {}):
            body[name] = params[name]
    for name in ("no_default_policy", "renewable"):
        if params.get(name) is not None:
            body[name] = params[name]
    return body


def token_satisfies(lookup, params):
    """Does an existing token (its lookup data) already give what the task asks for?"""
    have = set(lookup.get("policies") or [])
    want = set(params.get("policies") or [])
    if not params.get("no_default_policy"):
        want.add("default")
    if want - have:
        return False
    if params.get("orphan") and not lookup.get("orphan"):
        return False
    if params.get("display_name") and not (lookup.get("display_name") or "").endswith(params["display_name"]):
        return False
    return True
