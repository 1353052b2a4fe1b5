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
  - Ciphertexts, contexts and line contents are never logged or returned.
  - Derived keys (C(derived=true)) need the key derivation context of every line - O(context_field) names the JSON
    lines field holding it. A derived key without O(context_field) is refused before anything is written.
  - Applications may go on appending to the file while it is rewrapped, provided they open it for each write with
    C(O_APPEND) and write each line with one C(write()) (C(flock) on the file is optional and honoured), or reopen it
    when it is renamed. Lines appended during the run are caught up (censused and rewrapped too); the last catch-up
    and the rename happen under C(flock) on the file; for O(settle_time) after the rename whatever still lands in
    the replaced file is carried over to the new one. A process that keeps the file open for writing across the
    run is detected (C(/proc)) before the rename - the file is then left untouched and the task fails (or, with
    O(open_writers=report), reports it) - and if the replaced file is still written to after the settle window the
    task fails with the number of lines at risk. See C(docs/file-consumers.md) for what a writer must do.
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
  context_field:
    description:
      - For a derived transit key, the top-level field of each JSON line holding the key derivation context of
        that line's ciphertext (sent with it as C(context)). Needs O(field).
      - A line without it (or with an empty one) is malformed - reported by line number, nothing written.
    type: str
  context_encoding:
    description:
      - How O(context_field) holds the context. V(base64) - exactly as Vault's API takes it (checked, sent as is).
        V(text) - plain text, whose UTF-8 bytes are base64-encoded before they are sent.
    type: str
    choices: [base64, text]
    default: base64
  key_version:
    description: Rewrap to this version instead of the latest. Lines already at or above it are left alone.
    type: int
  batch_size:
    description:
      - Ciphertexts per rewrap request. OpenBao's default listener refuses JSON bodies with more than about
        1,000 strings (a little under 500 items); larger values are refused here, and a batch the server still
        refuses as too complex is split and retried.
      - Vault's and OpenBao's C(max_request_json_strings) / C(max_request_size) listener settings set the real limit.
      - With O(context_field) every item carries twice the strings, so at most 240 are sent at once.
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
  settle_time:
    description:
      - Seconds after the last growth of the replaced file during which lines still written into it (by writers
        that opened it just before the rename) are carried over to the new file. Between 0.05 and 30.
      - If it still grows 10 times as long (at least 3 s) after the rename, the task fails with the lines at risk.
    type: float
    default: 0.3
  open_writers:
    description:
      - What to do when another process keeps the file open for writing (found in C(/proc/*/fd) just before the
        rename). Such a writer would go on writing into the replaced file, and those lines would be lost.
      - V(fail) - leave the file untouched and fail, naming the processes.
      - V(report) - leave the file untouched, warn and return RV(open_writers); the census is the file's as it is, so
        C(min_decryption_version) is not raised past what it holds.
      - Processes of other users are only visible to root (RV(processes_not_inspected) counts the others).
    type: str
    choices: [fail, report]
    default: fail
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
      context_field:
        description: JSON lines field holding the key derivation context (derived keys); see O(context_field).
        type: str
      context_encoding:
        description: How O(consumers[].context_field) holds the context (default O(context_encoding)).
        type: str
        choices: [base64, text]
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
    min_decryption_version: "{{ rewrap.oldest_version_in_use }}"
    oldest_version_in_use: "{{ rewrap.oldest_version_in_use }}"
"""

RETURN = r"""
target_version:
  description: Key version the lines were rewrapped to.
  returned: with O(path)
  type: int
  sample: 3
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
caught_up:
  description: Lines appended to the file during the run and read before the rename (included in the census).
  returned: with O(path)
  type: int
  sample: 12
carried_over:
  description: Lines found in the replaced file after the rename (written after the last catch-up) and carried over to the new one (in the census).
  returned: with O(path)
  type: int
  sample: 1
open_writers:
  description: Processes keeping the file open for writing, as C({pid, command}) (the command name, never its arguments).
  returned: when found
  type: list
  elements: dict
  sample: [{"pid": 4242, "command": "app"}]
processes_not_inspected:
  description: Processes whose open files this user may not see (other users' processes when not root).
  returned: when some were not inspected
  type: int
lines_at_risk:
  description:
    - On a failure after the rename, lines written into the replaced file after the settle window.
    - They were carried over, but a writer still at it loses what it writes next.
  returned: on such a failure
  type: int
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
    context_field=dict(type="str"),
    context_encoding=dict(type="str", choices=list(_rewrap.CONTEXT_ENCODINGS)),
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
            context_field=dict(type="str"),
            context_encoding=dict(type="str", default="base64", choices=list(_rewrap.CONTEXT_ENCODINGS)),
            key_version=dict(type="int", no_log=False),
            batch_size=dict(type="int", default=400),
            workers=dict(type="int", default=4),
            backup=dict(type="bool", default=False),
            settle_time=dict(type="float", default=_rewrap.DEFAULT_SETTLE),
            open_writers=dict(type="str", default="fail", choices=list(_rewrap.OPEN_WRITERS_CHOICES)),
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
    if not 0.05 <= params["settle_time"] <= 30:
        module.fail_json(msg="settle_time must be between 0.05 and 30 seconds (got %s)" % params["settle_time"])

    def work(connection):
        rewrapper = _rewrap.FileRewrapper(connection, module.check_mode, module.backup_local,
                                          params["batch_size"], params["workers"], params["settle_time"],
                                          params["open_writers"])
        if params["path"]:
            result = rewrapper.rewrap_file(params["name"], params["mount"], params["path"], params["field"],
                                           params["key_version"], params["backup"],
                                           context_field=params["context_field"],
                                           context_encoding=params["context_encoding"])
            if module._diff:
                result["diff"] = dict(before={"census": result["census_before"]},
                                      after={"census": result["census_after"]})
            for warning in rewrapper.warnings:
                module.warn(warning)
            return result
        # Bulk: every consumer is tried and reports its own outcome.
        results = rewrapper.rewrap_many(params["consumers"], params["mount"], params["backup"],
                                        params["context_encoding"])
        failed = [entry for entry in results if not entry["ok"]]
        if failed and params["fail_on_error"]:
            raise VaultModuleError("%d of %d consumer(s) could not be rewrapped: %s"
                                   % (len(failed), len(results), "; ".join(e["error"] for e in failed)),
                                   consumers=results, changed=any(e["changed"] for e in results))
        for warning in rewrapper.warnings:
            module.warn(warning)
        return dict(changed=any(entry["changed"] for entry in results), consumers=results)

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
