#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: database_rewrap
short_description: Rewrap Vault/OpenBao transit ciphertexts stored in a PostgreSQL or MariaDB/MySQL column
version_added: 1.1.0
description:
  - Step 2 of a transit key rotation for ciphertexts kept in a database column - every value below the target key
    version is rewrapped through Vault (the plaintext never leaves Vault) while the application keeps reading and
    writing the table.
  - The census of key versions (from the C(vault:vN:) prefix) is computed by the database server (GROUP BY), never
    by moving the table; C(NULL) values are counted apart and never block; values that are not ciphertexts are
    counted as malformed and reported by primary key.
  - Rows are read in batches paged by the primary key and written back with compare-and-swap
    (C(UPDATE ... SET col = new WHERE pk = :pk AND col = :old)) in one short transaction per batch, so a value the
    application wrote meanwhile is never overwritten; such rows are counted in RV(conflicts) and read again in a
    later pass (up to O(max_passes)).
  - Nothing is kept outside the table - a run killed at any point is resumed by running it again.
  - Memory stays flat whatever the table's size. Values are never logged or returned, and a password given in
    O(database_url) or O(database_password) never appears in any output.
  - The user needs C(SELECT) and C(UPDATE) on the table (C(SELECT) only, in check mode and with O(plan_ranges)).
  - See the guide C(docs/database-consumers.md) of the collection.
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  check_mode:
    details: Check mode takes the census only; RV(rewrapped) is the number of rows that would be rewrapped.
  diff_mode:
    support: full
    details: The diff shows the census (key version to count, null and malformed counts) before and after, never values.
requirements:
  - SQLAlchemy >= 2.0
  - psycopg >= 3 (PostgreSQL)
  - PyMySQL (MariaDB/MySQL)
notes:
  - O(url) is the Vault address, as in every module of the C(keyops.lifecycle.vault) group (so one
    C(module_defaults) block serves them all); the database is O(database_url).
