"""rotate_keys.yml with file and database consumers against real OpenBao, PostgreSQL and MariaDB.

What the rotation must hold with data where it really lives: every row and every line at the latest
version after a run, ``min_decryption_version`` never above the oldest version left in any table (also
after a SIGKILL anywhere), an application writing rows and appending lines throughout losing nothing and
never overwritten, and a table split between several hosts handled once per row.
"""

import base64
import json
import os
import random
import threading
import time
import uuid

import pytest
import sqlalchemy
import yaml

from lab import _process, transit_data

from _ansible import ROOT, ansible_playbook

ROTATE_KEYS = os.path.join(ROOT, "playbooks", "rotate_keys.yml")
ENGINES = ["postgres", "mariadb"]


@pytest.fixture(params=ENGINES)
def database(request):
    return request.getfixturevalue(request.param)


class Table:
    """A table of ciphertexts (``id``, ``ct``, ``ctx``, ``writes``); ``writes`` counts every UPDATE (trigger)."""

    def __init__(self, database, name=None):
        self.database = database
        self.name = name or "t_" + uuid.uuid4().hex[:10]
        ident = self.name
        if database.kind == "postgresql":
            database.execute(
                "CREATE TABLE %s (id BIGINT PRIMARY KEY, ct TEXT, ctx TEXT, app TEXT, writes INT NOT NULL DEFAULT 0)"
                % ident,
                "CREATE FUNCTION %s_count() RETURNS trigger AS $$ BEGIN NEW.writes := OLD.writes + 1; RETURN NEW; "
                "END $$ LANGUAGE plpgsql" % ident,
                "CREATE TRIGGER %s_writes BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s_count()"
                % (ident, ident, ident))
        else:
            database.execute(
                "CREATE TABLE %s (id BIGINT PRIMARY KEY, ct TEXT, ctx TEXT, app TEXT, writes INT NOT NULL DEFAULT 0)"
                % ident,
                "CREATE TRIGGER %s_writes BEFORE UPDATE ON %s FOR EACH ROW SET NEW.writes = OLD.writes + 1"
                % (ident, ident))
        self.table = sqlalchemy.table(self.name, sqlalchemy.column("id"), sqlalchemy.column("ct"),
                                      sqlalchemy.column("ctx"), sqlalchemy.column("app"),
                                      sqlalchemy.column("writes"))

    def insert(self, rows):
        """rows: [(id, ciphertext, context or None)]"""
        with self.database.engine.begin() as connection:
            for start in range(0, len(rows), 1000):
                connection.execute(sqlalchemy.insert(self.table), [
                    {"id": i, "ct": ct, "ctx": ctx} for i, ct, ctx in rows[start:start + 1000]])

    def rows(self):
        with self.database.engine.connect() as connection:
            return connection.execute(sqlalchemy.select(self.table.c.id, self.table.c.ct, self.table.c.ctx,
                                                        self.table.c.app, self.table.c.writes)
                                      .order_by(self.table.c.id)).all()

    def versions(self):
        return sorted({int(row.ct.split(":")[1][1:]) for row in self.rows() if row.ct})


