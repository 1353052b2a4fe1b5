#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_transit_key
short_description: Create, rotate, configure, trim and delete Vault/OpenBao transit keys safely
version_added: 0.1.0
description:
  - Manages one key of a transit secrets engine.
  - Rotation can be made idempotent for scheduled jobs with O(rotate_older_than).
  - Raising O(min_decryption_version) makes older ciphertext undecryptable, so it is refused unless
    O(oldest_version_in_use) proves no consumer still uses an older version, or O(force=true).
  - Trimming (O(min_available_version)) and deleting are irreversible. When the key allows backups
    (C(exportable) and C(allow_plaintext_backup)) and O(backup_path) is given, a backup of the key
    (C(GET <mount>/backup/<name>)) is written first - 0600, or encrypted to a GPG public key - and the
    step is not sent if that fails. Otherwise the step needs O(allow_data_loss=true).
  - O(state=restored) restores such a backup (C(POST <mount>/restore/<name>)).
  - Supports check mode (nothing is sent and no backup is written; the result predicts the change) and diff mode
    (configuration and version list before and after; never key material).
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: full
options:
  name:
    description: Name of the transit key.
    type: str
    required: true
  mount:
    description: Path the transit secrets engine is mounted at.
    type: str
    default: transit
  state:
    description:
      - V(present) creates the key if needed and applies the other options.
      - V(absent) deletes the key and every version of it. This needs the key's C(deletion_allowed) to be
        true, or O(deletion_allowed=true) in the same task as confirmation, and a backup (O(backup_path)) or
        O(allow_data_loss=true).
      - V(restored) restores the key from O(backup_file). A missing key is created from it; an existing one is
        replaced only with O(force=true), and not by a backup older than its latest version unless
        O(allow_older_backup=true). Unchanged when the key already holds the backup's versions and settings.
    type: str
    choices: [present, absent, restored]
    default: present
  type:
    description:
      - Key type, used when the key is created. An existing key of another type is an error (types cannot change).
      - Defaults to V(aes256-gcm96) on creation.
    type: str
    choices: [aes128-gcm96, aes256-gcm96, chacha20-poly1305, xchacha20-poly1305, ed25519, ecdsa-p256, ecdsa-p384,
              ecdsa-p521, rsa-2048, rsa-3072, rsa-4096, hmac]
  key_size:
    description: Size in bytes of an V(hmac) key (32 to 512). Only used on creation.
    type: int
  derived:
    description: Create a key that derives per-context keys. Fixed at creation.
    type: bool
  rotate:
    description:
      - Rotate the key now (add a new version that becomes the encryption version).
      - Not idempotent by nature; scheduled jobs should use O(rotate_older_than).
    type: bool
    default: false
  rotate_older_than:
    description:
      - Rotate only when the newest version is at least this old, for example V(90d), V(12h), V(1h30m).
      - A second run inside the period changes nothing.
    type: str
  min_decryption_version:
    description:
      - Oldest key version Vault may decrypt with.
      - Raising it above the current value requires O(oldest_version_in_use) >= the new value, or O(force=true).
    type: int
  oldest_version_in_use:
    description:
      - The oldest key version still referenced by any consumer of this key (for example the
        C(oldest_version_in_use) of M(keyops.lifecycle.vault_transit_rewrap)). Guards O(min_decryption_version).
      - The alias O(in_use_min_version) is deprecated and will be removed in 2.0.0.
    type: int
    aliases: [in_use_min_version]
  force:
    description:
      - Raise O(min_decryption_version) without proof that no consumer needs older versions.
      - With O(state=restored), restore over an existing key (rolling it back to the backup's versions and
        settings, which brings trimmed versions back).
    type: bool
    default: false
  backup_path:
    description:
      - Directory (existing, or ending in C(/); created 0700) or file to write a backup of the key to before a trim
        or delete. In a directory the file is named C(<mount>.<name>.v<first>-v<last>.<UTC time>.transit-backup)
        (C(.gpg) added when encrypted).
      - The file holds the key material of every version, so it is written 0600 through a temporary file and a rename,
        never logged and never returned (the task returns RV(backup.path), RV(backup.sha256) and the versions).
      - It is the blob Vault returned, so C(bao write <mount>/restore/<name> backup=@FILE) restores it too.
      - Only used when the key allows backups (C(exportable) and C(allow_plaintext_backup) true).
    type: path
  backup_gpg_recipient:
    description:
      - Encrypt the backup to this GPG key (id, fingerprint or e-mail) of the keyring in E(GNUPGHOME) with the
        C(gpg) binary. Mutually exclusive with O(backup_gpg_key_file).
    type: str
  backup_gpg_key_file:
    description: Encrypt the backup to the GPG public key in this file (nothing is imported into a keyring).
    type: path
  allow_data_loss:
    description:
      - Acknowledge that a trim or delete of a key without a backup (the key does not allow backups, or no
        O(backup_path) is given) destroys key versions for good. Without it such a task fails and changes nothing.
      - The alias O(irreversible_ok) is deprecated and will be removed in 2.0.0.
    type: bool
    default: false
    aliases: [irreversible_ok]
  backup_file:
    description:
      - The backup to restore with O(state=restored), as written by O(backup_path). A file ending in C(.gpg),
        C(.asc) or C(.pgp) is decrypted with C(gpg) and the private key in the keyring of E(GNUPGHOME).
    type: path
  allow_older_backup:
    description:
      - With O(state=restored) and O(force=true), allow a backup whose latest version is older than the key's.
        Vault then deletes the newer versions, and ciphertext encrypted with them becomes undecryptable.
    type: bool
    default: false
  min_encryption_version:
    description: Oldest version Vault may encrypt with; V(0) means the latest.
    type: int
  min_available_version:
    description:
      - Trim the key, destroying versions below this number for good.
      - Must not exceed O(min_decryption_version) or O(min_encryption_version) (Vault requires the latter to be set).
    type: int
  deletion_allowed:
    description: Whether the key may be deleted.
    type: bool
  exportable:
    description: Allow exporting the key. Cannot be turned off once on.
    type: bool
  allow_plaintext_backup:
    description: Allow plaintext backups of the key. Cannot be turned off once on.
    type: bool
  auto_rotate_period:
    description: Let Vault rotate the key itself at this interval (V(0) turns it off; at least V(1h)).
    type: str
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Use one connection for every Vault task
  module_defaults:
    group/keyops.lifecycle.vault:
      url: https://vault.example.com:8200
      token: "{{ vault_token }}"
  block:
    - name: Make sure K10's key exists
      keyops.lifecycle.vault_transit_key:
        name: kasten
        type: aes256-gcm96

    - name: Rotate it when the newest version is 90 days old (safe to schedule daily)
      keyops.lifecycle.vault_transit_key:
        name: kasten
        rotate_older_than: 90d

    - name: Stop decrypting with versions no consumer uses any more
      keyops.lifecycle.vault_transit_key:
        name: kasten
        min_decryption_version: 3
        oldest_version_in_use: "{{ rewrap.oldest_version_in_use }}"

    - name: A key whose versions can be backed up (exportable and allow_plaintext_backup are one-way)
      keyops.lifecycle.vault_transit_key:
        name: ledger
        exportable: true
        allow_plaintext_backup: true
        rotate: true

    - name: Trim versions below 2, writing a 0600 backup first (add backup_gpg_key_file to encrypt it)
      keyops.lifecycle.vault_transit_key:
        name: ledger
        min_decryption_version: 2
        oldest_version_in_use: 2
        min_encryption_version: 2
        min_available_version: 2
        backup_path: /var/lib/app/transit-backups/
      register: trimmed   # trimmed.backup.path, .sha256, .first_version, .last_version

    - name: Undo the trim (a .gpg backup is decrypted with the private key in GNUPGHOME)
      keyops.lifecycle.vault_transit_key:
        name: ledger
        state: restored
        backup_file: "{{ trimmed.backup.path }}"
        force: true

    - name: Delete a key that is no longer needed (it allows no backups - acknowledged)
      keyops.lifecycle.vault_transit_key:
        name: old-key
        state: absent
        deletion_allowed: true
        allow_data_loss: true
