#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_token
short_description: Create a Vault/OpenBao token and keep it in a 0600 file
version_added: 0.1.0
description:
  - Creates a token with the given policies, TTLs and flags and writes it to O(token_file) (mode 0600, written
    atomically) for the next step, for example the C(vault-creds) Secret K10 reads.
  - Idempotent through the file - when O(token_file) holds a token that is still valid and already has the
    requested policies, nothing is created.
  - The token is never in the result unless O(return_token=true) (then mark the task C(no_log)).
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: none
options:
  policies:
    description: Policies of the new token.
    type: list
    elements: str
    default: []
  no_default_policy:
    description: Leave out the C(default) policy.
    type: bool
  ttl:
    description: Initial TTL (V(768h)).
    type: str
  period:
    description: Make a periodic token renewed within this period.
    type: str
  explicit_max_ttl:
    description: Hard upper bound of the token's life.
    type: str
  orphan:
    description: Create an orphan token (it survives the revocation of its parent).
    type: bool
    default: false
  renewable:
    description: Whether the token can be renewed.
    type: bool
  display_name:
    description: Display name.
    type: str
  num_uses:
    description: Number of uses (0 = unlimited).
    type: int
  meta:
    description: Metadata.
    type: dict
  token_file:
    description: Where to write the token (0600). Required unless O(return_token=true).
    type: path
  return_token:
    description: Return the token in the result (mark the task C(no_log)).
    type: bool
    default: false
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Token for K10 with the least-privilege policy
  keyops.lifecycle.vault_token:
    policies: [kasten]
    period: 768h
    orphan: true
    display_name: kasten
    token_file: /root/.secrets/kasten-vault-token
"""

RETURN = r"""
accessor:
  description: The token's accessor (safe to log; revoke with it).
  returned: always
  type: str
policies:
  description: The token's policies.
  returned: always
  type: list
  elements: str
token_file:
  description: The file holding the token.
  returned: when O(token_file) is set
  type: str
token:
  description: The token itself.
  returned: when O(return_token=true)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultModuleError,
    run_vault_module,
    vault_argument_spec,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils import _bootstrap


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            policies=dict(type="list", elements="str", default=[]),
            no_default_policy=dict(type="bool"),
            ttl=dict(type="str"),
            period=dict(type="str"),
            explicit_max_ttl=dict(type="str"),
            orphan=dict(type="bool", default=False),
            renewable=dict(type="bool"),
            display_name=dict(type="str"),
            num_uses=dict(type="int"),
            meta=dict(type="dict"),
            token_file=dict(type="path"),
            return_token=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["token_file"] and not params["return_token"]:
        module.fail_json(msg="set token_file (written 0600) or return_token: true, or the new token would be lost")

    def work(connection):
        token_file = params["token_file"]
        if token_file:
            try:
                with open(token_file) as handle:
                    existing = handle.read().strip()
            except (IOError, OSError):
                existing = None
            if existing:
                try:
                    lookup = connection.request("POST", "auth/token/lookup", {"token": existing},
                                                capability="update", missing_ok=True)
                except VaultModuleError as exc:
                    if exc.status != 403 or "bad token" not in exc.msg:
                        raise
                    lookup = None  # the token in the file is revoked or expired: make a new one
                data = (lookup or {}).get("data")
                if data and _bootstrap.token_satisfies(data, params):
                    result = dict(changed=False, accessor=data.get("accessor"), policies=data.get("policies"),
                                  token_file=token_file)
                    if params["return_token"]:
                        result["token"] = existing
                    return result
        if module.check_mode:
            return dict(changed=True, accessor=None, policies=params["policies"], token_file=token_file)
        path = "auth/token/create-orphan" if params["orphan"] else "auth/token/create"
        answer = connection.request("POST", path, _bootstrap.token_request(params), idempotent=False,
                                    capability="update")
        auth = answer.get("auth") or {}
        token = auth.get("client_token")
        if not token:
            raise VaultModuleError("Vault created no token on POST %s" % path)
        result = dict(changed=True, accessor=auth.get("accessor"), policies=auth.get("policies"))
        if token_file:
            try:
                _bootstrap.write_private_file(token_file, token + "\n")
            except (IOError, OSError) as exc:
                connection.request("POST", "auth/token/revoke-accessor", {"accessor": auth.get("accessor")})
                raise VaultModuleError("cannot write token_file %s (%s); the new token was revoked" % (token_file, exc))
            result["token_file"] = token_file
        if params["return_token"]:
            result["token"] = token
        return result

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
