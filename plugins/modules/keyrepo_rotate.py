#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: keyrepo_rotate
short_description: Change one node's keystone fernet, receipt or credential key repository without a gap
version_added: 0.3.0
description:
  - Works on keystone's own repository format - a 0700 directory of 0600 files named by integers, each one Fernet
    key; C(0) is the staged key, the highest number the primary, the rest secondary - and leaves repositories
    keystone accepts.
  - Every write goes to a temporary file that is fsynced and renamed into place, then the directory is fsynced, so a
    key file is never partly written. A promotion hard-links the staged key to its new number before a new staged
    key replaces C(0), so the promoted key is present under one name or the other at every instant (keystone's own
    rotation and C(rsync --delete) both leave a moment without it - keystone bug 1816927).
  - One node at a time; the C(keyops.lifecycle.keyrepo) role orders the states over all nodes (stage everywhere,
    verify, then promote everywhere - purging in the same step when O(max_active_keys) is at least 3, in a separate
    step after every node has promoted otherwise).
  - Never returns key material - only indexes and fingerprints (the first 16 hex digits of the key's SHA-256).
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff lists key indexes and fingerprints.
extends_documentation_fragment:
  - keyops.lifecycle.attributes
options:
  path:
    description: The key repository directory (for example C(/etc/keystone/fernet-keys)).
    type: path
    required: true
  owner:
    description: Owner of the directory and the key files (keystone's user).
    type: str
  group:
    description: Group of the directory and the key files.
    type: str
  max_active_keys:
    description: Keys kept, the staged key included (keystone's C(max_active_keys)). At most 3 for credential keys.
    type: int
    default: 3
  repo_type:
    description: What the repository holds; credential repositories hold at most 3 keys.
    type: str
    choices: [fernet, credential, receipt]
    default: fernet
  state:
    description:
      - V(present) sets up an empty repository like C(keystone-manage fernet_setup) (staged C(0) and primary C(1));
        an existing one is left alone.
      - V(rotated) does one keystone-style rotation on this node alone (single-node use).
      - V(staged) makes O(staged_key) the staged key C(0).
      - V(promoted) turns the staged key into max+1 and makes O(new_staged_key) the new C(0); refused unless the
        staged key's fingerprint is O(expect_staged). Idempotent, and completes a promotion a crash interrupted.
      - V(purged) removes the lowest keys beyond O(max_active_keys) (never the staged or the primary key).
      - V(synced) adds the keys of O(sync_keys) this node lacks, never removing one (reconciliation after a crash).
      - To only read a repository, use M(keyops.lifecycle.keyrepo_info).
    type: str
    choices: [present, rotated, staged, promoted, purged, synced]
    required: true
  staged_key:
    description: The key to stage (O(state=staged)). Never logged.
    type: str
  expect_staged:
    description: Fingerprint the staged key must have before it is promoted (O(state=promoted)).
    type: str
  new_staged_key:
    description: The next staged key (O(state=promoted)). Never logged.
    type: str
  sync_keys:
    description: Index -> key of the keys to have (O(state=synced)). Never logged.
    type: dict
  purge:
    description:
      - With O(state=promoted), also remove the keys beyond O(max_active_keys) in the same run, once the new C(0) is
        in place - what V(purged) would do next, without a second task over every node.
      - Other nodes may not have promoted yet, and they still issue tokens with the previous primary; it stays here
        as the newest secondary only when at least 3 keys are kept, so O(purge=true) is refused when
        O(max_active_keys) is below 3, and the two highest keys (the new and the previous primary) are never
        removed. Before that, every node must hold the same staged and primary key (the role checks it).
    type: bool
    default: false
    version_added: 1.1.0
  settle_seconds:
    description:
      - Pause between adding a key and replacing C(0) - linking the promoted key to its new number
        (O(state=promoted), O(state=rotated)), or writing a key another node promoted (O(state=synced)).
        Keystone lists the directory and then opens each file; a process that listed just before the key was
        added and opens C(0) after the replacement would otherwise see neither name of that key. That
        takes keystone well under a millisecond, but a process can be held up in between - the race test needed
        20 ms on a loaded machine, and a validator on a 2-core machine at load 18 took 0.77 s and missed the key
        with the former default of 0.5. The pause closes the window only for processes held up less than it.
    type: float
    default: 2.0
  credential_migrate:
    description:
      - After a credential key promotion or rotation, keystone's credentials must be re-encrypted with
        C(keystone-manage credential_migrate). V(auto) runs it when O(keystone_manage) is found and warns when not.
    type: str
    choices: [auto, always, never]
    default: auto
  keystone_manage:
    description: The C(keystone-manage) command for O(credential_migrate).
    type: str
    default: keystone-manage
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Single node - one rotation, keystone-style but without the gap
  keyops.lifecycle.keyrepo_rotate:
    path: /etc/keystone/fernet-keys
    owner: keystone
    group: keystone
    state: rotated

- name: Set up an empty repository like keystone-manage fernet_setup
  keyops.lifecycle.keyrepo_rotate:
    path: /etc/keystone/fernet-keys
    owner: keystone
    group: keystone
    state: present
"""

RETURN = r"""
keys:
  description: The keys after the task as C({index, fingerprint}), lowest index first.
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
actions:
  description: What was (or in check mode would be) done, in order, for example C(link 0 -> 4), C(write 0).
  returned: always
  type: list
  elements: str
mode_problems:
  description: Paths whose mode is not keystone's (directory 0700, keys 0600).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._keyrepo import KeyRepoError, run_keyrepo


def main():
    module = AnsibleModule(argument_spec=dict(
        path=dict(type="path", required=True),
        owner=dict(type="str"),
        group=dict(type="str"),
        max_active_keys=dict(type="int", default=3, no_log=False),
        repo_type=dict(type="str", default="fernet", choices=["fernet", "credential", "receipt"]),
        state=dict(type="str", required=True,
                   choices=["present", "rotated", "staged", "promoted", "purged", "synced"]),
        staged_key=dict(type="str", no_log=True),
        expect_staged=dict(type="str", no_log=False),
        new_staged_key=dict(type="str", no_log=True),
        sync_keys=dict(type="dict", no_log=True),
        purge=dict(type="bool", default=False),
        settle_seconds=dict(type="float", default=2.0),
        credential_migrate=dict(type="str", default="auto", choices=["auto", "always", "never"]),
        keystone_manage=dict(type="str", default="keystone-manage", no_log=False),
    ), supports_check_mode=True, required_if=[
        ("state", "staged", ["staged_key"]), ("state", "promoted", ["expect_staged", "new_staged_key"]),
        ("state", "synced", ["sync_keys"])])
    try:
        result = run_keyrepo(module)
    except KeyRepoError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except OSError as exc:
        # Writes go through temporary files and renames: a failed write leaves the keys as they were.
        module.fail_json(msg="cannot update the key repository %s: %s (the keys already there are unchanged); "
                             "fix the path or its permissions and run again" % (module.params["path"], exc))
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
