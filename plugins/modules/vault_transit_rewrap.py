#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_transit_rewrap
short_description: Rewrap a file of Vault/OpenBao transit ciphertexts to the latest key version
version_added: 0.1.0
description:
  - Step 2 of a transit key rotation - bring stored ciphertext up to the newest key version so that
    C(min_decryption_version) can be raised safely afterwards.
  - The file on the target host holds one ciphertext per line, or JSON lines with the ciphertext in O(field)
    (every other field and byte of the line is kept as it is). Blank lines are kept.
  - The file is streamed - memory stays flat for millions of lines. Lines below the target version are sent in
    batches to the rewrap endpoint; the result is written to a temporary file beside the original, fsynced and
    renamed over it with the original mode and owner, so a crash leaves either the old or the new file.
  - Malformed lines and per-item errors from Vault are reported by line number and nothing is written.
  - Ciphertexts and line contents are never logged or returned.
  - Concurrent runs on the same file (for example two keys whose ciphertexts share a file) are serialised with a
    lock file beside it.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  check_mode:
    details: Check mode reads the file and returns the census only.
  diff_mode:
    support: full
    details: The diff shows the census (key version to count) before and after.
options:
  name:
    description: Transit key the ciphertexts belong to (with O(path)).
    type: str
  mount:
    description: Path the transit secrets engine is mounted at.
    type: str
    default: transit
  path:
    description: File holding the ciphertexts, on the host the module runs on. Give O(path) or O(consumers).
    type: path
  field:
    description: For JSON lines, the top-level field holding the ciphertext. Omit for one ciphertext per line.
    type: str
  key_version:
    description: Rewrap to this version instead of the latest. Lines already at or above it are left alone.
    type: int
  batch_size:
    description:
      - Ciphertexts per rewrap request. OpenBao's default listener refuses JSON bodies with more than about
        1,000 strings (a little under 500 items); larger values are refused here, and a batch the server still
        refuses as too complex is split and retried.
      - Vault's and OpenBao's C(max_request_json_strings) / C(max_request_size) listener settings set the real limit.
    type: int
    default: 400
  workers:
    description: Rewrap requests in flight at once.
    type: int
    default: 4
  backup:
    description: Keep a timestamped copy of the original file (same mode) before replacing it.
    type: bool
    default: false
  consumers:
    description:
      - Bulk mode - rewrap many files (of one or several keys) in one task, each reporting its own outcome in
        RV(consumers). Used by the transit_rotation role so that the number of tasks does not grow with the
        number of keys.
    type: list
    elements: dict
    suboptions:
      name:
        description: Transit key of this file's ciphertexts.
        type: str
        required: true
      mount:
        description: Transit mount (default O(mount)).
        type: str
      path:
        description: The file.
        type: path
        required: true
      field:
        description: JSON lines field holding the ciphertext.
        type: str
      key_version:
        description: Rewrap to this version instead of the latest.
        type: int
      backup:
        description: Keep a backup (default O(backup)).
        type: bool
  fail_on_error:
    description:
      - In bulk mode, fail the task when any consumer could not be rewrapped (the others are still done).
      - With V(false) the task succeeds and each entry of RV(consumers) tells its own C(ok) and C(error).
    type: bool
    default: true
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Rewrap K10's stored master key ciphertexts to the newest version
  keyops.lifecycle.vault_transit_rewrap:
    name: kasten
    path: /var/lib/app/ciphertexts.txt
  register: rewrap

- name: Rewrap the "secret" field of a JSON lines file, keeping a backup
  keyops.lifecycle.vault_transit_rewrap:
    name: payroll
    path: /srv/payroll/records.jsonl
    field: secret
    backup: true

- name: Rewrap every consumer file of several keys on this host in one task
  keyops.lifecycle.vault_transit_rewrap:
    consumers:
      - {name: kasten, path: /var/lib/app/ciphertexts.txt}
      - {name: payroll, path: /srv/payroll/records.jsonl, field: secret}
    fail_on_error: false
  register: bulk

