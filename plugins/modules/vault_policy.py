#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_policy
short_description: Manage a Vault/OpenBao ACL policy (HCL), with a diff of the text
version_added: 0.1.0
description:
  - Writes the policy when its text differs (trailing whitespace ignored); deletes it with O(state=absent).
  - The built-in C(root) and C(default) policies cannot be deleted.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: full
options:
  name:
    description: Policy name.
    type: str
    required: true
  policy:
    description: The policy in HCL (or JSON). Required when present.
    type: str
  state:
    description: Whether the policy exists.
    type: str
    choices: [present, absent]
    default: present
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Least privilege for K10 (the K10 transit-key rotation)
  keyops.lifecycle.vault_policy:
    name: kasten
    policy: |
      path "transit/encrypt/kasten" { capabilities = ["update"] }
      path "transit/decrypt/kasten" { capabilities = ["update"] }
      path "transit/keys/kasten" { capabilities = ["read"] }
"""

RETURN = r"""
policy:
  description: The policy text after the task (empty when absent).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultModuleError,
    run_vault_module,
    vault_argument_spec,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils._bootstrap import normalize_policy


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            name=dict(type="str", required=True),
            policy=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ("policy",))],
        supports_check_mode=True,
    )
    name, state = module.params["name"], module.params["state"]

    def work(connection):
        path = "sys/policies/acl/%s" % name
        data = connection.read(path)
        current = normalize_policy(data.get("policy")) if data else None
        if state == "absent":
            if name in ("root", "default"):
                raise VaultModuleError("the built-in %r policy cannot be deleted" % name)
            wanted = None
        else:
            wanted = normalize_policy(module.params["policy"])
            if not wanted:
                raise VaultModuleError("policy is empty: give the HCL text")
        changed = current != wanted
        if changed and not module.check_mode:
            if wanted is None:
                connection.delete(path)
            else:
                connection.request("PUT", path, {"policy": wanted + "\n"}, capability="update")
        result = dict(changed=changed, policy=wanted or "")
        if module._diff:
            result["diff"] = dict(before=(current + "\n") if current else "", after=(wanted + "\n") if wanted else "",
                                  before_header="policy %s" % name, after_header="policy %s" % name)
        return result

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
