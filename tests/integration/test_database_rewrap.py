"""database_rewrap against real OpenBao and real PostgreSQL / MariaDB through ansible-playbook (no mocks)."""

import base64
import os
import random
import secrets
import signal
import subprocess
import threading
import time
import uuid

import pytest
import sqlalchemy
import yaml

from lab import _process, transit_data

from _ansible import ANSIBLE_PYTHON, BIN, HERE, play

ENGINES = ["postgres", "mariadb"]


@pytest.fixture(params=ENGINES)
def db(request):
    return request.getfixturevalue(request.param)


# -- helpers -------------------------------------------------------------------------------------------

def make_key(vault, mount, name="k", rotations=0, derived=False):
    client = transit_data.client(vault.address, vault.token)
    client.adapter.request("POST", "/v1/%s/keys/%s" % (mount, name), json={"derived": derived})
    for _rotation in range(rotations):
        rotate(client, mount, name)
    return client


def rotate(client, mount, name):
    client.adapter.request("POST", "/v1/%s/keys/%s/rotate" % (mount, name), json={})


def encrypt(client, mount, name, values, key_version=None, contexts=None):
    """Batch encrypt ``values`` (str) at ``key_version`` (default latest), with optional base64 contexts."""
    out = []
    for start in range(0, len(values), 240):
        batch = []
        for offset, value in enumerate(values[start:start + 240]):
            item = {"plaintext": base64.b64encode(value.encode()).decode()}
            if contexts is not None:
                item["context"] = contexts[start + offset]
            batch.append(item)
        body = {"batch_input": batch}
        if key_version is not None:
            body["key_version"] = key_version
        response = client.adapter.request("POST", "/v1/%s/encrypt/%s" % (mount, name), json=body)
        out.extend(item["ciphertext"] for item in response.json()["data"]["batch_results"])
    return out


def decrypt(client, mount, name, ciphertexts, contexts=None):
    out = []
    for start in range(0, len(ciphertexts), 240):
        batch = []
        for offset, value in enumerate(ciphertexts[start:start + 240]):
            item = {"ciphertext": value}
            if contexts is not None:
                item["context"] = contexts[start + offset]
            batch.append(item)
        response = client.adapter.request("POST", "/v1/%s/decrypt/%s" % (mount, name), json={"batch_input": batch},
                                          raise_exception=False)
        for item in (response.json().get("data") or {}).get("batch_results") or [{}] * len(batch):
            out.append(base64.b64decode(item["plaintext"]).decode() if "plaintext" in item else None)
    return out


def new_table(db, trigger=False):
    """A fresh table (id, secret, ctx, rewrites); ``trigger`` counts every UPDATE of ``secret`` per row."""
    name = "t_" + uuid.uuid4().hex[:10]
    db.execute("CREATE TABLE %s (id INTEGER PRIMARY KEY, secret VARCHAR(400) NULL, ctx VARCHAR(200) NULL, "
               "rewrites INTEGER NOT NULL DEFAULT 0)" % name)
    if trigger and db.kind == "postgresql":
        db.execute("CREATE FUNCTION %s_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "NEW.rewrites := OLD.rewrites + 1; RETURN NEW; END $$" % name,
                   "CREATE TRIGGER %s_count BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s_count()"
                   % (name, name, name))
    elif trigger:
        db.execute("CREATE TRIGGER %s_count BEFORE UPDATE ON %s FOR EACH ROW SET NEW.rewrites = OLD.rewrites + 1"
                   % (name, name))
    return name


def table_of(db, name):
    return sqlalchemy.Table(name, sqlalchemy.MetaData(), autoload_with=db.engine)


def insert(db, name, rows):
    """rows: [(id, secret, ctx)]"""
    table = table_of(db, name)
    with db.engine.begin() as connection:
        for start in range(0, len(rows), 1000):
            connection.execute(table.insert(), [{"id": i, "secret": s, "ctx": c} for i, s, c in rows[start:start + 1000]])


def rows_of(db, name):
    with db.engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT id, secret, ctx, rewrites FROM %s ORDER BY id" % name)).fetchall()


def versions(db, name):
    return sorted({int(row[1].split(":")[1][1:]) for row in rows_of(db, name) if row[1] and row[1].startswith("vault:")})


