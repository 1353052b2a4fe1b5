#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_mount
short_description: Enable, tune or disable a Vault/OpenBao secrets engine or auth method
version_added: 0.1.0
description:
  - Idempotent C(secrets enable)/C(auth enable) plus tuning of description, TTLs and options, with diff.
  - Changing the type of an existing mount is refused (it would destroy its data).
  - Disabling a secrets engine destroys everything in it, so it needs O(allow_data_loss=true).
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: full
options:
  path:
    description: Mount path, for example V(transit) or V(kubernetes-green).
    type: str
    required: true
  kind:
    description: A secrets engine or an auth method.
    type: str
    choices: [secret, auth]
    default: secret
  type:
    description: Engine or method type (V(transit), V(kv), V(approle), V(kubernetes), ...). Required when present.
    type: str
  description:
    description: Human description.
    type: str
  config:
    description: "Mount configuration; C(default_lease_ttl) and C(max_lease_ttl) accept durations like V(1h)."
    type: dict
  options:
    description: "Engine options, for example C({version: 2}) for kv."
    type: dict
  state:
    description: Whether the mount exists.
    type: str
    choices: [present, absent]
    default: present
  allow_data_loss:
    description: Confirm disabling a secrets engine and destroying its data.
    type: bool
    default: false
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Transit engine for K10
  keyops.lifecycle.vault_mount:
    path: transit
    type: transit
    description: K10 master key protection

- name: Kubernetes auth for the green cluster
  keyops.lifecycle.vault_mount:
    kind: auth
    path: kubernetes-green
    type: kubernetes
"""

RETURN = r"""
mount:
  description: The mount after the task (type, description, config, options); empty when absent.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import run_vault_module, vault_argument_spec
from ansible_collections.keyops.lifecycle.plugins.module_utils import _bootstrap


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            path=dict(type="str", required=True),
            kind=dict(type="str", default="secret", choices=["secret", "auth"]),
            type=dict(type="str"),
            description=dict(type="str"),
            config=dict(type="dict"),
            options=dict(type="dict"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            allow_data_loss=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = dict(module.params, path=module.params["path"].strip("/"))
    base = "sys/mounts" if params["kind"] == "secret" else "sys/auth"

    def work(connection):
        listing = connection.request("GET", base, capability="read")
        table = listing.get("data") or listing
        current = _bootstrap.mount_view(table.get(params["path"] + "/"))
        operation, payload, predicted = _bootstrap.plan_mount(current, params)
        if operation and not module.check_mode:
            target = "%s/%s" % (base, params["path"])
            if operation == "create":
                connection.request("POST", target, payload, idempotent=False, capability="update")
            elif operation == "tune":
                connection.request("POST", target + "/tune", payload, capability="update")
            else:
                connection.request("DELETE", target, capability="delete")
        result = dict(changed=operation is not None, mount=predicted or {})
        if module._diff:
            result["diff"] = dict(before=current or {}, after=predicted or {})
        return result

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
