#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k10_passkey_rotate
short_description: Move K10 to a passkey made with the latest version of its Vault transit key
version_added: 0.2.0
description:
  - Step 2 of the three-step rotation of the K10 transit-key rotation for Kasten K10 (what the C(k10_passkey) consumer type of the
    transit_rotation role runs). Creates C(<passkey_prefix>-v<key_version>) with C(usenow), waits until K10
    uses it, then deletes the other passkeys of the same transit key (never the one in use or the last valid one).
  - Returns the census the rotation needs before raising C(min_decryption_version) - the transit key versions
    recorded on the passkeys of this key that can still decrypt the primary key.
  - A crash anywhere leaves a state this module completes on the next run.
extends_documentation_fragment:
  - keyops.lifecycle.k8s_connection
attributes:
  diff_mode:
    support: none
options:
  passkey_prefix:
    description: Passkeys are named C(<passkey_prefix>-v<version>).
    type: str
    required: true
  name:
    description:
      - Name of the transit key whose passkeys are rotated (as in the other consumer modules).
      - The alias O(vault_transit_key_name) is deprecated and will be removed in 2.0.0.
    type: str
    required: true
    aliases: [vault_transit_key_name]
  mount:
    description:
      - Path the transit secrets engine is mounted at.
      - The alias O(vault_transit_path) is deprecated and will be removed in 2.0.0.
    type: str
    default: transit
    aliases: [vault_transit_path]
  key_version:
    description: The key's latest version (after rotating it).
    type: int
    required: true
  wait_timeout:
    description:
      - Seconds to wait for K10 to take the new passkey and to remove an old one.
      - The alias O(timeout) is deprecated and will be removed in 2.0.0.
    type: int
    default: 120
    aliases: [timeout]
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: K10 re-encrypts its primary key with version 4 of the k10 key
  keyops.lifecycle.k10_passkey_rotate:
    context: prod
    passkey_prefix: vault-k10
    name: k10
    key_version: 4
"""

RETURN = r"""
passkey:
  description: Name of the passkey for O(key_version).
  returned: success
  type: str
actions:
  description: Passkeys created and deleted, in order.
  returned: always
  type: list
  elements: str
# census: generated from module_utils/_consumers.py by tools/consumer_contract.py
census_before:
  description: Ciphertexts per key version before the run (version as a string -> count).
  returned: success
  type: dict
  sample: {"1": 700, "2": 300}
census_after:
  description:
    - Ciphertexts per key version after the run (the same as RV(census_before) in check mode).
    - This is what decides how far min_decryption_version may be raised.
  returned: success
  type: dict
  sample: {"3": 1000}
rewrapped:
  description: Ciphertexts rewrapped (in check mode, that would be rewrapped).
  returned: success
  type: int
  sample: 1000
oldest_version_in_use:
  description: The oldest key version the consumer still holds (null when it holds none).
  returned: success
  type: int
  sample: 3
# end of census
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import (
    K8S_CONNECTION_ARGSPEC, run_k8s_module, wait_for)
from ansible_collections.keyops.lifecycle.plugins.module_utils._k10 import K10, rotate_passkeys


def main():
    module = AnsibleModule(argument_spec=dict(
        K8S_CONNECTION_ARGSPEC,
        passkey_prefix=dict(type="str", required=True, no_log=False),
        name=dict(type="str", required=True, no_log=False, aliases=["vault_transit_key_name"], deprecated_aliases=[
            dict(name="vault_transit_key_name", version="2.0.0", collection_name="keyops.lifecycle")]),
        mount=dict(type="str", default="transit", aliases=["vault_transit_path"], deprecated_aliases=[
            dict(name="vault_transit_path", version="2.0.0", collection_name="keyops.lifecycle")]),
        key_version=dict(type="int", required=True, no_log=False),
        wait_timeout=dict(type="int", default=120, aliases=["timeout"], deprecated_aliases=[
            dict(name="timeout", version="2.0.0", collection_name="keyops.lifecycle")]),
    ), supports_check_mode=True)
    run_k8s_module(module, lambda client: rotate_passkeys(K10(client), module.params, module.check_mode, wait_for))


if __name__ == "__main__":
    main()