def task(db, mount, table, name="k", **options):
    args = dict(name=name, mount=mount, database_url=db.url, database_password=db.password, table=table, column="secret",
                primary_key="id")
    args.update(options)
    return {"name": "rewrap", "keyops.lifecycle.database_rewrap": args}


def seeded(db, vault, mount, counts, name="k"):
    """A table whose rows were encrypted counts[i] at version i+1 (rotating between); returns (client, table, values)."""
    client = make_key(vault, mount, name)
    values, ciphertexts = [], []
    for index, count in enumerate(counts):
        if index:
            rotate(client, mount, name)
        batch = transit_data.plaintexts(count, "db%d-%s" % (index, uuid.uuid4().hex[:6]))
        values += batch
        ciphertexts += encrypt(client, mount, name, batch)
    table = new_table(db)
    insert(db, table, [(i + 1, c, None) for i, c in enumerate(ciphertexts)])
    return client, table, values


def spawn_playbook(tmp_path, tasks, env, args=()):
    """ansible-playbook in its own process group (so a test can SIGKILL it and its module), output to a file."""
    path = tmp_path / ("spawned-%s.yml" % uuid.uuid4().hex[:6])
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(yaml.safe_dump(play(tasks), sort_keys=False))
    run_env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=ANSIBLE_PYTHON, ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"),
                   PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    run_env.update(env)
    # Marks every process of this run (the module may run in a session of its own): see kill_run.
    run_env["KEYOPS_TEST_RUN"] = uuid.uuid4().hex
    out = open(str(path) + ".out", "w")  # pylint: disable=consider-using-with
    proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", str(path)] + list(args),
                            env=run_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proc.output_path = str(path) + ".out"
    proc.marker = run_env["KEYOPS_TEST_RUN"]
    out.close()
    return proc


def kill_run(proc):
    """SIGKILL the playbook's process group and every process that carries its marker (the module)."""
    os.killpg(proc.pid, signal.SIGKILL)
    needle = ("KEYOPS_TEST_RUN=%s" % proc.marker).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


# -- tests ---------------------------------------------------------------------------------------------

def test_census_rewrap_idempotent_and_decryptable(db, ansible, vault, transit_mount):
    client, table, values = seeded(db, vault, transit_mount, [700, 300, 5])
    before = rows_of(db, table)

    check = ansible([task(db, transit_mount, table)], check=True, diff=True, expect_rc=0).task("rewrap")
    assert check["changed"] is True and check["census_before"] == {"1": 700, "2": 300, "3": 5}
    assert check["rewrapped"] == 1000 and check["oldest_version_in_use"] == 1 and check["target_version"] == 3
    assert check["census_after"] == check["census_before"] and check["passes"] == 0
    assert rows_of(db, table) == before  # check mode wrote nothing

    run = ansible([task(db, transit_mount, table, batch_size=97)], diff=True, expect_rc=0)
    result = run.task("rewrap")
    assert result["changed"] is True and result["rewrapped"] == 1000 and result["conflicts"] == 0
    assert result["census_after"] == {"3": 1005} and result["oldest_version_in_use"] == 3
    assert result["null"] == 0 and result["malformed"] == {"count": 0, "rows": []} and result["errors"] == []
    assert result["diff"] == {"before": {"census": {"1": 700, "2": 300, "3": 5}, "null": 0, "malformed": 0},
                              "after": {"census": {"3": 1005}, "null": 0, "malformed": 0}}
    assert result["database_url"] == db.url
    assert versions(db, table) == [3]
    assert decrypt(client, transit_mount, "k", [row[1] for row in rows_of(db, table)]) == values
    assert not any(row[1] in run.output for row in rows_of(db, table)[:50])  # values never shown
    assert not any(row[1] in run.output for row in before[:50])

    again = ansible([task(db, transit_mount, table)], expect_rc=0).task("rewrap")
    assert again["changed"] is False and again["rewrapped"] == 0 and again["census_before"] == {"3": 1005}


def test_where_and_key_version(db, ansible, vault, transit_mount):
    client, table, values = seeded(db, vault, transit_mount, [100, 1, 1])
    # Only even ids, and only up to version 2.
    result = ansible([task(db, transit_mount, table, where="MOD(id, 2) = 0", key_version=2)],
                     expect_rc=0).task("rewrap")
    assert result["census_before"] == {"1": 50, "3": 1} and result["rewrapped"] == 50
    assert result["census_after"] == {"2": 50, "3": 1} and result["target_version"] == 2
    rows = rows_of(db, table)
    assert all(row[1].startswith("vault:v2:") for row in rows if row[0] % 2 == 0 and row[0] <= 100)
    assert all(row[1].startswith("vault:v1:") for row in rows if row[0] % 2 == 1 and row[0] <= 100)
    assert decrypt(client, transit_mount, "k", [row[1] for row in rows]) == values