options:
  name:
    description: Transit key the ciphertexts belong to.
    type: str
    required: true
  mount:
    description: Path the transit secrets engine is mounted at.
    type: str
    default: transit
  key_version:
    description: Rewrap to this version instead of the latest. Rows already at or above it are left alone.
    type: int
  database_url:
    description:
      - Database URL, for example C(postgresql://app@db1:5432/payments) or C(mariadb://app@db2:3306/payments).
      - The scheme picks the engine and driver - V(postgresql) or V(postgres) (psycopg 3), V(mysql) or V(mariadb)
        (PyMySQL). Query parameters are passed to the driver (for example C(?sslmode=verify-full)).
      - A password in the URL (C(user:password@host)) is accepted but never shown - results carry the URL with the
        password masked. Prefer O(database_password) or the engine's environment variables.
    type: str
    required: true
  database_password:
    description:
      - Database password. Overrides a password in O(database_url).
      - Otherwise PostgreSQL uses libpq's E(PGPASSWORD) / E(PGPASSFILE) (C(~/.pgpass)) and MariaDB/MySQL
        E(MYSQL_PWD). Never logged.
    type: str
  table:
    description: Table holding the ciphertexts, C(table) or C(schema.table) (for MySQL the schema is the database).
    type: str
    required: true
  column:
    description: Column holding one transit ciphertext per row (text type).
    type: str
    required: true
  primary_key:
    description: A single-column primary key (or unique, non-null column) - batches are paged and rows updated by it.
    type: str
    required: true
  context_column:
    description:
      - Column holding each row's key derivation context, for keys created with C(derived=true).
      - Required for a derived key - without it the task fails before anything is written.
    type: str
  context_encoding:
    description:
      - V(base64) - the column holds the base64 context exactly as Vault's API takes it.
      - V(text) - the column holds the context as text (for example the row's tenant id), base64-encoded here.
    type: str
    choices: [base64, text]
    default: base64
  where:
    description:
      - Optional SQL boolean expression restricting the rows, for example C(deleted_at IS NULL).
      - B(Trusted operator SQL), added to every statement as it is - never build it from untrusted input. One
        expression only - C(;) and comment markers are refused.
    type: str
  batch_size:
    description:
      - Rows per batch (one rewrap request and one short transaction). At most 490 - OpenBao's default listener
        refuses larger JSON bodies; a batch the server still refuses as too complex is split and retried.
    type: int
    default: 400
  max_passes:
    description: Passes over the range; another pass runs only while rows changed under the previous one.
    type: int
    default: 3
  primary_key_range:
    description:
      - Work on the rows with C(after < primary_key <= up_to) only; a null or missing bound is an open end.
      - With the ranges of O(plan_ranges), several hosts can share one table - no row twice, none missed.
    type: dict
    suboptions:
      after:
        description: Exclusive lower bound (null - from the first row).
        type: raw
      up_to:
        description: Inclusive upper bound (null - to the last row, including rows inserted meanwhile).
        type: raw
  plan_ranges:
    description:
      - Return RV(primary_key_ranges), this many ranges of about equal row counts covering the whole table (or
        O(primary_key_range)) with open ends, computed in SQL from the existing keys. Nothing is rewrapped.
    type: int
  fail_on_malformed:
    description:
      - Fail the task (after rewrapping everything else) when values are not transit ciphertexts.
      - With V(false) they are only reported in RV(malformed). Rows Vault could not rewrap always fail the task.
    type: bool
    default: true
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Rewrap the card numbers of the payments database to the newest key version
  keyops.lifecycle.database_rewrap:
    name: payments
    database_url: postgresql://app@db1.example.com:5432/payments
    database_password: "{{ payments_db_password }}"
    table: billing.cards
    column: pan_ciphertext
    primary_key: id
    where: deleted_at IS NULL
  register: cards

- name: A derived key - each row's context is its tenant id, stored as text
  keyops.lifecycle.database_rewrap:
    name: tenant-data
    database_url: mariadb://app@db2.example.com:3306/crm
    database_password: "{{ crm_db_password }}"
    table: notes
    column: body
    primary_key: id
    context_column: tenant_id
    context_encoding: text

- name: Census only (what is still in use)
  keyops.lifecycle.database_rewrap:
    name: payments
    database_url: postgresql://app@db1.example.com:5432/payments
    database_password: "{{ payments_db_password }}"
    table: billing.cards
    column: pan_ciphertext
    primary_key: id
  check_mode: true
  register: census

- name: Then raise min_decryption_version no further than what is still in use
  keyops.lifecycle.vault_transit_key:
    name: payments
    min_decryption_version: "{{ census.oldest_version_in_use }}"
    oldest_version_in_use: "{{ census.oldest_version_in_use }}"
  when: census.oldest_version_in_use is not none

- name: Split one big table into three ranges ...
  keyops.lifecycle.database_rewrap:
    name: payments
    database_url: postgresql://app@db1.example.com:5432/payments
    database_password: "{{ payments_db_password }}"
    table: billing.cards
    column: pan_ciphertext
    primary_key: id
    plan_ranges: 3
  register: plan

- name: ... and rewrap each range (one per host of a play, or here in a loop)
  keyops.lifecycle.database_rewrap:
    name: payments
    database_url: postgresql://app@db1.example.com:5432/payments
    database_password: "{{ payments_db_password }}"
    table: billing.cards
    column: pan_ciphertext
    primary_key: id
    primary_key_range: "{{ item }}"
  loop: "{{ plan.primary_key_ranges }}"
"""

RETURN = r"""
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
database_url:
  description: The database URL with any password masked.
  returned: always
  type: str
  sample: postgresql://app@db1.example.com:5432/payments
target_version:
  description: Key version the rows were rewrapped to.
  returned: unless O(plan_ranges)
  type: int
  sample: 3
conflicts:
  description: Rows the application changed between our read and our compare-and-swap write (its value was kept).
  returned: unless O(plan_ranges)
  type: int
  sample: 0
passes:
  description: Passes made over the range (0 in check mode).
  returned: unless O(plan_ranges)
  type: int
  sample: 1
"null":
  description: Rows whose column is NULL (counted apart, never blocking).
  returned: unless O(plan_ranges)
  type: int
  sample: 12
malformed:
  description: Values that are not transit ciphertexts - C(count), and C(rows) - the first 20 as C({primary_key, error}).
  returned: unless O(plan_ranges)
  type: dict
  sample: {"count": 1, "rows": [{"primary_key": 42, "error": "not a Vault transit ciphertext (expected vault:v<N>:<base64>)"}]}
errors:
  description: Rows Vault could not rewrap (wrong key, bad context) - the first 20 as C({primary_key, error}).
  returned: unless O(plan_ranges)
  type: list
  elements: dict
  sample: [{"primary_key": 7, "error": "cipher: message authentication failed"}]
error_count:
  description: Number of rows Vault could not rewrap (RV(errors) lists the first 20).
  returned: unless O(plan_ranges)
  type: int
  sample: 0
primary_key_ranges:
  description:
    - With O(plan_ranges) - the ranges as C({after, up_to}) (exclusive, inclusive; null is an open end), ascending,
      covering the table with no gap and no overlap. Fewer rows than ranges give empty ranges (C(after == up_to)).
  returned: with O(plan_ranges)
  type: list
  elements: dict
  sample: [{"after": null, "up_to": 333}, {"after": 333, "up_to": 666}, {"after": 666, "up_to": null}]
diff:
  description: With C(--diff) - C(before) and C(after), each C({census, null, malformed}); counts only.
  returned: with --diff
  type: dict
"""

import os

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._module import checked_suboptions
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import run_vault_module, vault_argument_spec
from ansible_collections.keyops.lifecycle.plugins.module_utils import _database


def _url_holds_password():
    """Peek at the raw arguments: a URL with a password must be no_log before any failure can echo it."""
    try:
        return bool(_database.url_secrets(basic._load_params().get("database_url")))
    except Exception:  # pylint: disable=broad-except  # AnsibleModule reports unreadable arguments itself
        return False


def main():
    spec = vault_argument_spec(
        name=dict(type="str", required=True),
        mount=dict(type="str", default="transit"),
        key_version=dict(type="int", no_log=False),
        database_url=dict(type="str", required=True, no_log=_url_holds_password()),
        database_password=dict(type="str", no_log=True),
        table=dict(type="str", required=True),
        column=dict(type="str", required=True),
        primary_key=dict(type="str", required=True, no_log=False),
        context_column=dict(type="str"),
        context_encoding=dict(type="str", default="base64", choices=["base64", "text"]),
        where=dict(type="str"),
        batch_size=dict(type="int", default=400),
        max_passes=dict(type="int", default=3, no_log=False),
        primary_key_range=dict(type="dict", no_log=False,
                               options=dict(after=dict(type="raw"), up_to=dict(type="raw"))),
        plan_ranges=dict(type="int"),
        fail_on_malformed=dict(type="bool", default=True),
    )
    module = AnsibleModule(**checked_suboptions(dict(argument_spec=spec, supports_check_mode=True)))
    # At once: from here on a password in the URL is masked in everything the module returns.
    module.no_log_values.update(_database.url_secrets(module.params["database_url"]))

    def work(vault):
        return _database.run(vault, module.params, module.check_mode, os.environ, module.no_log_values)

    run_vault_module(module, work)


if __name__ == "__main__":
    main()