- name: Then raise min_decryption_version no further than what is still in use
  keyops.lifecycle.vault_transit_key:
    name: kasten
    min_decryption_version: "{{ rewrap.min_version_in_use }}"
    in_use_min_version: "{{ rewrap.min_version_in_use }}"
"""

RETURN = r"""
target_version:
  description: Key version the lines were rewrapped to.
  returned: with O(path)
  type: int
  sample: 3
census_before:
  description: Key version (as string) to number of ciphertexts, before.
  returned: with O(path)
  type: dict
  sample: {"1": 5000, "2": 120}
census_after:
  description: The same after the rewrap (equal to census_before in check mode and when nothing was due).
  returned: with O(path)
  type: dict
  sample: {"3": 5120}
rewrapped:
  description: Ciphertexts rewrapped (in check mode, that would be rewrapped).
  returned: with O(path)
  type: int
  sample: 5120
min_version_in_use:
  description: Oldest key version still in the file after the task (null for a file without ciphertexts).
  returned: with O(path)
  type: int
  sample: 3
backup_file:
  description: Path of the backup copy.
  returned: when O(backup=true) and the file changed
  type: str
errors:
  description: Up to 20 failing lines as C({line, error}) (never the line's content).
  returned: on failure
  type: list
  elements: dict
consumers:
  description: Bulk mode - one entry per consumer with the fields above plus C(name), C(mount), C(ok), C(error).
  returned: when O(consumers) is given
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._module import checked_suboptions
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultModuleError,
    run_vault_module,
    vault_argument_spec,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils import _rewrap

CONSUMER_SPEC = dict(
    name=dict(type="str", required=True),
    mount=dict(type="str"),
    path=dict(type="path", required=True),
    field=dict(type="str"),
    key_version=dict(type="int", no_log=False),
    backup=dict(type="bool"),
)


def main():
    module = AnsibleModule(**checked_suboptions(dict(
        argument_spec=vault_argument_spec(
            name=dict(type="str"),
            mount=dict(type="str", default="transit"),
            path=dict(type="path"),
            field=dict(type="str"),
            key_version=dict(type="int", no_log=False),
            batch_size=dict(type="int", default=400),
            workers=dict(type="int", default=4),
            backup=dict(type="bool", default=False),
            consumers=dict(type="list", elements="dict", options=CONSUMER_SPEC),
            fail_on_error=dict(type="bool", default=True),
        ),
        required_together=[("name", "path")],
        required_one_of=[("path", "consumers")],
        mutually_exclusive=[("path", "consumers")],
        supports_check_mode=True)))
    params = module.params
    if not 1 <= params["batch_size"] <= _rewrap.MAX_SAFE_BATCH:
        module.fail_json(msg="batch_size must be between 1 and %d (got %d): OpenBao refuses larger JSON bodies "
                         "by default" % (_rewrap.MAX_SAFE_BATCH, params["batch_size"]))
    if not 1 <= params["workers"] <= 32:
        module.fail_json(msg="workers must be between 1 and 32 (got %d)" % params["workers"])

    def work(connection):
        rewrapper = _rewrap.FileRewrapper(connection, module.check_mode, module.backup_local,
                                          params["batch_size"], params["workers"])
        if params["path"]:
            result = rewrapper.rewrap_file(params["name"], params["mount"], params["path"], params["field"],
                                           params["key_version"], params["backup"])
            if module._diff:
                result["diff"] = dict(before={"census": result["census_before"]},
                                      after={"census": result["census_after"]})
            return result
        # Bulk: every consumer is tried and reports its own outcome.
        results = rewrapper.rewrap_many(params["consumers"], params["mount"], params["backup"])
        failed = [entry for entry in results if not entry["ok"]]
        if failed and params["fail_on_error"]:
            raise VaultModuleError("%d of %d consumer(s) could not be rewrapped: %s"
                                   % (len(failed), len(results), "; ".join(e["error"] for e in failed)),
                                   consumers=results, changed=any(e["changed"] for e in results))
        return dict(changed=any(entry["changed"] for entry in results), consumers=results)

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