def test_derived_keys_with_context_column(db, ansible, vault, transit_mount):
    client = make_key(vault, transit_mount, "d", derived=True)
    count = 300
    texts = ["tenant-%d" % (i % 7) for i in range(count)]
    b64 = [base64.b64encode(t.encode()).decode() for t in texts]
    values = transit_data.plaintexts(count, "derived-%s" % uuid.uuid4().hex[:6])
    ciphertexts = encrypt(client, transit_mount, "d", values, contexts=b64)
    rotate(client, transit_mount, "d")
    b64_table, text_table = new_table(db), new_table(db)
    insert(db, b64_table, [(i + 1, c, b64[i]) for i, c in enumerate(ciphertexts)])
    insert(db, text_table, [(i + 1, c, texts[i]) for i, c in enumerate(ciphertexts)])
    before = rows_of(db, b64_table)

    # Without context_column: refused before anything is written, naming the option.
    run = ansible([task(db, transit_mount, b64_table, name="d")])
    assert run.rc != 0 and "context_column" in run.task("rewrap")["msg"] and "derived" in run.task("rewrap")["msg"]
    assert rows_of(db, b64_table) == before
    run = ansible([task(db, transit_mount, b64_table, name="d")], check=True)
    assert run.rc != 0 and "context_column" in run.task("rewrap")["msg"]

    for table, encoding in ((b64_table, "base64"), (text_table, "text")):
        result = ansible([task(db, transit_mount, table, name="d", context_column="ctx", context_encoding=encoding,
                               batch_size=64)], expect_rc=0).task("rewrap")
        assert result["rewrapped"] == count and result["census_after"] == {"2": count}, result
        rows = rows_of(db, table)
        assert decrypt(client, transit_mount, "d", [row[1] for row in rows], contexts=b64) == values

    # The wrong encoding: every row fails with its own error, nothing written, the census still reported.
    rotate(client, transit_mount, "d")
    before = rows_of(db, text_table)
    run = ansible([task(db, transit_mount, text_table, name="d", context_column="ctx", context_encoding="base64")])
    result = run.task("rewrap")
    assert run.rc != 0 and result["error_count"] == count and len(result["errors"]) == 20
    assert result["errors"][0]["primary_key"] == 1 and "base64" in result["errors"][0]["error"]
    assert result["census_after"] == {"2": count} and rows_of(db, text_table) == before


def test_malformed_null_and_wrong_key_reported_by_primary_key(db, ansible, vault, transit_mount):
    client, table, values = seeded(db, vault, transit_mount, [200, 10])
    make_key(vault, transit_mount, "other")
    foreign = encrypt(client, transit_mount, "other", ["foreign-value"])[0]
    # A plaintext left in the column by mistake: random, so the secret scan finds it only where it leaked.
    plaintext = "a-plaintext-secret-%s" % uuid.uuid4().hex
    _process.register_secret("plaintext", plaintext)
    db.execute("UPDATE %s SET secret = '%s' WHERE id = 5" % (table, plaintext),
               "UPDATE %s SET secret = NULL WHERE id IN (6, 7)" % table,
               "UPDATE %s SET secret = '%s' WHERE id = 8" % (table, foreign),
               "UPDATE %s SET secret = 'VAULT:V1:abc' WHERE id = 9" % table)

    check = ansible([task(db, transit_mount, table)], check=True)
    result = check.task("rewrap")
    assert check.rc != 0 and result["null"] == 2 and result["malformed"]["count"] == 2
    assert result["census_before"] == {"1": 196, "2": 10}

    run = ansible([task(db, transit_mount, table)])
    result = run.task("rewrap")
    assert run.rc != 0 and "Traceback" not in run.output
    assert "2 value(s)" in result["msg"] and "first at primary key 5" in result["msg"]
    assert result["malformed"] == {"count": 2, "rows": [
        {"primary_key": 5, "error": "not a Vault transit ciphertext (expected vault:v<N>:<base64>)"},
        {"primary_key": 9, "error": "not a Vault transit ciphertext (expected vault:v<N>:<base64>)"}]}
    assert result["null"] == 2 and result["error_count"] == 1
    assert result["errors"][0]["primary_key"] == 8 and "authentication failed" in result["errors"][0]["error"]
    # Everything else was rewrapped; the foreign row stays where it was.
    assert result["rewrapped"] == 195 and result["census_after"] == {"1": 1, "2": 205}
    assert result["oldest_version_in_use"] == 1
    assert plaintext not in run.output

    # fail_on_malformed=false: the malformed rows are only reported (the foreign row still fails).
    db.execute("UPDATE %s SET secret = NULL WHERE id = 8" % table)
    result = ansible([task(db, transit_mount, table, fail_on_malformed=False)], expect_rc=0).task("rewrap")
    assert result["changed"] is False and result["malformed"]["count"] == 2 and result["null"] == 3
    assert result["oldest_version_in_use"] == 2
    rows = dict((row[0], row[1]) for row in rows_of(db, table))
    good = [i for i in sorted(rows) if i not in (5, 6, 7, 8, 9)]
    assert decrypt(client, transit_mount, "k", [rows[i] for i in good]) == [values[i - 1] for i in good]


