#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_k8s_auth
short_description: Enable and configure a Vault/OpenBao Kubernetes auth mount
version_added: 0.4.0
description:
  - Enables a C(kubernetes) auth method at O(mount) when missing and sets its config.
  - Vault never returns the reviewer JWT; the diff shows only whether one is set (Vault's C(token_reviewer_jwt_set)).
    A reviewer JWT is written when none is set yet, or always with O(update_token_reviewer_jwt=true).
  - Without a reviewer JWT and with O(disable_local_ca_jwt=false), Vault reviews logins with its own local
    service-account token, which only the cluster Vault runs in accepts (the cross-cluster Kubernetes auth break). Prefer
    O(disable_local_ca_jwt=true) for a cluster Vault does not run in; the upgrade preflight flags the risk.
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
  kubernetes_host:
    description: API server URL of the cluster whose service accounts log in.
    type: str
  kubernetes_ca_cert:
    description: PEM CA of that API server.
    type: str
  token_reviewer_jwt:
    description: Long-lived token Vault uses to call TokenReview. Never logged. V("") removes it.
    type: str
  update_token_reviewer_jwt:
    description: Write O(token_reviewer_jwt) even when one is already set (Vault cannot tell whether it differs).
    type: bool
    default: false
  disable_local_ca_jwt:
    description: Do not use Vault's own service-account token and CA; review each login with the client's JWT.
    type: bool
  issuer:
    description: Expected C(iss) of service-account tokens.
    type: str
  disable_iss_validation:
    description: Skip the C(iss) check.
    type: bool
  pem_keys:
    description: Public keys to verify JWT signatures locally.
    type: list
    elements: str
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Kubernetes auth for the green cluster (Vault runs elsewhere)
  keyops.lifecycle.vault_k8s_auth:
    mount: kubernetes-green
    kubernetes_host: https://green.example.com:6443
    kubernetes_ca_cert: "{{ lookup('file', 'green-ca.pem') }}"
    disable_local_ca_jwt: true
"""

RETURN = r"""
config:
  description: The mount's config after the task (token_reviewer_jwt_set instead of the JWT).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import run_vault_module, vault_argument_spec
from ansible_collections.keyops.lifecycle.plugins.module_utils import _k8s_auth


def main():
    module = AnsibleModule(argument_spec=vault_argument_spec(
        mount=dict(type="str", default="kubernetes"),
        kubernetes_host=dict(type="str"),
        kubernetes_ca_cert=dict(type="str"),
        token_reviewer_jwt=dict(type="str", no_log=True),
        update_token_reviewer_jwt=dict(type="bool", default=False),
        disable_local_ca_jwt=dict(type="bool"),
        issuer=dict(type="str"),
        disable_iss_validation=dict(type="bool"),
        pem_keys=dict(type="list", elements="str", no_log=False),
    ), supports_check_mode=True)
    mount = module.params["mount"].strip("/")

    def work(connection):
        mounts = _k8s_auth.auth_mounts(connection)
        actions = []
        current = None
        if mount not in mounts:
            actions.append("enable kubernetes auth at %s" % mount)
        elif mounts[mount] != "kubernetes":
            raise _k8s_auth.VaultModuleError("auth mount %r is a %s mount, not kubernetes" % (mount, mounts[mount]))
        else:
            current = _k8s_auth.config_view(connection.read("auth/%s/config" % mount))
        payload, after = _k8s_auth.plan_config(current, module.params)
        if payload is not None:
            actions.append("write auth/%s/config" % mount)
        if not module.check_mode:
            if mount not in mounts:
                connection.request("POST", "sys/auth/%s" % mount, {"type": "kubernetes"}, idempotent=False,
                                   capability="update")
            if payload is not None:
                connection.write("auth/%s/config" % mount, payload)
                after = _k8s_auth.config_view(connection.read("auth/%s/config" % mount))
        return dict(changed=bool(actions), actions=actions, config=after,
                    diff=dict(before=current or {}, after=after))

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
