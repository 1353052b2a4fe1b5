#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_transit_keys
short_description: Rotate and configure many existing transit keys in one task
version_added: 0.1.0
description:
  - The bulk form of M(keyops.lifecycle.vault_transit_key) for existing keys - the same decisions and the same
    guard on C(min_decryption_version), applied to a list of keys in one task (requests run concurrently).
    A rotation job over hundreds of keys then costs a handful of tasks instead of hundreds.
  - Every key is read and planned before anything is sent. If any key's change is refused (unsafe
    C(min_decryption_version), missing key, impossible trim), the task fails naming each refusal and changes nothing.
  - There is no O(keyops.lifecycle.vault_transit_key#module:force) here - raising C(min_decryption_version) always
    needs C(oldest_version_in_use).
  - A trim (O(keys[].min_available_version)) of a key that allows backups (C(exportable) and C(allow_plaintext_backup))
    is preceded by a backup written to O(backup_path), as in M(keyops.lifecycle.vault_transit_key); a trim without
    a backup needs O(keys[].allow_data_loss=true), otherwise the task fails and changes nothing.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: full
options:
  keys:
    description: The keys and what to do with each. A key with nothing but its name is only read.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Key name.
        type: str
        required: true
      mount:
        description: Transit mount (default O(mount)).
        type: str
      rotate:
        description: Rotate now.
        type: bool
      rotate_older_than:
        description: Rotate when the newest version is at least this old (V(90d), V(12h)).
        type: str
      min_decryption_version:
        description: Oldest version Vault may decrypt with (raising it needs O(keys[].oldest_version_in_use)).
        type: int
      oldest_version_in_use:
        description:
          - Oldest version any consumer of the key still uses.
          - The alias O(keys[].in_use_min_version) is deprecated and will be removed in 2.0.0.
        type: int
        aliases: [in_use_min_version]
      min_encryption_version:
        description: Oldest version Vault may encrypt with.
        type: int
      min_available_version:
        description: Trim versions below this (see O(backup_path) and O(keys[].allow_data_loss)).
        type: int
      allow_data_loss:
        description:
          - Acknowledge a trim without a backup (the key allows none, or O(backup_path) is not given).
          - The alias O(keys[].irreversible_ok) is deprecated and will be removed in 2.0.0.
        type: bool
        default: false
        aliases: [irreversible_ok]
  backup_path:
    description:
      - Directory (created 0700) for the backups taken before trims, one 0600 file per key named
        C(<mount>.<name>.v<first>-v<last>.<UTC time>.transit-backup). Never logged or returned.
    type: path
  backup_gpg_recipient:
    description: Encrypt the backups to this GPG key of the keyring in E(GNUPGHOME).
    type: str
  backup_gpg_key_file:
    description: Encrypt the backups to the GPG public key in this file.
    type: path
  mount:
    description: Default transit mount.
    type: str
    default: transit
  workers:
    description: Keys handled concurrently.
    type: int
    default: 8
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Rotate every key whose newest version is 90 days old
  keyops.lifecycle.vault_transit_keys:
    keys:
      - {name: kasten, rotate_older_than: 90d}
      - {name: payroll, rotate_older_than: 90d}
      - {name: backups, rotate_older_than: 30d}

- name: Raise min_decryption_version of two keys as far as their consumers allow
  keyops.lifecycle.vault_transit_keys:
    keys:
      - {name: kasten, min_decryption_version: 4, oldest_version_in_use: 4}
      - {name: payroll, mount: transit-hr, min_decryption_version: 2, oldest_version_in_use: 2}
"""

RETURN = r"""
keys:
  description: One entry per requested key, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Key name.
      type: str
    mount:
      description: Transit mount.
      type: str
    changed:
      description: Whether this key changed.
      type: bool
    actions:
      description: What was done to this key.
      type: list
      elements: str
    before:
      description: The key before the task (same shape as RV(keys[].key)).
      type: dict
    key:
      description: The key after the task (predicted in check mode), as returned by M(keyops.lifecycle.vault_transit_key).
      type: dict
    backup:
      description: The backup written before the trim (path, sha256, encrypted, first_version, last_version), or null.
      type: dict
    irreversible:
      description: The key was trimmed (or would be) without a backup, acknowledged with O(keys[].allow_data_loss).
      type: bool
"""

import datetime

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._module import checked_suboptions
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultModuleError,
    run_vault_module,
    vault_argument_spec,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import (
    TransitBackend,
    diff_view,
    plan_transit_key,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit_backup import BackupSettings

KEY_SPEC = dict(
    name=dict(type="str", required=True),
    mount=dict(type="str"),
    rotate=dict(type="bool"),
    rotate_older_than=dict(type="str"),
    min_decryption_version=dict(type="int"),
    oldest_version_in_use=dict(type="int", aliases=["in_use_min_version"], deprecated_aliases=[
        dict(name="in_use_min_version", version="2.0.0", collection_name="keyops.lifecycle")]),
    min_encryption_version=dict(type="int"),
    min_available_version=dict(type="int"),
    allow_data_loss=dict(type="bool", default=False, aliases=["irreversible_ok"], deprecated_aliases=[
        dict(name="irreversible_ok", version="2.0.0", collection_name="keyops.lifecycle")]),
)


def main():
    module = AnsibleModule(**checked_suboptions(dict(
        argument_spec=vault_argument_spec(
            keys=dict(type="list", elements="dict", required=True, options=KEY_SPEC, no_log=False),
            mount=dict(type="str", default="transit"),
            workers=dict(type="int", default=8),
            backup_path=dict(type="path"),
            backup_gpg_recipient=dict(type="str"),
            backup_gpg_key_file=dict(type="path"),
        ),
        mutually_exclusive=[("backup_gpg_recipient", "backup_gpg_key_file")],
        supports_check_mode=True)))
    if not 1 <= module.params["workers"] <= 32:
        module.fail_json(msg="workers must be between 1 and 32 (got %d)" % module.params["workers"])

    def work(connection):
        now = datetime.datetime.now(datetime.timezone.utc)
        requests = []
        for spec in module.params["keys"]:
            desired = dict(spec, mount=spec["mount"] or module.params["mount"], state="present", force=False)
            if desired["rotate"] and desired["rotate_older_than"]:
                raise VaultModuleError("key %s: rotate and rotate_older_than are mutually exclusive" % spec["name"])
            requests.append(desired)
        backups = BackupSettings.from_module(module)
        if backups.path and not backups.path.endswith("/"):
            backups.path += "/"  # always a directory here: one file per key
        backends = dict((mount, TransitBackend(connection, mount, backups))
                        for mount in set(r["mount"] for r in requests))

        def plan(desired):
            before = backends[desired["mount"]].get_info(desired["name"])
            if before is None:
                return desired, None, None, ("transit key %s does not exist in mount %s (create it with "
                                             "keyops.lifecycle.vault_transit_key)" % (desired["name"], desired["mount"]))
            try:
                operations, predicted = plan_transit_key(before, desired, now, backups)
            except VaultModuleError as exc:
                return desired, before, None, "key %s: %s" % (desired["name"], exc.msg)
            return desired, before, (operations, predicted), None

        with ThreadPoolExecutor(max_workers=module.params["workers"]) as pool:
            plans = list(pool.map(plan, requests))
            refusals = [refusal for _desired, _before, _plan, refusal in plans if refusal]
            if refusals:
                raise VaultModuleError("nothing was changed: " + "; ".join(refusals))

            def apply(item):
                desired, before, (operations, predicted), _refusal = item
                backend = backends[desired["mount"]]
                kinds = [operation for operation, _payload, _action in operations]
                taken = []
                if operations and not module.check_mode:
                    actions, after = backend.apply(desired["name"], operations, taken)
                else:
                    actions = [action for _operation, _payload, action in operations]
                    after = predicted
                    if "backup" in kinds:
                        taken.append(backups.predict(backend.mount, desired["name"], dict(
                            before, latest_version=predicted["latest_version"]), now))
                return dict(name=desired["name"], mount=desired["mount"], changed=bool(operations),
                            actions=actions, before=before, key=after, backup=taken[-1] if taken else None,
                            irreversible="trim" in kinds and "backup" not in kinds)

            results = list(pool.map(apply, plans))
        result = dict(changed=any(entry["changed"] for entry in results), keys=results)
        if module._diff:
            result["diff"] = dict(
                before=dict(("%s/%s" % (e["mount"], e["name"]), diff_view(e["before"])) for e in results if e["changed"]),
                after=dict(("%s/%s" % (e["mount"], e["name"]), diff_view(e["key"])) for e in results if e["changed"]))
        return result

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