def test_application_writes_during_the_rewrap_are_never_overwritten(db, vault, transit_mount, tmp_path):
    client, table, values = seeded(db, vault, transit_mount, [3000])
    rotate(client, transit_mount, "k")
    # What the application writes: fresh values encrypted with the latest version and with the old one.
    pool_values = transit_data.plaintexts(600, "app-%s" % uuid.uuid4().hex[:6])
    pool = list(zip(pool_values, encrypt(client, transit_mount, "k", pool_values[:300]) +
                    encrypt(client, transit_mount, "k", pool_values[300:], key_version=1)))
    expected = dict((i + 1, v) for i, v in enumerate(values))
    written = {"updates": 0, "inserts": 0}
    stop = threading.Event()
    sqltable = table_of(db, table)

    def application():
        rng = random.Random(7)
        next_id = 100000
        with db.engine.connect() as connection:
            while not stop.is_set():
                value, ciphertext = pool[rng.randrange(len(pool))]
                if rng.random() < 0.8:
                    row = rng.randint(1, 3000)
                    with connection.begin():
                        connection.execute(sqltable.update().where(sqltable.c.id == row).values(secret=ciphertext))
                    expected[row] = value
                    written["updates"] += 1
                else:
                    next_id += 1
                    with connection.begin():
                        connection.execute(sqltable.insert().values(id=next_id, secret=ciphertext))
                    expected[next_id] = value
                    written["inserts"] += 1
                time.sleep(0.002)

    proc = spawn_playbook(tmp_path, [task(db, transit_mount, table, batch_size=25)],
                          {"VAULT_ADDR": vault.address, "VAULT_TOKEN": vault.token})
    writer = threading.Thread(target=application)
    writer.start()
    try:
        assert proc.wait(timeout=300) == 0, open(proc.output_path).read()[-3000:]
    finally:
        stop.set()
        writer.join()
    assert written["updates"] > 100 and written["inserts"] > 20, written
    rows = rows_of(db, table)
    got = dict((row[0], v) for row, v in zip(rows, decrypt(client, transit_mount, "k", [row[1] for row in rows])))
    overwritten = [k for k in expected if got.get(k) != expected[k]]
    lost = [k for k in expected if k not in got]
    assert (overwritten, lost) == ([], [])
    assert len(got) == len(expected)


def test_sigkill_mid_batch_then_rerun_completes(db, vault, transit_mount, tmp_path, ansible):
    client, table, values = seeded(db, vault, transit_mount, [4000])
    rotate(client, transit_mount, "k")
    proc = spawn_playbook(tmp_path, [task(db, transit_mount, table, batch_size=20)],
                          {"VAULT_ADDR": vault.address, "VAULT_TOKEN": vault.token})
    count = sqlalchemy.text("SELECT COUNT(*) FROM %s WHERE secret LIKE 'vault:v2:%%'" % table)
    deadline = time.monotonic() + 120
    done = 0
    with db.engine.connect() as connection:
        while time.monotonic() < deadline and proc.poll() is None:
            done = connection.execute(count).scalar()
            connection.commit()
            if done >= 400:
                kill_run(proc)
                break
            time.sleep(0.01)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and 400 <= done < 4000, (proc.returncode, done)
    time.sleep(0.5)  # the server notices the dropped connection and rolls the open batch back
    rows = rows_of(db, table)
    partial = [row[1] for row in rows]
    assert 400 <= sum(1 for c in partial if c.startswith("vault:v2:")) < 4000
    assert decrypt(client, transit_mount, "k", partial) == values  # nothing lost or half-written

    result = ansible([task(db, transit_mount, table)], expect_rc=0).task("rewrap")
    assert result["census_after"] == {"2": 4000}, result
    assert result["rewrapped"] == 4000 - result["census_before"]["2"] and result["conflicts"] == 0, sorted(result.items())
    assert decrypt(client, transit_mount, "k", [row[1] for row in rows_of(db, table)]) == values


