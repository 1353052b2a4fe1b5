#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: keyrepo_info
short_description: Read a keystone fernet, receipt or credential key repository
version_added: 0.3.0
description:
  - Reports the keys of one node's repository as indexes and fingerprints (never key material), the primary index,
    the staged key's fingerprint, and paths whose mode is not keystone's (directory 0700, keys 0600).
  - A damaged repository (a numbered file that is not a Fernet key) is an error.
extends_documentation_fragment:
  - keyops.lifecycle.attributes
attributes:
  check_mode:
    support: full
    details: Read-only.
  diff_mode:
    support: none
options:
  path:
    description: The key repository directory.
    type: path
    required: true
  repo_type:
    description: What the repository holds.
    type: str
    choices: [fernet, credential, receipt]
    default: fernet
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: What the fernet repository holds
  keyops.lifecycle.keyrepo_info:
    path: /etc/keystone/fernet-keys
  register: fernet
"""

RETURN = r"""
keys:
  description: The keys as C({index, fingerprint}), lowest index first.
  returned: always
  type: list
  elements: dict
primary_index:
  description: Index of the primary key (null for an empty repository).
  returned: always
  type: int
staged_fingerprint:
  description: Fingerprint of the staged key C(0).
  returned: always
  type: str
staged_age_seconds:
  description:
    - Seconds since the staged key C(0) was written - each rotation writes a new one, so this is the time since
      the last rotation on this node (null without a staged key).
  returned: always
  type: int
  version_added: 1.0.0
mode_problems:
  description: Paths whose mode is not keystone's.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._keyrepo import KeyRepo, KeyRepoError, describe


def main():
    module = AnsibleModule(argument_spec=dict(
        path=dict(type="path", required=True),
        repo_type=dict(type="str", default="fernet", choices=["fernet", "credential", "receipt"]),
    ), supports_check_mode=True)
    repo = KeyRepo(module.params["path"])
    try:
        keys = repo.read()
    except KeyRepoError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except OSError as exc:
        module.fail_json(msg="cannot read the key repository %s: %s; check the path and that this user may read it "
                             "(keystone's repositories are 0700, owned by the keystone user)" % (module.params["path"], exc))
    module.exit_json(changed=False, mode_problems=repo.modes_ok() if repo.exists() else [],
                     staged_age_seconds=repo.staged_age(), **describe(keys))


if __name__ == "__main__":
    main()
