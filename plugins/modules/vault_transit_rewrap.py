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
  - keyops.lifecycle.attributes
  - keyops.lifecycle.attributes.vault_group
attributes:
  check_mode:
    support: full
    details: Check mode reads the file and returns the census only.
  diff_mode:
    support: full
    details: The diff shows the census (key version to count) before and after.
options:
  name:
    description: Transit key the ciphertexts belong to.
    type: str
    required: true
  mount:
    description: Path the transit secrets engine is mounted at.
    type: str
    default: transit
  path:
    description: File holding the ciphertexts, on the host the module runs on.
    type: path
    required: true
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

- name: Then raise min_decryption_version no further than what is still in use
  keyops.lifecycle.vault_transit_key:
    name: kasten
    min_decryption_version: "{{ rewrap.min_version_in_use }}"
    in_use_min_version: "{{ rewrap.min_version_in_use }}"
"""

RETURN = r"""
target_version:
  description: Key version the lines were rewrapped to.
  returned: always
  type: int
  sample: 3
census_before:
  description: Key version (as string) to number of ciphertexts, before.
  returned: always
  type: dict
  sample: {"1": 5000, "2": 120}
census_after:
  description: The same after the rewrap (equal to census_before in check mode and when nothing was due).
  returned: always
  type: dict
  sample: {"3": 5120}
rewrapped:
  description: Ciphertexts rewrapped (in check mode, that would be rewrapped).
  returned: always
  type: int
  sample: 5120
min_version_in_use:
  description: Oldest key version still in the file after the task (null for a file without ciphertexts).
  returned: always
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
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultModuleError,
    run_vault_module,
    vault_argument_spec,
)
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import TransitBackend
from ansible_collections.keyops.lifecycle.plugins.module_utils import _rewrap


def make_sender(connection, mount, name, key_version):
    path = "%s/rewrap/%s" % (mount.strip("/"), name)

    def send(ciphertexts):
        body = {"batch_input": [{"ciphertext": ciphertext} for ciphertext in ciphertexts]}
        if key_version is not None:
            body["key_version"] = key_version
        try:
            answer = connection.write(path, body)
        except VaultModuleError as exc:
            if exc.status == 413 or (exc.status == 400 and "complexity" in exc.msg):
                raise _rewrap.TooLargeError(exc.msg)
            raise
        results = (answer.get("data") or {}).get("batch_results") or []
        if len(results) != len(ciphertexts):
            raise VaultModuleError("Vault answered %d results for a batch of %d on POST %s"
                                   % (len(results), len(ciphertexts), path))
        return results

    return send


def main():
    module = AnsibleModule(
        argument_spec=vault_argument_spec(
            name=dict(type="str", required=True),
            mount=dict(type="str", default="transit"),
            path=dict(type="path", required=True),
            field=dict(type="str"),
            key_version=dict(type="int", no_log=False),
            batch_size=dict(type="int", default=400),
            workers=dict(type="int", default=4),
            backup=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    if not 1 <= params["batch_size"] <= _rewrap.MAX_SAFE_BATCH:
        module.fail_json(msg="batch_size must be between 1 and %d (got %d): OpenBao refuses larger JSON bodies "
                         "by default" % (_rewrap.MAX_SAFE_BATCH, params["batch_size"]))
    if not 1 <= params["workers"] <= 32:
        module.fail_json(msg="workers must be between 1 and 32 (got %d)" % params["workers"])
    if not os.path.isfile(path):
        module.fail_json(msg="consumer file %s does not exist or is not a regular file" % path)
    if not os.access(path, os.R_OK):
        module.fail_json(msg="consumer file %s is not readable by this user" % path)

    def work(connection):
        key = TransitBackend(connection, params["mount"]).get_info(params["name"])
        if key is None:
            raise VaultModuleError("transit key %r does not exist in mount %r" % (params["name"], params["mount"]))
        target = params["key_version"] or key["latest_version"]
        if target > key["latest_version"] or target < 1:
            raise VaultModuleError("key_version %d is not a version of key %r (latest is %d)"
                                   % (target, params["name"], key["latest_version"]))
        result = dict(path=path, target_version=target)
        try:
            with _rewrap.locked(path, exclusive=not module.check_mode):
                if module.check_mode:
                    census = _rewrap.take_census(path, params["field"])
                    due = sum(count for version, count in census.items() if int(version) < target)
                    result.update(census_before=census, census_after=census, rewrapped=due,
                                  min_version_in_use=_rewrap.min_version(census), changed=bool(due))
                else:
                    if not os.access(path, os.W_OK) or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
                        raise _rewrap.RewrapError("consumer file %s (or its directory) is not writable" % path)
                    _rewrap.remove_stale_temps(path)
                    sender = _rewrap.BatchRewrapper(make_sender(connection, params["mount"], params["name"],
                                                                params["key_version"]), params["batch_size"])
                    temp_path, census_before, census_after, rewrapped = _rewrap.rewrite(
                        path, params["field"], target, sender, params["batch_size"], params["workers"])
                    if temp_path is not None:
                        if params["backup"]:
                            result["backup_file"] = module.backup_local(path)
                        _rewrap.replace_file(temp_path, path)
                    result.update(census_before=census_before, census_after=census_after, rewrapped=rewrapped,
                                  min_version_in_use=_rewrap.min_version(census_after), changed=bool(rewrapped))
        except _rewrap.RewrapError as exc:
            raise VaultModuleError(exc.msg, errors=exc.errors)
        except (IOError, OSError) as exc:
            raise VaultModuleError("cannot rewrap %s: %s; nothing was written" % (path, exc))
        if module._diff:
            result["diff"] = dict(before={"census": result["census_before"]}, after={"census": result["census_after"]})
        return result

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