def test_plan_ranges_split_one_table_over_concurrent_runs(db, vault, transit_mount, tmp_path, ansible):
    client = make_key(vault, transit_mount)
    values = transit_data.plaintexts(3000, "ranges-%s" % uuid.uuid4().hex[:6])
    ciphertexts = encrypt(client, transit_mount, "k", values)
    rotate(client, transit_mount, "k")
    table = new_table(db, trigger=True)
    ids = sorted(random.Random(3).sample(range(1, 100000), 3000))  # gaps in the keys
    insert(db, table, [(i, c, None) for i, c in zip(ids, ciphertexts)])

    plan = ansible([task(db, transit_mount, table, plan_ranges=3)], expect_rc=0).task("rewrap")
    ranges = plan["primary_key_ranges"]
    assert plan["changed"] is False and len(ranges) == 3
    assert ranges[0]["after"] is None and ranges[-1]["up_to"] is None
    assert ranges[0]["up_to"] == ranges[1]["after"] and ranges[1]["up_to"] == ranges[2]["after"]
    assert ranges[0]["up_to"] == ids[999] and ranges[1]["up_to"] == ids[1999]
    assert sum(row[3] for row in rows_of(db, table)) == 0

    env = {"VAULT_ADDR": vault.address, "VAULT_TOKEN": vault.token}
    procs = [spawn_playbook(tmp_path, [task(db, transit_mount, table, batch_size=50, primary_key_range=r)], env)
             for r in ranges]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, open(proc.output_path).read()[-3000:]
    rows = rows_of(db, table)
    assert [row[3] for row in rows] == [1] * 3000  # every row written exactly once
    assert versions(db, table) == [2]
    assert decrypt(client, transit_mount, "k", [row[1] for row in rows]) == values

    # A small table: empty ranges are still listed, and still cover everything.
    small = new_table(db)
    insert(db, small, [(10, ciphertexts[0], None), (20, ciphertexts[1], None)])
    ranges = ansible([task(db, transit_mount, small, plan_ranges=4)], expect_rc=0).task("rewrap")["primary_key_ranges"]
    assert ranges == [{"after": None, "up_to": 10}, {"after": 10, "up_to": 10}, {"after": 10, "up_to": 10},
                      {"after": 10, "up_to": None}]
    result = ansible([task(db, transit_mount, small, primary_key_range={"after": "10", "up_to": None})],
                     expect_rc=0).task("rewrap")
    assert result["rewrapped"] == 1 and result["census_after"] == {"2": 1}


def _no_update_user(db, table):
    user, password = "ro_" + uuid.uuid4().hex[:6], "ro" + secrets.token_hex(12)
    _process.register_secret("database-password", password)
    if db.server is None:
        pytest.skip("needs the lab server's superuser to create a second user")
    if db.kind == "postgresql":
        db.admin("CREATE ROLE %s LOGIN PASSWORD '%s'" % (user, password))
        db.admin("GRANT SELECT ON %s TO %s" % (table, user))
    else:
        db.admin("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'" % (user, password))
        db.admin("GRANT SELECT ON app.%s TO '%s'@'%%'" % (table, user))
    return user, password


