#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k10_passkey
short_description: Create or delete a Kasten K10 passkey safely
version_added: 0.2.0
description:
  - Manages a C(vault.kio.kasten.io/v1alpha1) C(Passkey), the key that envelope-encrypts K10's primary key - a
    Vault transit key, an AWS KMS customer managed key, or a passphrase held in a Secret.
  - Works with both status shapes K10 has used, 7.x (one passkey C(inuse)) and 8.x (every C(valid) passkey).
  - K10 passkeys cannot be changed. A passkey that exists with another spec is an error explaining the
    create-new-then-delete-old way; with O(replace=true) the module does exactly that through a stand-in
    passkey, so K10 always has a usable passkey, and a re-run after a crash completes the replacement.
  - Refuses to delete the passkey in use (7.x) or the last valid passkey (8.x).
  - Records the transit key version the passkey was created at (O(transit_key_version)) in the annotation
    C(keyops.io/transit-key-version); the transit_rotation role uses it to know which versions are still needed.
extends_documentation_fragment:
  - keyops.lifecycle.k8s_connection
attributes:
  diff_mode:
    support: full
    details: The diff shows the passkey's name, spec and recorded version; a spec holds no secret values.
options:
  name:
    description: Name of the passkey (cluster-scoped).
    type: str
    required: true
  state:
    description: Whether the passkey exists.
    type: str
    choices: [present, absent]
    default: present
  vault_transit_key_name:
    description: Vault transit key that encrypts the primary key (C(spec.vaulttransitkeyname)).
    type: str
  vault_transit_path:
    description: Mount path of the transit engine (C(spec.vaulttransitpath)).
    type: str
    default: transit
  aws_cmk_key_id:
    description: AWS KMS customer managed key ID or ARN (C(spec.awscmkkeyid)).
    type: str
  passphrase_secret:
    description: Secret holding the passphrase under the key C(passphrase).
    type: dict
    suboptions:
      name:
        description: Secret name.
        type: str
        required: true
      namespace:
        description: Secret namespace.
        type: str
        default: kasten-io
  usenow:
    description: Make K10 use this passkey now (7.x). On 8.x every valid passkey is used.
    type: bool
    default: false
  transit_key_version:
    description:
      - Latest version of the Vault transit key when the passkey is created; recorded as an annotation.
    type: int
  wait:
    description: Wait until K10 has taken the passkey (valid, and in use with O(usenow)), or until it is gone.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait (with O(wait=true)).
      - The alias O(timeout) is deprecated and will be removed in 2.0.0.
    type: int
    default: 120
    aliases: [timeout]
  replace:
    description: Replace a passkey whose spec differs (stand-in first, then delete and recreate).
    type: bool
    default: false
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Switch K10 to the Vault transit key
  keyops.lifecycle.k10_passkey:
    name: vault-k10-v1
    vault_transit_key_name: k10
    vault_transit_path: transit
    usenow: true
    transit_key_version: 1

- name: Delete the installation's passphrase passkey once the Vault one is in use
  keyops.lifecycle.k10_passkey:
    name: k10-default-passphrase
    state: absent
"""

RETURN = r"""
passkey:
  description: The passkey after the task (name, keytype, shape 7/8, in_use, valid, error, transit_key_version, spec).
  returned: when present
  type: dict
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._module import checked_suboptions
from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import (
    K8S_CONNECTION_ARGSPEC, run_k8s_module, wait_for)
from ansible_collections.keyops.lifecycle.plugins.module_utils._k10 import K10, PasskeyRunner


def main():
    argument_spec = dict(
        K8S_CONNECTION_ARGSPEC,
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        vault_transit_key_name=dict(type="str", no_log=False),
        vault_transit_path=dict(type="str", default="transit"),
        aws_cmk_key_id=dict(type="str", no_log=False),
        passphrase_secret=dict(type="dict", no_log=False, options=dict(
            name=dict(type="str", required=True), namespace=dict(type="str", default="kasten-io"))),
        usenow=dict(type="bool", default=False),
        transit_key_version=dict(type="int", no_log=False),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=120, aliases=["timeout"], deprecated_aliases=[
            dict(name="timeout", version="2.0.0", collection_name="keyops.lifecycle")]),
        replace=dict(type="bool", default=False),
    )
    module = AnsibleModule(**checked_suboptions(dict(
        argument_spec=argument_spec, supports_check_mode=True,
        mutually_exclusive=[("vault_transit_key_name", "aws_cmk_key_id", "passphrase_secret")])))

    def work(client):
        runner = PasskeyRunner(K10(client), module.params, module.check_mode, wait_for)
        return runner.present() if module.params["state"] == "present" else runner.absent()

    run_k8s_module(module, work)


if __name__ == "__main__":
    main()
