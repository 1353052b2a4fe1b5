#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_secret
short_description: Keep a Kubernetes Secret holding credentials, without ever showing them
version_added: 0.2.0
description:
  - Creates or updates a Secret from values given directly (O(string_data), never logged) or read from files on
    the managed node (O(data_files), for example the token file C(vault_token) wrote), such as K10's C(vault-creds).
  - Idempotent - only keys whose value differs are written; updates carry the C(resourceVersion) read, so a
    concurrent change fails instead of being overwritten.
  - Results and diffs name the data keys and say whether each changed; values never appear.
extends_documentation_fragment:
  - keyops.lifecycle.k8s_connection
attributes:
  diff_mode:
    support: full
    details: Data keys with C(changed)/C(unchanged), labels and type; never values.
options:
  name:
    description: Secret name.
    type: str
    required: true
  namespace:
    description: Secret namespace.
    type: str
    default: default
  state:
    description: Whether the Secret exists.
    type: str
    choices: [present, absent]
    default: present
  string_data:
    description: Data keys and their values. Never logged.
    type: dict
  data_files:
    description: Data keys and the files (on the managed node) holding their values; a trailing newline is dropped.
    type: dict
  type:
    description: Secret type.
    type: str
    default: Opaque
  labels:
    description: Labels to set.
    type: dict
  exclusive:
    description: Remove data keys not given here.
    type: bool
    default: false
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: K10's vault-creds from the token file
  keyops.lifecycle.k8s_secret:
    name: vault-creds
    namespace: kasten-io
    data_files:
      vault_token: /root/.secrets/k10-vault-token
"""

RETURN = r"""
secret:
  description: Name, namespace, type, labels, resource_version and the data keys (no values).
  returned: always
  type: dict
changed_keys:
  description: Data keys written (or that would be).
  returned: always
  type: list
  elements: str
"""

import base64

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import (
    K8S_CONNECTION_ARGSPEC, K8sModuleError, resource_path, run_k8s_module)


def encoded(values):
    return dict((key, base64.b64encode(to_bytes(value)).decode()) for key, value in values.items())


def plan(current, desired, params):
    """(body to write or None, changed keys, removed keys) - pure."""
    have = dict((current or {}).get("data") or {})
    changed = sorted(key for key, value in desired.items() if have.get(key) != value)
    removed = sorted(key for key in have if key not in desired) if params["exclusive"] else []
    labels = dict(((current or {}).get("metadata") or {}).get("labels") or {})
    labels_changed = bool(params.get("labels")) and any(labels.get(k) != v for k, v in params["labels"].items())
    type_changed = current is not None and current.get("type", "Opaque") != params["type"]
    if current is not None and not (changed or removed or labels_changed or type_changed):
        return None, [], []
    data = dict((k, v) for k, v in have.items() if k not in removed)
    data.update(desired)
    labels.update(params.get("labels") or {})
    body = {"apiVersion": "v1", "kind": "Secret", "type": params["type"], "data": data,
            "metadata": {"name": params["name"], "namespace": params["namespace"], "labels": labels}}
    if current is not None:
        body["metadata"] = dict(current["metadata"], labels=labels)  # keeps resourceVersion: conflicts are seen
    return body, changed, removed


def view(secret, params):
    if not secret:
        return {}
    return {"name": params["name"], "namespace": params["namespace"], "type": secret.get("type", "Opaque"),
            "labels": (secret.get("metadata") or {}).get("labels") or {},
            "resource_version": (secret.get("metadata") or {}).get("resourceVersion"),
            "keys": sorted((secret.get("data") or {}).keys())}


def main():
    module = AnsibleModule(argument_spec=dict(
        K8S_CONNECTION_ARGSPEC,
        name=dict(type="str", required=True),
        namespace=dict(type="str", default="default"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        string_data=dict(type="dict", no_log=True),
        data_files=dict(type="dict"),
        type=dict(type="str", default="Opaque"),
        labels=dict(type="dict"),
        exclusive=dict(type="bool", default=False),
    ), supports_check_mode=True)
    params = module.params

    def read_files():
        values = {}
        for key, path in (params["data_files"] or {}).items():
            try:
                with open(path, "rb") as handle:
                    values[key] = handle.read().rstrip(b"\n")
            except (IOError, OSError) as exc:
                raise K8sModuleError("cannot read data_files[%s] %s: %s" % (key, path, to_native(exc)))
        return values

    def work(client):
        path = resource_path("", "v1", "secrets", params["namespace"], params["name"])
        what = "secret %s/%s" % (params["namespace"], params["name"])
        current = client.request("GET", path, missing_ok=True, what=what)
        if params["state"] == "absent":
            if current is not None and not module.check_mode:
                client.request("DELETE", path, what=what)
            return {"changed": current is not None, "changed_keys": [], "secret": {},
                    "diff": {"before": view(current, params), "after": {}}}
        values = dict(params["string_data"] or {})
        not_text = sorted(key for key, value in values.items()
                          if value is None or isinstance(value, (dict, list)))
        if not_text:  # written as the text "None" or a Python repr otherwise
            raise K8sModuleError("string_data values must be strings; %s %s not (values are never shown)"
                                 % (", ".join(not_text), "is" if len(not_text) == 1 else "are"))
        values.update(read_files())
        body, changed, removed = plan(current, encoded(values), params)
        after = current
        if body is not None:
            if not module.check_mode:
                if current is None:
                    after = client.request("POST", resource_path("", "v1", "secrets", params["namespace"]), body=body,
                                           what=what)
                else:
                    after = client.request("PUT", path, body=body, what=what)
            else:
                after = body
        diff_keys = dict((key, "changed" if key in changed else "unchanged") for key in sorted(values))
        diff_keys.update((key, "removed") for key in removed)
        return {"changed": body is not None, "changed_keys": changed + removed, "secret": view(after, params),
                "diff": {"before": dict(view(current, params), data="(hidden)") if current else {},
                         "after": dict(view(after, params), data=diff_keys)}}

    run_k8s_module(module, work)


if __name__ == "__main__":
    main()