"""

RETURN = r"""
key:
  description: The key after the task (predicted in check mode). Empty after deletion.
  returned: always
  type: dict
  contains:
    name:
      description: Key name.
      type: str
    type:
      description: Key type.
      type: str
    latest_version:
      description: Newest version (used for encryption).
      type: int
    min_decryption_version:
      description: Oldest version Vault decrypts with.
      type: int
    min_encryption_version:
      description: Oldest version Vault encrypts with (0 = latest).
      type: int
    min_available_version:
      description: Versions below this were trimmed.
      type: int
    versions:
      description: Version number (as string) to creation time (UTC, ISO 8601), for versions Vault lists.
      type: dict
  sample:
    name: kasten
    type: aes256-gcm96
    latest_version: 3
    min_decryption_version: 2
    min_encryption_version: 0
    min_available_version: 0
    versions: {"2": "2026-08-01T00:00:00Z", "3": "2026-11-01T00:00:00Z"}
backup:
  description:
    - The backup written before a trim or delete (predicted in check mode, with RV(backup.sha256) null). Null when
      no backup was taken. Never the key material itself.
  returned: always
  type: dict
  contains:
    path:
      description: The backup file.
      type: str
    sha256:
      description: SHA-256 of the file's bytes (of the encrypted file when encrypted).
      type: str
    encrypted:
      description: Whether the file is GPG-encrypted.
      type: bool
    first_version:
      description: Oldest key version the backup holds.
      type: int
    last_version:
      description: Newest key version the backup holds.
      type: int
