"""`python -m lab seed-transit DIR`: transit keys and consumer files full of real ciphertexts.

Used by `make demo` and the molecule scenario.  Writes DIR/rotation.yml, a vars file for
playbooks/rotate_keys.yml naming the keys and their consumer files.
"""

import os

import hvac.exceptions
import yaml

from lab import transit_data

# key name -> (ciphertexts per key version while seeding, consumer field or None)
DEMO_KEYS = {
    "kasten": ([2000, 500], None),
    "payroll": ([3000], "ssn"),
    "backups": ([800, 200, 100], None),
}


DEMO_ROTATE_OLDER_THAN = "{{ demo_rotate_older_than | default('30d') }}"


def expected_plaintexts(name, per_version):
    """The plaintexts seed_transit encrypted for key ``name``, in file order."""
    values = []
    for index, count in enumerate(per_version):
        values += transit_data.plaintexts(count, "%s-v%d" % (name, index + 1))
    return values


# The demo's database consumer: a table of the key "payroll" (its rows written while the key was at v1).
DEMO_TABLE_ROWS = 5000


def seed_table(vault, url, password, mount, key, rows=DEMO_TABLE_ROWS, table="accounts"):
    """A table ``accounts(id, ssn_ct, deleted_at)`` of ciphertexts of ``key`` at its current version.

    Returns the consumer entry (the password is not in it: the demo passes it as PGPASSWORD).
    """
    import sqlalchemy  # the lab's venv has it (the collection's requirements)
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    engine = sqlalchemy.create_engine(parsed.set(drivername="postgresql+psycopg", password=password))
    values = transit_data.plaintexts(rows, "%s-row" % key)  # registered for the secret scan
    ciphertexts = transit_data.encrypt_many(vault, mount, key, values)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP TABLE IF EXISTS %s" % table))
        connection.execute(sqlalchemy.text("CREATE TABLE %s (id BIGINT PRIMARY KEY, ssn_ct TEXT, deleted_at "
                                           "TIMESTAMP)" % table))
        connection.execute(sqlalchemy.text("INSERT INTO %s (id, ssn_ct) VALUES (:id, :ct)" % table),
                           [{"id": index, "ct": ct} for index, ct in enumerate(ciphertexts)])
    engine.dispose()
    return {"type": "database", "url": url, "table": table, "column": "ssn_ct", "primary_key": "id",
            "where": "deleted_at IS NULL"}


def seed_transit(directory, address, token, mount="transit", keys=None, rotate_older_than=DEMO_ROTATE_OLDER_THAN,
                 trim=("backups",), k10_consumer=None, database=None, backupable=("backups",)):
    """Create the keys, their consumer files and a vars file; ``rotate_older_than=None`` = always rotate.

    ``backupable``: keys created exportable with allow_plaintext_backup, so the role backs them up before a trim.

    ``database``: ``{"url": ..., "password": ...}`` adds a table of the key payroll as a database consumer.
    """
    keys = keys or DEMO_KEYS
    os.makedirs(directory, mode=0o700, exist_ok=True)
    vault = transit_data.client(address, token)
    try:
        vault.sys.enable_secrets_engine("transit", path=mount)
    except hvac.exceptions.InvalidRequest:
        pass  # already mounted
    rotation_keys = []
    for name, (per_version, field) in keys.items():
        settings = {"exportable": True, "allow_plaintext_backup": True} if name in backupable else {}
        vault.adapter.request("POST", "/v1/%s/keys/%s" % (mount, name), json=settings)
        ciphertexts = []
        for index, count in enumerate(per_version):
            if index:
                vault.adapter.request("POST", "/v1/%s/keys/%s/rotate" % (mount, name), json={})
            ciphertexts += transit_data.encrypt_many(
                vault, mount, name, expected_plaintexts(name, per_version)[sum(per_version[:index]):][:count])
        path = os.path.join(directory, "%s.%s" % (name, "jsonl" if field else "txt"))
        transit_data.write_lines(path, ciphertexts, field=field, extra={"owner": "demo"} if field else None)
        os.chmod(path, 0o600)
        consumer = {"type": "file", "path": path}
        if field:
            consumer["field"] = field
        entry = {"name": name, "mount": mount, "consumers": [consumer], "trim": name in trim}
        if k10_consumer and name == "kasten":
            # K10's primary key, encrypted by a Vault passkey of this key (k10_vault_setup made it).
            entry["consumers"].append(dict(k10_consumer, type="k10_passkey", passkey_prefix="vault-kasten"))
        if database and name == "payroll":
            entry["consumers"].append(seed_table(vault, database["url"], database["password"], mount, name))
        if rotate_older_than is not None:
            entry["rotate_older_than"] = rotate_older_than
        rotation_keys.append(entry)
    vars_path = os.path.join(directory, "rotation.yml")
    with open(vars_path, "w") as handle:
        handle.write("---\n" + yaml.safe_dump({"transit_rotation_keys": rotation_keys}, sort_keys=False))
    return vars_path
