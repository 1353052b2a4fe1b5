#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_transit_key_info
short_description: Read transit keys (one, or every key of a mount) from Vault/OpenBao
version_added: 0.1.0
description:
  - Reports configuration and version list of transit keys. Never returns key material.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: none
options:
  name:
    description: Key to read. When omitted, every key of O(mount) is read.
    type: str
  mount:
    description: Path the transit secrets engine is mounted at.
    type: str
    default: transit
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Read one key
  keyops.lifecycle.vault_transit_key_info:
    name: kasten
  register: kasten_key

- name: Read every key of a mount
  keyops.lifecycle.vault_transit_key_info:
    mount: transit
  register: all_keys
"""

RETURN = r"""
keys:
  description: The keys read, sorted by name (empty when O(name) does not exist).
  returned: always
  type: list
  elements: dict
  sample:
    - name: kasten
      type: aes256-gcm96
      latest_version: 2
      min_decryption_version: 1
      min_encryption_version: 0
      min_available_version: 0
      versions: {"1": "2026-08-01T00:00:00Z", "2": "2026-11-01T00:00:00Z"}
key:
  description: The key named O(name); empty when it does not exist.
  returned: when O(name) is given
  type: dict
exists:
  description: Whether O(name) exists.
  returned: when O(name) is given
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    run_vault_module,
    vault_argument_spec,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import TransitBackend


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            name=dict(type="str"),
            mount=dict(type="str", default="transit"),
        ),
        supports_check_mode=True,
    )

    def work(connection):
        backend = TransitBackend(connection, module.params["mount"])
        name = module.params["name"]
        if name:
            key = backend.get_info(name)
            return dict(changed=False, keys=[key] if key else [], key=key or {}, exists=key is not None)
        keys = [backend.get_info(key_name) for key_name in backend.list_names()]
        return dict(changed=False, keys=[key for key in keys if key])

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
