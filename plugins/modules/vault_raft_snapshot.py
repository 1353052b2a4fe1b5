#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_raft_snapshot
short_description: Save, retain and restore raft snapshots of a Vault/OpenBao cluster
version_added: 1.1.0
description:
  - O(state=saved) streams C(GET sys/storage/raft/snapshot) from the B(active) node to a 0600 file (temporary twin,
    fsync, rename, directory fsync), computing its sha256 while streaming, and writes a sidecar C(<file>.json)
    (0600) with the sha256, size, server version, cluster id and name, raft index and term, UTC time and the node
    it came from. The snapshot is checked before success is reported - a complete gzipped tar holding C(meta.json),
    C(state.bin), C(SHA256SUMS) (whose sums must match) and C(SHA256SUMS.sealed) - otherwise it is removed and the
    task fails.
  - A standby answers a snapshot request with its B(own, possibly stale) snapshot, so the module asks C(sys/leader)
    first and, with O(follow_leader=true), takes the snapshot from the C(leader_address) (same token and TLS
    settings); with O(follow_leader=false) it refuses a standby.
  - O(retain) keeps the newest N snapshots C(<prefix>-<UTC timestamp>.snap) (and their sidecars) of the directory
    after a successful save and deletes older ones.
  - O(state=restored) restores a snapshot file (or the newest C(<prefix>-*.snap) of a directory). Its sha256 is
    checked against the sidecar B(before anything is sent). By default a snapshot of the current state is taken
    first (C(<prefix>-pre-restore-<timestamp>.snap) in O(backup_current_to)), so there is always a way back.
    The restore goes to the active node only (a standby answers 204, restores nothing and seals itself); the
    module then waits until the node answers again.
  - Restoring a snapshot of B(another cluster) (other unseal keys) needs O(force=true) (C(snapshot-force)).
    Afterwards B(every node is sealed) and only the snapshot cluster's B(ORIGINAL) unseal keys open it; the
    result says so (RV(sealed), RV(msg)) - that is the expected outcome, not a failure. Until the first election
    among the restored nodes (about 20 s on three nodes) they forward requests to the snapshot's cluster when it
    is reachable, so wait for C(sys/leader) C(is_self) on one of this cluster's nodes before sending clients.
  - Snapshots are the server's whole storage (encrypted by the barrier). Treat them as secrets - they are written
    0600 in 0700 directories and their contents are never returned or logged.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  check_mode:
    details: Saving writes and removes nothing and returns the planned file and removals; restoring verifies the
      checksum and the target and restores nothing.
  diff_mode:
    support: none
