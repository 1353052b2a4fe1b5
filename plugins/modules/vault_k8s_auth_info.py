#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_k8s_auth_info
short_description: Read every Kubernetes auth mount and say whether its logins depend on the reviewer-JWT fallback
version_added: 0.4.0
description:
  - For each C(kubernetes) auth mount, reads its config and decides (the cross-cluster Kubernetes auth break) whether a login depends on Vault's
    own service-account token being accepted by the mount's cluster - no C(token_reviewer_jwt), C(disable_local_ca_jwt)
    false, and Vault not running in that cluster (O(vault_cluster_host)). Such a mount is V(at risk) - it breaks as
    soon as Vault runs elsewhere or after an upgrade that switched to the local token - and the exact fix is given.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  check_mode:
    details: Read-only.
  diff_mode:
    support: none
options:
  mounts:
    description: Only these mounts (default every kubernetes auth mount).
    type: list
    elements: str
  vault_cluster_host:
    description:
      - API server URL of the cluster Vault itself runs in; omit when Vault runs outside Kubernetes.
    type: str
  token_reviewer_jwts:
    description:
      - Mount -> the C(token_reviewer_jwt) configured there (Vault never returns it), to check when it expires.
        Never logged.
      - The alias O(reviewer_jwts) is deprecated and will be removed in 2.0.0.
    type: dict
    aliases: [reviewer_jwts]
  expiry_warning:
    description: A reviewer JWT expiring within this many seconds makes its mount V(at risk).
    type: int
    default: 604800
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Which kubernetes auth mounts would break?
  keyops.lifecycle.vault_k8s_auth_info:
    vault_cluster_host: https://blue.example.com:6443
  register: k8s_auth
"""

RETURN = r"""
mounts:
  description: Per mount - mount, config (token_reviewer_jwt_set instead of the JWT), status (ok or at risk), reasons, fix.
  returned: always
  type: list
  elements: dict
server_version:
  description: Version of the Vault/OpenBao server answering.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import run_vault_module, vault_argument_spec
from ansible_collections.keyops.lifecycle.plugins.module_utils import _k8s_auth


def main():
    module = AnsibleModule(argument_spec=vault_argument_spec(
        mounts=dict(type="list", elements="str"),
        vault_cluster_host=dict(type="str"),
        token_reviewer_jwts=dict(type="dict", no_log=True, aliases=["reviewer_jwts"], deprecated_aliases=[
            dict(name="reviewer_jwts", version="2.0.0", collection_name="keyops.lifecycle")]),
        expiry_warning=dict(type="int", default=604800),
    ), supports_check_mode=True)

    def work(connection):
        wanted = [m.strip("/") for m in module.params["mounts"] or []]
        mounts = sorted(path for path, kind in _k8s_auth.auth_mounts(connection).items() if kind == "kubernetes")
        missing = [m for m in wanted if m not in mounts]
        if missing:
            raise _k8s_auth.VaultModuleError("not kubernetes auth mounts: %s (found: %s)"
                                             % (", ".join(missing), ", ".join(mounts) or "none"))
        results = []
        for mount in wanted or mounts:
            config = _k8s_auth.config_view(connection.read("auth/%s/config" % mount) or {})
            jwt = (module.params["token_reviewer_jwts"] or {}).get(mount)
            status, reasons, fix = _k8s_auth.assess(config, module.params["vault_cluster_host"],
                                                    _k8s_auth.seconds_left(jwt) if jwt else None,
                                                    module.params["expiry_warning"])
            results.append(dict(mount=mount, config=config, status=status, reasons=reasons, fix=fix))
        health = connection.request("GET", "sys/health?standbyok=true&perfstandbyok=true", capability="read")
        return dict(changed=False, mounts=results, server_version=health.get("version"))

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
