#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_k8s_auth_probe
short_description: Prove a Kubernetes auth mount works - a real login with a fresh service-account token
version_added: 0.4.0
description:
  - Asks the target cluster for a short-lived token of a test service account (TokenRequest API), logs in to Vault
    with it through the kubernetes auth mount, and revokes the Vault token it got. Never returns either token.
  - Reports Vault's answer when the login fails, and the issuer the cluster's tokens carry (for issuer checks).
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  check_mode:
    support: full
    details: The probe logs in even in check mode (it changes nothing but creates and revokes a short-lived token).
  diff_mode:
    support: none
options:
  mount:
    description: The kubernetes auth mount.
    type: str
    default: kubernetes
  role:
    description: The Vault role to log in as.
    type: str
    required: true
  service_account:
    description: Service account of the target cluster to log in as.
    type: str
    required: true
  service_account_namespace:
    description: Its namespace.
    type: str
    default: default
  audiences:
    description: Audiences for the requested token (the role's audience, if it has one).
    type: list
    elements: str
  kubeconfig:
    description: Kubeconfig of the target cluster. Defaults to E(K8S_AUTH_KUBECONFIG), E(KUBECONFIG).
    type: raw
  context:
    description: Its context. Defaults to E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description: API server URL (with O(api_key)).
    type: str
  api_key:
    description: Bearer token for the target cluster. Never logged.
    type: str
  kube_ca_cert:
    description:
      - CA bundle for the target cluster's API server. Defaults to E(K8S_AUTH_SSL_CA_CERT).
      - O(ca_cert) is the Vault server's; the Kubernetes options whose names Vault's options already take have
        the C(kube_) prefix.
    type: path
  kube_validate_certs:
    description:
      - Verify the target API server's certificate (O(validate_certs) is Vault's). Defaults to E(K8S_AUTH_VERIFY_SSL).
    type: bool
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Can a green pod log in?
  keyops.lifecycle.vault_k8s_auth_probe:
    mount: kubernetes-green
    role: apps
    service_account: app
    service_account_namespace: payments
    context: green
"""

RETURN = r"""
login:
  description: V(ok) or V(failed).
  returned: always
  type: str
error:
  description: Vault's answer to a failed login.
  returned: always
  type: str
token_issuer:
  description: The C(iss) claim of the cluster's service-account tokens.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import (
    KUBE_OPTIONS_FOR_VAULT_MODULES, K8sModuleError, client_for_vault_module, resource_path)
from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s_auth import jwt_claims
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultModuleError, run_vault_module, vault_argument_spec)


def main():
    module = AnsibleModule(argument_spec=vault_argument_spec(
        mount=dict(type="str", default="kubernetes"),
        role=dict(type="str", required=True),
        service_account=dict(type="str", required=True),
        service_account_namespace=dict(type="str", default="default"),
        audiences=dict(type="list", elements="str"),
        **KUBE_OPTIONS_FOR_VAULT_MODULES), supports_check_mode=True)
    params = module.params

    def work(vault):
        try:
            kube = client_for_vault_module(params)
            spec = {"expirationSeconds": 600}
            if params["audiences"]:
                spec["audiences"] = params["audiences"]
            answer = kube.request("POST", resource_path("", "v1", "serviceaccounts", params["service_account_namespace"],
                                                        params["service_account"], "token"),
                                  body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                        "spec": spec},
                                  what="a token for service account %s/%s" % (params["service_account_namespace"],
                                                                              params["service_account"]))
        except K8sModuleError as exc:
            module.fail_json(msg=exc.msg)
        jwt = ((answer or {}).get("status") or {}).get("token") if isinstance(answer, dict) else None
        if not jwt:
            module.fail_json(msg="Kubernetes answered the TokenRequest for service account %s/%s without "
                                 "status.token (an admission webhook or proxy may rewrite TokenRequests): nothing "
                                 "to log in with" % (params["service_account_namespace"], params["service_account"]))
        result = dict(changed=False, login="ok", error="", token_issuer=jwt_claims(jwt).get("iss") or "")
        try:
            login = vault.request("POST", "auth/%s/login" % params["mount"].strip("/"),
                                  {"role": params["role"], "jwt": jwt}, idempotent=False, capability="update")
        except VaultModuleError as exc:
            result.update(login="failed", error=exc.msg)
            return result
        token = (login.get("auth") or {}).get("client_token")
        if token:
            try:
                vault.request("POST", "auth/token/revoke", {"token": token}, capability="update")
            except VaultModuleError:
                pass  # the probe token expires on its own (short TTL); revoking needs a permission
        return result

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