options:
  state:
    description:
      - V(saved) takes a snapshot, V(restored) restores one.
    type: str
    choices: [saved, restored]
    default: saved
  path:
    description:
      - With O(state=saved) a directory (it exists as one, ends with C(/), or does not end in C(.snap); created
        0700 when missing), where the file is named C(<prefix>-<UTC timestamp>.snap), or a file name ending in
        C(.snap).
      - With O(state=restored) the snapshot file, or a directory whose newest C(<prefix>-<UTC timestamp>.snap) is
        restored.
    type: path
    required: true
  prefix:
    description:
      - File name prefix of generated snapshots; O(retain) and restoring from a directory only consider
        C(<prefix>-<UTC timestamp>.snap) files.
    type: str
    default: vault
  retain:
    description:
      - After a successful save keep the newest O(retain) snapshots of O(prefix) in the directory (with their
        sidecars) and delete older ones. Unset keeps everything.
    type: int
  follow_leader:
    description:
      - When O(url) is a standby, talk to the active node it names (C(leader_address)) with the same token and TLS
        settings. V(false) refuses a standby instead.
    type: bool
    default: true
  verify_checksum:
    description:
      - Refuse to restore a file whose sha256 does not match its sidecar, or that has no sidecar. Turn off only
        for a snapshot taken by other means, after checking it yourself.
    type: bool
    default: true
  force:
    description:
      - Restore through C(snapshot-force), which is needed for a snapshot of a cluster with other unseal keys
        (every node seals afterwards; unseal with the snapshot cluster's original keys). Must be given
        explicitly; also allows O(backup_current=false).
    type: bool
    default: false
  backup_current:
    description:
      - Take a snapshot of the target's current state before restoring (the way back). Turning it off requires
        O(force=true).
    type: bool
    default: true
  backup_current_to:
    description:
      - Directory of the snapshot of the current state taken before a restore. Default the directory of the
        restored file.
    type: path
  wait_timeout:
    description:
      - Seconds to wait after the restore for the node to answer again (same keys) or to seal (other keys).
    type: int
    default: 60
notes:
  - The token needs C(read) on C(sys/storage/raft/snapshot) to save, C(update) on C(sys/storage/raft/snapshot)
    (or C(sys/storage/raft/snapshot-force)) to restore, and C(read) on C(sys/storage/raft/snapshot) for the
    backup of the current state taken before a restore.
  - A restore is irreversible. Test restores regularly into a separate cluster (see docs/vault-server.md,
    "Snapshots and restore").
seealso:
  - module: keyops.lifecycle.vault_unseal
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Daily snapshot from the active node, keep the newest 14
  keyops.lifecycle.vault_raft_snapshot:
    state: saved
    path: /var/backups/openbao/
    retain: 14
  register: snapshot

- name: Restore the newest snapshot of the directory (a snapshot of the current state is taken first)
  keyops.lifecycle.vault_raft_snapshot:
    state: restored
    path: /var/backups/openbao/

- name: Disaster recovery - restore into a freshly initialised cluster (it seals; unseal with the original keys)
  keyops.lifecycle.vault_raft_snapshot:
    state: restored
    path: "{{ snapshot.path }}"
    force: true
  register: restored

- name: Unseal with the ORIGINAL keys of the snapshot's cluster
  keyops.lifecycle.vault_unseal:
    keys_file: "/root/.secrets/original-init.json"
  when: restored.sealed
"""

RETURN = r"""
path:
  description: The snapshot file written (O(state=saved), planned in check mode) or restored.
  returned: always
  type: str
sha256:
  description: Hex sha256 of the snapshot file (null in check mode when saving).
  returned: always
  type: str
size:
  description: Size of the snapshot file in bytes (null in check mode when saving).
  returned: always
  type: int
version:
  description: Server version of the node the snapshot was taken from (saved) or restored on (from sys/seal-status).
  returned: always
  type: str
node:
  description: Address of the active node that was used (the leader when O(url) was a standby).
  returned: always
  type: str
sidecar:
  description: The metadata file written beside the snapshot.
  returned: when O(state=saved)
  type: str
cluster_id:
  description: Cluster id of the node the snapshot was taken from.
  returned: when O(state=saved)
  type: str
cluster_name:
  description: Cluster name of the node the snapshot was taken from.
  returned: when O(state=saved)
  type: str
raft_index:
  description: Raft index of the snapshot (from its meta.json; null in check mode when saving).
  returned: always
  type: int
raft_term:
  description: Raft term of the snapshot (from its meta.json; null in check mode when saving).
  returned: always
  type: int
created:
  description: UTC time the snapshot was taken.
  returned: when O(state=saved) and not in check mode
  type: str
removed:
  description: Older snapshots deleted by O(retain) (would be deleted, in check mode).
  returned: when O(state=saved)
  type: list
  elements: str
backup:
  description: The snapshot of the current state taken before restoring (planned in check mode).
  returned: when O(state=restored)
  type: str
sealed:
  description: Whether the node is sealed after the restore (true after a force restore of another cluster's
    snapshot; unseal every node with the original keys).
  returned: when O(state=restored)
  type: bool
force:
  description: Whether C(snapshot-force) was used.
  returned: when O(state=restored)
  type: bool
checksum_verified:
  description: Whether the file was checked against its sidecar.
  returned: when O(state=restored)
  type: bool
snapshot_cluster_id:
  description: Cluster id recorded in the sidecar.
  returned: when O(state=restored)
  type: str
target_cluster_id:
  description: Cluster id of the target before the restore.
  returned: when O(state=restored)
  type: str
msg:
  description: What happened and what the operator must do next (unseal with the original keys, wait for a leader).
  returned: when O(state=restored)
  type: str
unseal_with:
  description: Whose unseal keys open the cluster now.
  returned: when O(state=restored) and RV(sealed)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import run_vault_module, vault_argument_spec
from ansible_collections.keyops.lifecycle.plugins.module_utils import _snapshot


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            state=dict(type="str", default="saved", choices=["saved", "restored"]),
            path=dict(type="path", required=True),
            prefix=dict(type="str", default="vault"),
            retain=dict(type="int"),
            follow_leader=dict(type="bool", default=True),
            verify_checksum=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
            backup_current=dict(type="bool", default=True),
            backup_current_to=dict(type="path"),
            wait_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["wait_timeout"] is not None and params["wait_timeout"] < 1:
        module.fail_json(msg="`wait_timeout` must be 1 or more seconds (got %s)" % params["wait_timeout"])

    def work(connection):
        if params["state"] == "saved":
            return _snapshot.save(connection, params, module.check_mode)
        return _snapshot.restore(connection, params, module.check_mode)

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