class Job:
    """A fresh transit mount, a key with ciphertexts of several versions in a file and a table."""

    def __init__(self, vault, mount, tmp_path, database, rows=600, lines=400, derived=False):
        self.vault, self.mount, self.tmp_path, self.database = vault, mount, tmp_path, database
        self.client = transit_data.client(vault.address, vault.token)
        self.key = "k"
        self.derived = derived
        self.client.adapter.request("POST", "/v1/%s/keys/%s" % (mount, self.key), json={"derived": derived})
        self.expected = {}  # id -> plaintext
        self.table = Table(database)
        self.row_count = rows
        self.file = tmp_path / "records.jsonl"
        half = rows // 2
        table_rows = self._encrypt_rows(range(half))
        file_lines = self._encrypt_lines(range(lines // 2))
        self.client.adapter.request("POST", "/v1/%s/keys/%s/rotate" % (mount, self.key), json={})
        table_rows += self._encrypt_rows(range(half, rows))
        file_lines += self._encrypt_lines(range(lines // 2, lines))
        self.table.insert(table_rows)
        with open(self.file, "w") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in file_lines)
        self.vars_path = tmp_path / "rotation.yml"
        self.report_dir = tmp_path / "reports"
        self.runs = 0

    @staticmethod
    def context(ident):
        return base64.b64encode(("tenant-%d" % (ident % 7)).encode()).decode()

    def encrypt(self, values, contexts=None, key_version=None):
        batch = [{"plaintext": base64.b64encode(v.encode()).decode()} for v in values]
        for item, ctx in zip(batch, contexts or []):
            item["context"] = ctx
        body = {"key_version": key_version} if key_version else {}
        out = []
        for start in range(0, len(batch), 400):
            answer = self.client.adapter.request("POST", "/v1/%s/encrypt/%s" % (self.mount, self.key),
                                                 json=dict(body, batch_input=batch[start:start + 400])).json()
            out += [r["ciphertext"] for r in answer["data"]["batch_results"]]
        return out

    def _encrypt_rows(self, idents):
        idents = list(idents)
        values = transit_data.plaintexts(len(idents), "row-%s-%d" % (self.table.name, idents[0] if idents else 0))
        contexts = [self.context(i) for i in idents] if self.derived else None
        for ident, value in zip(idents, values):
            self.expected[("row", ident)] = value
        return [(i, ct, contexts[n] if contexts else None)
                for n, (i, ct) in enumerate(zip(idents, self.encrypt(values, contexts)))]

    def _encrypt_lines(self, idents):
        idents = list(idents)
        values = transit_data.plaintexts(len(idents), "line-%s-%d" % (self.table.name, idents[0] if idents else 0))
        contexts = [self.context(i) for i in idents] if self.derived else None
        for ident, value in zip(idents, values):
            self.expected[("line", ident)] = value
        lines = []
        for n, (ident, ct) in enumerate(zip(idents, self.encrypt(values, contexts))):
            line = {"id": ident, "secret": ct}
            if contexts:
                line["ctx"] = contexts[n]
            lines.append(line)
        return lines

    def consumers(self, hosts=None):
        file_consumer = {"type": "file", "path": str(self.file), "field": "secret"}
        table_consumer = {"type": "database", "url": self.database.url, "password": self.database.password,
                          "table": self.table.name, "column": "ct", "primary_key": "id"}
        if self.derived:
            file_consumer["context_field"] = "ctx"
            table_consumer["context_column"] = "ctx"
        if hosts:
            table_consumer["hosts"] = hosts
        return [file_consumer, table_consumer]

    def write_vars(self, hosts=None, rotate_older_than="{{ age | default('30d') }}"):
        entry = {"name": self.key, "mount": self.mount, "consumers": self.consumers(hosts)}
        if rotate_older_than:
            entry["rotate_older_than"] = rotate_older_than
        fd = os.open(str(self.vars_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump({"transit_rotation_keys": [entry]}, handle)

    def run(self, *args, inventory_lines=("localhost ansible_connection=local",), env=None, **kwargs):
        self.runs += 1
        inventory = self.tmp_path / "inventory.ini"
        inventory.write_text("\n".join(inventory_lines) + "\n")
        return ansible_playbook(ROTATE_KEYS, self.tmp_path / ("run-%d.jsonl" % self.runs),
                                env=dict(self.vault.env, **(env or {})),
                                args=["-e", "@%s" % self.vars_path, "-e", "rotation_report_dir=%s" % self.report_dir]
                                + list(args), inventory=str(inventory), **kwargs)

    def report(self):
        with open(self.report_dir / "rotation-report.json") as handle:
            return json.load(handle)[0]

    def key_state(self):
        return self.client.adapter.request("GET", "/v1/%s/keys/%s" % (self.mount, self.key)).json()["data"]

    def decrypt(self, ciphertexts, contexts=None):
        batch = [{"ciphertext": c} for c in ciphertexts]
        for item, ctx in zip(batch, contexts or []):
            item["context"] = ctx
        out = []
        for start in range(0, len(batch), 400):
            answer = self.client.adapter.request("POST", "/v1/%s/decrypt/%s" % (self.mount, self.key),
                                                 json={"batch_input": batch[start:start + 400]},
                                                 raise_exception=False).json()
            for item in (answer.get("data") or {}).get("batch_results") or [{}] * len(batch[start:start + 400]):
                out.append(base64.b64decode(item["plaintext"]).decode() if "plaintext" in item else None)
        return out

    def file_lines(self):
        with open(self.file) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def check_decryptable(self):
        """Every stored ciphertext decrypts to what was stored, and min_decryption_version <= oldest in use."""
        key = self.key_state()
        rows, lines = self.table.rows(), self.file_lines()
        versions = self.table.versions() + sorted({int(line["secret"].split(":")[1][1:]) for line in lines})
        assert min(versions) >= key["min_decryption_version"], (versions, key["min_decryption_version"])
        plain = self.decrypt([r.ct for r in rows], [r.ctx for r in rows] if self.derived else None)
        for row, value in zip(rows, plain):
            assert value is not None, "row %s does not decrypt" % row.id
            if row.app is None:
                assert value == self.expected[("row", row.id)], "row %s lost its value" % row.id
        plain = self.decrypt([line["secret"] for line in lines], [line["ctx"] for line in lines]
                             if self.derived else None)
        for line, value in zip(lines, plain):
            assert value is not None and value == self.expected[("line", line["id"])], "line %s" % line["id"]
        return key

    def check_complete(self):
        key = self.check_decryptable()
        assert key["min_decryption_version"] == key["latest_version"]
        assert self.table.versions() == [key["latest_version"]]
        assert {int(line["secret"].split(":")[1][1:]) for line in self.file_lines()} == {key["latest_version"]}
        return key


@pytest.mark.compat
def test_rotation_with_file_and_database_consumers(vault, transit_mount, tmp_path, database):
    job = Job(vault, transit_mount, tmp_path, database)
    job.write_vars()
    run = job.run("-e", "age=0s", "-vvv", expect_rc=0)
    key = job.check_complete()
    assert key["latest_version"] == 3
    report = job.report()
    file_record, table_record = report["consumers"]
    assert table_record["id"] == "database:%s/%s.ct" % (database.url, job.table.name)
    assert table_record["census_before"] == {"1": 300, "2": 300} and table_record["census_after"] == {"3": 600}
    assert table_record["rewrapped"] == 600 and table_record["ok"] is True
    assert report["min_decryption_version_after"] == 3 and report["oldest_version_in_use"] == 3
    assert all(row.writes == 1 for row in job.table.rows())  # each row written once
    assert database.password not in run.output
    markdown = (job.report_dir / "rotation-report.md").read_text()
    assert "v1: 300, v2: 300" in markdown and job.table.name in markdown

    again = job.run(expect_rc=0)  # nothing due: no rotation, no row written
    assert "changed=0" in again.stdout.split("PLAY RECAP")[1]
    assert all(row.writes == 1 for row in job.table.rows())


def test_derived_keys_in_files_and_tables(vault, transit_mount, tmp_path, postgres):
    job = Job(vault, transit_mount, tmp_path, postgres, rows=200, lines=100, derived=True)
    job.write_vars(rotate_older_than=None)
    job.run(expect_rc=0)
    job.check_complete()


def test_check_mode_writes_nothing(vault, transit_mount, tmp_path, mariadb):
    job = Job(vault, transit_mount, tmp_path, mariadb, rows=100, lines=50)
    job.write_vars(rotate_older_than=None)
    rows, text, key = job.table.rows(), job.file.read_text(), job.key_state()
    job.run("--check", expect_rc=0)
    assert job.table.rows() == rows and job.file.read_text() == text
    assert job.key_state()["latest_version"] == key["latest_version"]


def test_a_database_consumer_that_cannot_be_read_blocks_its_key(vault, transit_mount, tmp_path, postgres):
    job = Job(vault, transit_mount, tmp_path, postgres, rows=50, lines=20)
    job.write_vars(rotate_older_than=None)
    data = yaml.safe_load(job.vars_path.read_text())
    data["transit_rotation_keys"][0]["consumers"][1]["table"] = "missing_table"
    job.vars_path.write_text(yaml.safe_dump(data))
    run = job.run(expect_rc=2)
    report = job.report()
    assert report["blocked_by"] == ["database:%s/missing_table.ct" % postgres.url]
    assert job.key_state()["min_decryption_version"] == 1
    assert "missing_table" in run.output and postgres.password not in run.output


class Application:
    """Writes while the rotation runs: updates rows (latest and old key versions), inserts rows, appends lines.

    Every value it writes is recorded, so the test can tell a lost or overwritten write from a rewrapped one.
    """

    def __init__(self, job):
        self.job = job
        self.stop = threading.Event()
        self.updated, self.inserted, self.appended = {}, [], []
        self.errors = []
        self.retries = 0
        self.rng = random.Random(7)
        self.next_id = 10 ** 6

    def _update_rows(self, connection, pending):
        table = self.job.table.table
        for _update in range(5):
            ident = self.rng.randrange(0, self.job.row_count)
            value = "app-%d-%d" % (ident, len(self.updated) + len(pending["updated"]))
            _process.register_secret("plaintext", value)
            # Mostly the latest version, as an application would; sometimes an old one (a lagging replica).
            ciphertext = self.job.encrypt([value], key_version=1 if self.rng.random() < 0.2 else None)[0]
            connection.execute(sqlalchemy.update(table).where(table.c.id == ident).values(ct=ciphertext, app=value))
            pending["updated"][ident] = value

    def _insert_and_append(self, connection, pending):
        ident = self.next_id
        value = "app-row-%d" % ident
        _process.register_secret("plaintext", value)
        ciphertext = self.job.encrypt([value])[0]
        connection.execute(sqlalchemy.insert(self.job.table.table).values(id=ident, ct=ciphertext, app=value))
        pending["inserted"].append((ident, value))

    def _append_line(self, ident):
        line_value = "app-line-%d" % ident
        _process.register_secret("plaintext", line_value)
        self.job.expected[("line", ident)] = line_value
        line = json.dumps({"id": ident, "secret": self.job.encrypt([line_value])[0]}) + "\n"
        with open(self.job.file, "a") as handle:  # open per write, one write() per line
            handle.write(line)
        self.appended.append(ident)

    def run(self):
        while not self.stop.is_set():
            pending = {"updated": {}, "inserted": []}
            try:
                with self.job.database.engine.begin() as connection:
                    self._update_rows(connection, pending)
                    self._insert_and_append(connection, pending)
            except sqlalchemy.exc.OperationalError as exc:
                # A deadlock with the rewrap's batch: the database rolled this transaction back, and an
                # application retries it, as this one does on the next round.
                if "1213" not in str(exc) and "deadlock" not in str(exc).lower():
                    self.errors.append(repr(exc))
                self.retries += 1
                continue
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))
                continue
            self.updated.update(pending["updated"])  # committed: now the application's values
            self.inserted.extend(pending["inserted"])
            self._append_line(self.next_id)
            self.next_id += 1
            time.sleep(0.005)


def test_application_writing_throughout_the_rotation_loses_nothing(vault, transit_mount, tmp_path, database):
    job = Job(vault, transit_mount, tmp_path, database, rows=3000, lines=3000)
    job.write_vars(rotate_older_than=None)
    app = Application(job)
    writer = threading.Thread(target=app.run, daemon=True)
    writer.start()
    try:
        job.run(expect_rc=0)
    finally:
        app.stop.set()
        writer.join(30)
    assert not app.errors, app.errors[:3]
    assert app.updated and app.inserted and app.appended
    rows = dict((row.id, row) for row in job.table.rows())
    plain = dict(zip(rows, job.decrypt([row.ct for row in rows.values()])))
    overwritten = [ident for ident, value in app.updated.items() if plain[ident] != value]
    lost_rows = [ident for ident, value in app.inserted if ident not in rows or plain[ident] != value]
    lines = dict((line["id"], line) for line in job.file_lines())
    lost_lines = [ident for ident in app.appended if ident not in lines]
    print("application during the rotation: %d rows updated, %d inserted, %d lines appended, %d transactions "
          "retried; overwritten=%d lost rows=%d lost lines=%d" % (
              len(app.updated), len(app.inserted), len(app.appended), app.retries, len(overwritten), len(lost_rows),
              len(lost_lines)))
    assert overwritten == [] and lost_rows == [] and lost_lines == []
    job.check_decryptable()
    report = job.report()
    # The census after the run decides: it counts rows the application inserted while the job ran (it went
    # on inserting after the census, so the table now holds more).
    assert 3000 < sum(report["consumers"][1]["census_after"].values()) <= len(rows)


def test_a_table_split_between_hosts_is_handled_once_per_row(vault, transit_mount, tmp_path, database):
    job = Job(vault, transit_mount, tmp_path, database, rows=1500, lines=10)
    job.write_vars(hosts=["worker1", "worker2", "worker3"], rotate_older_than=None)
    inventory = ["localhost ansible_connection=local"] + [
        "worker%d ansible_connection=local" % n for n in (1, 2, 3)]
    run = job.run(inventory_lines=inventory, expect_rc=0)
    job.check_complete()
    rows = job.table.rows()
    assert [row.id for row in rows if row.writes != 1] == []  # no row twice, none missed
    record = job.report()["consumers"][1]
    assert record["rewrapped"] == 1500 and record["census_after"] == {"3": 1500}
    assert all("worker%d" % n in run.output for n in (1, 2, 3))


# Task starts of one run of rotate_keys.yml with a file and a database consumer (test_boundary_count).
BOUNDARIES = 22


def _crash_job(vault, transit_mount, tmp_path, database):
    job = Job(vault, transit_mount, tmp_path, database, rows=1000, lines=200)
    job.write_vars(rotate_older_than="{{ age | default('30d') }}")
    return job


def test_boundary_count(vault, transit_mount, tmp_path, postgres):
    job = _crash_job(vault, transit_mount, tmp_path, postgres)
    log = tmp_path / "tasks.log"
    job.run("-e", "age=0s", callbacks=("crash_at",), env=dict(vault.env, KEYOPS_CRASH_TASK_LOG=str(log)),
            expect_rc=0)
    job.check_complete()
    assert len(log.read_text().splitlines()) == BOUNDARIES, log.read_text()


# Task starts between step 1 and the raise (earlier ones precede any change, later ones only report): on
# PostgreSQL before step 1, each step-2 task of either consumer and the raise; on MariaDB the database tasks.
CRASH_POINTS = [("postgres", boundary) for boundary in (4, 7, 9, 10, 11, 12, 14, 15)] + [
    ("mariadb", boundary) for boundary in (10, 11, 12)]


@pytest.mark.slow
@pytest.mark.parametrize("engine, boundary", CRASH_POINTS)
def test_crash_at_task_boundaries_then_rerun(vault, transit_mount, tmp_path, engine, boundary, request):
    job = _crash_job(vault, transit_mount, tmp_path, request.getfixturevalue(engine))
    crashed = job.run("-e", "age=0s", callbacks=("crash_at",),
                      env=dict(vault.env, KEYOPS_CRASH_AT_TASK=str(boundary)))
    assert crashed.killed, crashed.output
    _wait_for_async_shares(tmp_path)
    job.check_decryptable()
    job.run(expect_rc=0)  # the schedule (30d) again: a key rotated before the crash is not due any more
    job.check_complete()
    assert job.key_state()["latest_version"] == (2 if boundary <= 4 else 3)  # never rotated twice


def _processes_of(tmp_path):
    """Processes of this test's runs: the controller, its workers and modules, and async shares that went on
    by themselves - on a local connection they all carry the run's environment (KEYOPS_RECORD_FILE)."""
    marker = ("KEYOPS_RECORD_FILE=%s" % tmp_path).encode()
    found = []
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open("/proc/%s/environ" % pid, "rb") as handle:
                if marker in handle.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _wait_for_async_shares(tmp_path, timeout=60):
    """A share started before the crash goes on by itself (async); let it end before checking the table."""
    deadline = time.monotonic() + timeout
    while _processes_of(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_crash_in_the_middle_of_a_batch_then_rerun(vault, transit_mount, tmp_path, engine, request):
    """SIGKILL of everything (controller, async share, module) once the table is partly rewrapped."""
    database = request.getfixturevalue(engine)
    job = Job(vault, transit_mount, tmp_path, database, rows=20000, lines=10)
    job.write_vars(rotate_older_than="{{ age | default('30d') }}")
    done = threading.Event()

    def kill_when_partly_rewrapped():
        while not done.is_set():
            with database.engine.connect() as connection:
                written = connection.execute(sqlalchemy.text(
                    "SELECT count(*) FROM %s WHERE writes > 0" % job.table.name)).scalar()
            if 0 < written < 20000:
                for pid in _processes_of(tmp_path):
                    try:
                        os.kill(pid, 9)
                    except OSError:
                        pass
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_partly_rewrapped, daemon=True)
    killer.start()
    crashed = job.run("-e", "age=0s", fresh=True)  # its processes are found by their environment
    done.set()
    killer.join(10)
    assert crashed.rc != 0
    job.check_decryptable()
    versions = job.table.versions()
    assert 3 in versions and len(versions) > 1, "the kill did not land inside the rewrap: %s" % versions
    job.run(expect_rc=0)
    assert job.check_complete()["latest_version"] == 3
