#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_unseal
short_description: Unseal one Vault/OpenBao node with Shamir key shares
version_added: 0.1.0
description:
  - Feeds unseal keys one at a time until the node is unsealed and stops as soon as it is.
  - An unsealed node is C(ok) (nothing is sent). Progress made by someone else is never reset.
  - Keys that do not combine are reported clearly; Vault discards the failed round itself, and one clean
    round with only these keys is tried before giving up.
  - Run it once per node of a raft cluster (each node is unsealed separately).
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: none
options:
  keys_file:
    description: File written by M(keyops.lifecycle.vault_init) (or C(bao operator init -format=json)).
    type: path
  keys:
    description: The unseal key shares (base64 or hex). Never logged.
    type: list
    elements: str
  initialized_timeout:
    description:
      - Seconds to wait for the node to report itself initialised. A raft node that joins through
        C(retry_join) only does so once the leader is unsealed; give it time with this option.
    type: int
    default: 0
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Unseal every node from the keys file kept on the controller
  keyops.lifecycle.vault_unseal:
    url: "http://{{ inventory_hostname }}:8200"
    keys_file: "{{ playbook_dir }}/secrets/cluster-init.json"
  delegate_to: localhost
"""

RETURN = r"""
sealed:
  description: Whether the node is still sealed (false after success).
  returned: always
  type: bool
progress:
  description: Key shares accepted in the current round.
  returned: always
  type: int
threshold:
  description: Key shares needed.
  returned: always
  type: int
keys_used:
  description: How many key shares this task sent.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultModuleError, run_vault_module, vault_argument_spec)
from ansible_collections.keyops.lifecycle.plugins.module_utils import _server


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            keys_file=dict(type="path"),
            keys=dict(type="list", elements="str", no_log=True),
            initialized_timeout=dict(type="int", default=0),
        ),
        required_one_of=[("keys_file", "keys")],
        mutually_exclusive=[("keys_file", "keys")],
        supports_check_mode=True,
    )

    def work(connection):
        if not module.params["keys"] and not module.params["keys_file"]:
            raise VaultModuleError("no unseal keys: give a non-empty `keys` list or the `keys_file` vault_init wrote")
        keys = module.params["keys"] or _server.read_keys_file(module.params["keys_file"])
        changed, status, used = _server.unseal(connection, keys, module.check_mode,
                                               module.params["initialized_timeout"])
        return dict(changed=changed, sealed=status["sealed"] and not (changed and module.check_mode),
                    progress=status["progress"], threshold=status["threshold"], keys_used=used)

    run_vault_module(module, work, login=False)


if __name__ == "__main__":
    main()
