#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_k8s_auth_role
short_description: A role of a Vault/OpenBao Kubernetes auth mount
version_added: 0.4.0
description:
  - Which service accounts (names and namespaces) may log in through a kubernetes auth mount, with which
    audience, policies and token TTLs. Idempotent, check mode, diff.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: full
options:
  mount:
    description: Path of the auth mount.
    type: str
    default: kubernetes
  name:
    description: Role name.
    type: str
    required: true
  state:
    description: Whether the role exists.
    type: str
    choices: [present, absent]
    default: present
  bound_service_account_names:
    description: Service account names allowed to log in.
    type: list
    elements: str
  bound_service_account_namespaces:
    description: Namespaces of those service accounts.
    type: list
    elements: str
  audience:
    description: Required audience of the service-account token.
    type: str
  token_policies:
    description: Policies of the tokens issued.
    type: list
    elements: str
  token_ttl:
    description: TTL of the tokens (V(1h), seconds).
    type: str
  token_max_ttl:
    description: Maximum TTL of the tokens.
    type: str
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: The green cluster's apps read their secrets
  keyops.lifecycle.vault_k8s_auth_role:
    mount: kubernetes-green
    name: apps
    bound_service_account_names: [app]
    bound_service_account_namespaces: [payments]
    token_policies: [payments-read]
    token_ttl: 1h
"""

RETURN = r"""
role:
  description: The role after the task; empty when absent.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import run_vault_module, vault_argument_spec
from ansible_collections.keyops.lifecycle.plugins.module_utils import _k8s_auth


def main():
    module = AnsibleModule(argument_spec=vault_argument_spec(
        mount=dict(type="str", default="kubernetes"),
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        bound_service_account_names=dict(type="list", elements="str"),
        bound_service_account_namespaces=dict(type="list", elements="str"),
        audience=dict(type="str"),
        token_policies=dict(type="list", elements="str", no_log=False),
        token_ttl=dict(type="str", no_log=False),
        token_max_ttl=dict(type="str", no_log=False),
    ), supports_check_mode=True)
    path = "auth/%s/role/%s" % (module.params["mount"].strip("/"), module.params["name"])

    def work(connection):
        current = _k8s_auth.role_view(connection.read(path))
        if module.params["state"] == "absent":
            if current is not None and not module.check_mode:
                connection.delete(path)
            return dict(changed=current is not None, role={}, diff=dict(before=current or {}, after={}))
        payload, after = _k8s_auth.plan_role(current, module.params)
        if payload is not None and not module.check_mode:
            connection.write(path, payload)
            after = _k8s_auth.role_view(connection.read(path))
        return dict(changed=payload is not None, role=after, diff=dict(before=current or {}, after=after))

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
