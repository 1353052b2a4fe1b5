#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_init
short_description: Initialise a Vault/OpenBao server once, keeping its keys safe
version_added: 0.1.0
description:
  - Reads C(sys/init); an initialised server is left alone (C(ok), never re-initialised, never an error).
  - Otherwise initialises it with Shamir unseal keys (O(secret_shares)/O(secret_threshold)), or with recovery
    keys for an auto-unsealed server (O(recovery_shares)/O(recovery_threshold)).
  - The unseal (or recovery) keys and the root token are written to O(keys_file) - mode 0600, directory 0700,
    written to a temporary file opened before the server is initialised, fsynced and renamed into place before the
    module reports success. They never appear in the result, the diff or the logs. With O(pgp_keys) the keys may
    instead be returned PGP-encrypted.
  - The file runs where the module runs; to keep it on the controller, delegate the task to C(localhost) with
    O(url) pointing at the server.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: none
options:
  secret_shares:
    description: Number of unseal key shares.
    type: int
    default: 5
  secret_threshold:
    description: Shares needed to unseal.
    type: int
    default: 3
  pgp_keys:
    description: One PGP public key (base64) or C(keybase:user) per share; the shares are then returned encrypted.
    type: list
    elements: str
  root_token_pgp_key:
    description: PGP public key to encrypt the root token with.
    type: str
  recovery_shares:
    description: For auto-unseal (transit or KMS seal) - number of recovery key shares. Replaces O(secret_shares).
    type: int
  recovery_threshold:
    description: Recovery shares needed for recovery operations.
    type: int
  recovery_pgp_keys:
    description: PGP keys for the recovery shares.
    type: list
    elements: str
  keys_file:
    description: Where to write the keys and root token (JSON like C(bao operator init -format=json)), mode 0600.
    type: path
  overwrite_keys_file:
    description: Replace an existing O(keys_file). Off by default, since an existing file may hold another server's keys.
    type: bool
    default: false
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Initialise the server; keys land in a 0600 file on the controller
  keyops.lifecycle.vault_init:
    url: "http://{{ inventory_hostname }}:8200"
    secret_shares: 5
    secret_threshold: 3
    keys_file: "{{ playbook_dir }}/secrets/{{ inventory_hostname }}-init.json"
  delegate_to: localhost

- name: Initialise an auto-unsealed server (recovery keys)
  keyops.lifecycle.vault_init:
    recovery_shares: 1
    recovery_threshold: 1
    keys_file: /root/openbao-init.json
"""

RETURN = r"""
initialized:
  description: Whether the server is initialised after the task (predicted in check mode).
  returned: always
  type: bool
keys_file:
  description: The keys file written (only when this task initialised the server).
  returned: when initialised by this task
  type: str
keys_pgp:
  description: The PGP-encrypted unseal (or recovery) key shares.
  returned: when initialised by this task with pgp keys
  type: list
  elements: str
root_token_pgp:
  description: The root token encrypted with O(root_token_pgp_key).
  returned: when initialised by this task with root_token_pgp_key
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import run_vault_module, vault_argument_spec
from ansible_collections.keyops.lifecycle.plugins.module_utils import _server


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            secret_shares=dict(type="int", default=5, no_log=False),
            secret_threshold=dict(type="int", default=3, no_log=False),
            pgp_keys=dict(type="list", elements="str", no_log=False),
            root_token_pgp_key=dict(type="str", no_log=False),
            recovery_shares=dict(type="int"),
            recovery_threshold=dict(type="int"),
            recovery_pgp_keys=dict(type="list", elements="str", no_log=False),
            keys_file=dict(type="path"),
            overwrite_keys_file=dict(type="bool", default=False),
        ),
        required_together=[("recovery_shares", "recovery_threshold")],
        supports_check_mode=True,
    )
    params = module.params

    def work(connection):
        if connection.request("GET", "sys/init").get("initialized"):
            return dict(changed=False, initialized=True)
        _server.validate_init(params)
        if module.check_mode:
            if params["keys_file"]:
                _server.refuse_existing_keys_file(params["keys_file"], params["overwrite_keys_file"])
            return dict(changed=True, initialized=True)
        keys_file = _server.KeysFile(params["keys_file"], params["overwrite_keys_file"]) if params["keys_file"] else None
        try:
            answer = connection.request("PUT", "sys/init", _server.init_request(params), idempotent=False,
                                        capability="update")
        except BaseException:
            if keys_file:
                keys_file.discard()
            raise
        result = dict(changed=True, initialized=True)
        if keys_file:
            keys_file.commit(_server.keys_document(answer, params))
            result["keys_file"] = keys_file.path
        if params["pgp_keys"] or params["recovery_pgp_keys"]:
            result["keys_pgp"] = answer.get("keys_base64") or answer.get("recovery_keys_base64") or []
        if params["root_token_pgp_key"]:
            result["root_token_pgp"] = answer.get("root_token")
        return result

    run_vault_module(module, work, login=False)


if __name__ == "__main__":
    main()