irreversible:
  description: A trim or delete was done (or would be) without a backup, acknowledged with O(allow_data_loss).
  returned: always
  type: bool
actions:
  description: What the task did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["rotated to version 3", "configured: min_decryption_version 1 -> 2"]
"""

import datetime
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    run_vault_module,
    vault_argument_spec,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import (
    KEY_TYPES,
    TransitBackend,
    diff_view,
    plan_transit_key,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit_backup import (
    BackupSettings,
    plan_restore,
    read_backup_file,
    restore,
)

BACKUP_OPTIONS = dict(
    backup_path=dict(type="path"),
    backup_gpg_recipient=dict(type="str"),
    backup_gpg_key_file=dict(type="path"),
    allow_data_loss=dict(type="bool", default=False, aliases=["irreversible_ok"], deprecated_aliases=[
        dict(name="irreversible_ok", version="2.0.0", collection_name="keyops.lifecycle")]),
)


def restored(backend, module, before):
    """state=restored: the key from backup_file (a missing key is created, an existing one needs force)."""
    params = module.params
    name = params["name"]
    blob, summary = read_backup_file(params["backup_file"], module.run_command)
    action = plan_restore(name, before, summary, params["force"], params["allow_older_backup"])
    if action is None:
        return dict(changed=False, key=before, actions=[], backup=None, irreversible=False)
    if module.check_mode:
        after = dict(before or {"name": name}, latest_version=summary["latest_version"],
                     min_decryption_version=summary["min_decryption_version"],
                     min_available_version=summary["min_available_version"])
        return dict(changed=True, key=after, actions=[action], backup=None, irreversible=False)
    restore(backend.connection, backend.mount, name, blob, params["force"])
    # A standby serves reads from its own copy, ~0.1 s behind a restore on the active node.
    after = None
    deadline = time.monotonic() + 3
    while True:
        after = backend.get_info(name)
        if after and after["latest_version"] == summary["latest_version"] \
                and after["min_available_version"] == summary["min_available_version"]:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return dict(changed=True, key=after or {}, actions=[action], backup=None, irreversible=False)


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            name=dict(type="str", required=True),
            mount=dict(type="str", default="transit"),
            state=dict(type="str", default="present", choices=["present", "absent", "restored"]),
            type=dict(type="str", choices=list(KEY_TYPES)),
            key_size=dict(type="int"),
            derived=dict(type="bool"),
            rotate=dict(type="bool", default=False),
            rotate_older_than=dict(type="str"),
            min_decryption_version=dict(type="int"),
            oldest_version_in_use=dict(type="int", aliases=["in_use_min_version"], deprecated_aliases=[
                dict(name="in_use_min_version", version="2.0.0", collection_name="keyops.lifecycle")]),
            force=dict(type="bool", default=False),
            min_encryption_version=dict(type="int"),
            min_available_version=dict(type="int"),
            deletion_allowed=dict(type="bool"),
            exportable=dict(type="bool"),
            allow_plaintext_backup=dict(type="bool"),
            auto_rotate_period=dict(type="str"),
            backup_file=dict(type="path"),
            allow_older_backup=dict(type="bool", default=False),
            **BACKUP_OPTIONS
        ),
        mutually_exclusive=[("rotate", "rotate_older_than"), ("backup_gpg_recipient", "backup_gpg_key_file")],
        required_if=[("state", "restored", ("backup_file",))],
        supports_check_mode=True,
    )

    def work(connection):
        backups = BackupSettings.from_module(module)
        backend = TransitBackend(connection, module.params["mount"], backups)
        name = module.params["name"]
        before = backend.get_info(name)
        if module.params["state"] == "restored":
            result = restored(backend, module, before)
            if module._diff:
                result["diff"] = dict(before=diff_view(before), after=diff_view(result["key"] or None))
            return result
        now = datetime.datetime.now(datetime.timezone.utc)
        operations, predicted = plan_transit_key(before, module.params, now, backups)
        kinds = [operation for operation, _payload, _action in operations]
        taken = []
        if operations and not module.check_mode:
            actions, after = backend.apply(name, operations, taken)
        else:
            actions = [action for _operation, _payload, action in operations]
            after = predicted
            if "backup" in kinds:
                # the backup comes before the trim: a key created in this task is backed up untrimmed
                backed_up = before if before is not None else dict(predicted, min_available_version=0)
                taken.append(backups.predict(backend.mount, name, dict(
                    backed_up, latest_version=(predicted or before)["latest_version"]), now))
        irreversible = ("trim" in kinds or "delete" in kinds) and "backup" not in kinds
        result = dict(changed=bool(operations), key=after or {}, actions=actions,
                      backup=taken[-1] if taken else None, irreversible=irreversible)
        if module._diff:
            result["diff"] = dict(before=diff_view(before), after=diff_view(after))
        return result

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
