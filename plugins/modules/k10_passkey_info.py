#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k10_passkey_info
short_description: Read Kasten K10 passkeys and what K10 says about them
version_added: 0.2.0
description:
  - Lists C(vault.kio.kasten.io/v1alpha1) passkeys with their type, in-use (7.x) and validity (8.x) state,
    K10's error, and the transit key version keyops.lifecycle recorded when it created them.
extends_documentation_fragment:
  - keyops.lifecycle.k8s_connection
attributes:
  check_mode:
    support: full
    details: Read-only.
  diff_mode:
    support: none
options:
  name:
    description: Only this passkey (an empty list when it does not exist).
    type: str
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Which passkey does K10 use?
  keyops.lifecycle.k10_passkey_info:
  register: k10_passkeys

- name: Show it
  ansible.builtin.debug:
    msg: "{{ k10_passkeys.in_use }}"
"""

RETURN = r"""
passkeys:
  description: Every passkey (name, keytype, shape, in_use, valid, error, transit_key_version, spec).
  returned: always
  type: list
  elements: dict
in_use:
  description: Name of the passkey in use (7.x status shape), else null.
  returned: always
  type: str
valid:
  description: Names of the passkeys that decrypt the primary key.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import K8S_CONNECTION_ARGSPEC, run_k8s_module
from ansible_collections.keyops.lifecycle.plugins.module_utils._k10 import K10, summary


def main():
    module = AnsibleModule(argument_spec=dict(K8S_CONNECTION_ARGSPEC, name=dict(type="str")),
                           supports_check_mode=True)

    def work(client):
        k10 = K10(client)
        if module.params["name"]:
            one = k10.passkey(module.params["name"])
            items = [one] if one else []
        else:
            items = k10.passkeys()
        passkeys = [summary(item) for item in items]
        in_use = [p["name"] for p in passkeys if p["in_use"]]
        return {"changed": False, "passkeys": passkeys, "in_use": in_use[0] if in_use else None,
                "valid": [p["name"] for p in passkeys if p["valid"]]}

    run_k8s_module(module, work)


if __name__ == "__main__":
    main()