def test_clear_failures(db, ansible, vault, transit_mount):
    client, table, _values = seeded(db, vault, transit_mount, [30, 3])
    before = rows_of(db, table)
    base = dict(name="k", mount=transit_mount, database_url=db.url, database_password=db.password, table=table, column="secret",
                primary_key="id")
    wrong = "wrong" + secrets.token_hex(8)
    _process.register_secret("database-password", wrong)
    user, user_password = _no_update_user(db, table)
    cases = [
        ({"database_url": "postgresql//nohost"}, "`database_url` must look like"),
        ({"database_url": "oracle://app@127.0.0.1/app"}, "unknown scheme 'oracle'"),
        ({"database_url": db.url.rsplit("/", 1)[0] + "/"}, "names no database"),
        ({"database_url": "%s://app@127.0.0.1:%d/app" % (db.url.split(":")[0], _process.free_port()), "retries": 0},
         "cannot reach the database"),
        ({"database_password": wrong}, "rejected the credentials of user 'app'"),
        ({"database_url": db.url.rsplit("/", 1)[0] + "/nodb_here"}, "nodb_here"),
        ({"table": "no_such_table"}, "table 'no_such_table' does not exist"),
        ({"column": "nope"}, "has no column 'nope' (option `column`)"),
        ({"context_column": "nope2"}, "has no column 'nope2' (option `context_column`)"),
        ({"primary_key": "rewrites"}, "is not the primary key or a unique column"),
        ({"column": "secret; DROP TABLE x"}, "`column` must be a plain SQL identifier"),
        ({"table": "a.b.c"}, "`table` must be a table name or schema.table"),
        ({"where": "id > 0; DROP TABLE %s" % table}, "`where` may not contain ';'"),
        ({"where": "id > 0 -- comment"}, "`where` may not contain '--'"),
        ({"where": "id >>>> 0"}, "check `where`"),
        ({"batch_size": 5000}, "batch_size must be between 1 and 490"),
        ({"name": "nokey"}, "transit key 'nokey' does not exist"),
        ({"key_version": 9}, "key_version 9 is not a version"),
        ({"database_url": db.url_for(user), "database_password": user_password}, "needs SELECT and UPDATE on table"),
    ]
    # One playbook for all of them (an ansible-playbook start is the costly part): a task per case, each failing on its
    # own (its own worker, its own connection) and recorded on its own; no case needs a run of its own.  The task
    # names carry the option names only, never their values.
    names = ["case %d (%s)" % (index, ", ".join(sorted(options))) for index, (options, _text) in enumerate(cases)]
    tasks = []
    for name, (options, _text) in zip(names, cases):
        args = dict(base)
        args.update(options)
        tasks.append({"name": name, "keyops.lifecycle.database_rewrap": args, "ignore_errors": True})
    # The read-only user may still take the census (check mode).
    census = task(db, transit_mount, table, database_url=db.url_for(user), database_password=user_password)
    census.update(name="census", check_mode=True)
    run = ansible(tasks + [census], expect_rc=0)
    for name, (options, text) in zip(names, cases):
        result = run.task(name)
        assert run.status(name) == "failed" and text in result["msg"], (options, result.get("msg"))
    assert "Traceback" not in run.output and db.password not in run.output and wrong not in run.output
    assert user_password not in run.output
    assert rows_of(db, table) == before
    assert run.status("census") == "ok" and run.task("census")["census_before"] == {"1": 30, "2": 3}


def test_password_never_in_output_at_vvv(db, ansible, vault, transit_mount, monkeypatch):
    _client, table, _values = seeded(db, vault, transit_mount, [20, 1])
    with_password = db.url.replace("://app@", "://app:%s@" % db.password)
    masked = db.url.replace("://app@", "://app:********@")
    run = ansible([task(db, transit_mount, table, database_url=with_password, database_password=None)], verbosity=3, diff=True,
                  expect_rc=0)
    assert run.task("rewrap")["database_url"] == masked and run.task("rewrap")["rewrapped"] == 20
    assert db.password not in run.output
    # A failure echoes no password either, nor does an argument error.
    for options in ({"table": "missing_table"}, {"batch_size": "many"}):
        failing = task(db, transit_mount, table, database_url=with_password, database_password=None)
        failing["keyops.lifecycle.database_rewrap"].update(options)
        run = ansible([failing], verbosity=3)
        assert run.rc != 0 and db.password not in run.output
    run = ansible([task(db, transit_mount, table)], verbosity=3, expect_rc=0)
    assert db.password not in run.output
    # The engines' own variables.
    variable = "PGPASSWORD" if db.kind == "postgresql" else "MYSQL_PWD"
    run = ansible([task(db, transit_mount, table, database_password=None)], env={variable: db.password}, verbosity=3,
                  expect_rc=0)
    assert db.password not in run.output and run.task("rewrap")["census_before"] == {"2": 21}
