"""database_rewrap with a fake Vault and a fake database layer: no SQL is run.

The fake replaces only the statements of ``_database.DatabaseRewrapper`` - reflection (``Table``), census,
malformed rows, range plan, pages and the compare-and-swap UPDATE - with the same operations on an in-memory table;
the rest of the class (connection settings and password resolution, the transaction runner and its error
explanations, the batching, the write-back and its counters) and ``_database.run`` are the collection's own.
"""

import base64
import collections
import contextlib
import re

import pytest
import sqlalchemy
from _module_runner import assert_not_in_result, module_kwargs, no_log_options, run_module, set_module_args
from ansible.module_utils import basic
from ansible_collections.keyops.lifecycle.plugins.module_utils import _database
from ansible_collections.keyops.lifecycle.plugins.modules import database_rewrap

URL = "postgresql://app@db1.example.com:5432/payments"
KEY, REWRAP = "transit/keys/payments", "transit/rewrap/payments"
V1, V2, V3 = "vault:v1:QUFBQQ==", "vault:v2:QkJCQg==", "vault:v3:Q0NDQw=="
DB_PASSWORD = "db-password-Zq81x"
_VERSION = re.compile(_database.CIPHERTEXT_GROUP_PATTERN)


class FakeTable:
    def __init__(self, rows, context=False, unique_key=True):
        self.rows = dict((key, {"pan": value, "tenant": "tenant-%d" % key}) for key, value in rows.items())
        self.context = context
        self.unique_key = unique_key
        self.before_write = None  # called with the table before each compare-and-swap (an application writing)

    def sqlalchemy_table(self, name, metadata, schema):
        columns = [sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=self.unique_key),
                   sqlalchemy.Column("pan", sqlalchemy.Text)]
        if self.context:
            columns.append(sqlalchemy.Column("tenant", sqlalchemy.Text))
        return sqlalchemy.Table(name, metadata, *columns, schema=schema)

    def values(self):
        return dict((key, row["pan"]) for key, row in self.rows.items())


class FakeEngine:
    def __init__(self, url):
        self.url = url
        self.disposed = False
        self.transactions = 0
        self.fail_with = []  # DBAPIErrors raised by the next transactions

    @contextlib.contextmanager
    def begin(self):
        self.transactions += 1
        if self.fail_with:
            raise self.fail_with.pop(0)
        yield self

    def dispose(self):
        self.disposed = True


def version_of(value):
    if value is None:
        return None
    match = _VERSION.match(value)
    return int(match.group(1)) if match else _database.MALFORMED


class FakeDatabase(_database.DatabaseRewrapper):
    """The real class; only what would send SQL works on ``tables`` instead."""

    tables = {}
    engines = []
    sleeps = []

    def _table(self):
        return self.tables[self._table_label]

    def _rows(self, after, up_to):
        low, high = (_database.coerce_key(v, self.key_type) for v in (after, up_to))
        return sorted((key, row) for key, row in self._table().rows.items()
                      if (low is None or key > low) and (high is None or key <= high))

    def census(self, after=None, up_to=None):
        counts = collections.Counter(version_of(row["pan"]) for _key, row in self._rows(after, up_to))
        return _database.census_from_rows(counts.items())

    def malformed_rows(self, after=None, up_to=None, limit=_database.MAX_REPORTED):
        keys = [key for key, row in self._rows(after, up_to) if version_of(row["pan"]) == _database.MALFORMED]
        return [{"primary_key": key, "error": _database.NOT_A_CIPHERTEXT} for key in keys[:limit]]

    def plan_ranges(self, parts, after=None, up_to=None):
        keys = [key for key, _row in self._rows(after, up_to)]
        boundaries = [keys[p - 1] for p in _database.range_positions(len(keys), parts)]
        return _database.ranges_from_boundaries(boundaries, parts, after, up_to)

    def _pages(self, target, batch_size, after, up_to):
        last = None
        while True:
            page = [(key, row["pan"]) + ((row["tenant"],) if self.context is not None else ())
                    for key, row in self._rows(after, up_to) if row["pan"] is not None and (last is None or key > last)]
            page = page[:batch_size]
            if not page:
                return
            last = page[-1][0]
            yield [row for row in page if _database._due(row[1], target)]
            if len(page) < batch_size:
                return

    def _compare_and_swap(self, connection, updates):
        table = self._table()
        if table.before_write:
            table.before_write(table)
        written = 0
        for update in updates:
            row = table.rows[update["b_key"]]
            if row["pan"] == update["b_old"]:
                row["pan"] = update["b_new"]
                written += 1
        return written


@pytest.fixture
def database(monkeypatch):
    """The table ``billing.cards`` (id, pan) every DatabaseRewrapper of the test sees."""
    FakeDatabase.tables = {}
    FakeDatabase.engines = []
    FakeDatabase.sleeps = []
    real_with_retries = _database.with_retries

    def with_retries(attempt, retries, sleep=None, **kwargs):  # retry delays are recorded, never slept
        return real_with_retries(attempt, retries, sleep=FakeDatabase.sleeps.append, **kwargs)

    def create_engine(url, **_kwargs):
        FakeDatabase.engines.append(FakeEngine(url))
        return FakeDatabase.engines[-1]

    def reflect(name, metadata, schema=None, autoload_with=None):
        label = "%s.%s" % (schema, name) if schema else str(name)
        if label not in FakeDatabase.tables:
            raise sqlalchemy.exc.NoSuchTableError(label)
        return FakeDatabase.tables[label].sqlalchemy_table(str(name), metadata, schema)

    monkeypatch.setattr(_database.sqlalchemy, "create_engine", create_engine)
    monkeypatch.setattr(_database, "Table", reflect)
    monkeypatch.setattr(_database, "DatabaseRewrapper", FakeDatabase)
    monkeypatch.setattr(_database, "with_retries", with_retries)
    FakeDatabase.tables["billing.cards"] = FakeTable({1: V1, 2: V2, 3: V3, 4: None})
    return FakeDatabase


def rewrap_answer(body):
    results = []
    for item in body["batch_input"]:
        if "QkFE" in item["ciphertext"]:
            results.append({"error": "cipher: message authentication failed"})
        else:
            results.append({"ciphertext": "vault:v%d:%s" % (item.get("key_version", 3),
                                                            item["ciphertext"].split(":", 2)[2])})
    return {"data": {"batch_results": results}}


@pytest.fixture
def vault(fake_vault):
    return fake_vault.on("GET", KEY, {"data": {"latest_version": 3, "derived": False}}).on(
        "POST", REWRAP, rewrap_answer)


@pytest.fixture
def args(vault_args):
    return dict(vault_args, name="payments", database_url=URL, table="billing.cards", column="pan", primary_key="id")


def cards():
    return FakeDatabase.tables["billing.cards"]


def test_argument_spec():
    spec = module_kwargs(database_rewrap.main)["argument_spec"]
    assert [n for n in ("name", "database_url", "table", "column", "primary_key") if spec[n].get("required")] == [
        "name", "database_url", "table", "column", "primary_key"]
    assert spec["context_encoding"]["choices"] == ["base64", "text"] and spec["batch_size"]["default"] == 400
    assert no_log_options(spec) == {"token", "secret_id", "database_password"}


def test_a_url_holding_a_password_makes_the_url_no_log(monkeypatch):
    captured = {}

    def capture(self, **kwargs):
        captured.update(kwargs)
        raise SystemExit(0)

    set_module_args({"database_url": "postgresql://app:%s@db1/payments" % DB_PASSWORD})
    monkeypatch.setattr(basic.AnsibleModule, "__init__", capture)
    with pytest.raises(SystemExit):
        database_rewrap.main()
    assert captured["argument_spec"]["database_url"]["no_log"] is True


def test_rows_below_the_latest_version_are_rewrapped(database, vault, args):
    result = run_module(database_rewrap.main, args, diff=True)
    assert not result.get("failed") and result["changed"] is True
    assert result["rewrapped"] == 2 and result["target_version"] == 3 and result["passes"] == 1
    assert result["census_before"] == {"1": 1, "2": 1, "3": 1} and result["census_after"] == {"3": 3}
    assert result["null"] == 1 and result["malformed"] == {"count": 0, "rows": []}
    assert result["conflicts"] == 0 and result["errors"] == [] and result["error_count"] == 0
    assert result["oldest_version_in_use"] == 3 and result["database_url"] == URL
    assert cards().values() == {1: "vault:v3:QUFBQQ==", 2: "vault:v3:QkJCQg==", 3: V3, 4: None}
    assert vault.sent("POST", REWRAP) == [("POST", REWRAP, {"batch_input": [{"ciphertext": V1}, {"ciphertext": V2}]})]
    assert result["diff"] == {"before": {"census": {"1": 1, "2": 1, "3": 1}, "null": 1, "malformed": 0},
                              "after": {"census": {"3": 3}, "null": 1, "malformed": 0}}
    assert_not_in_result(result, V1, V2, V3, "QUFBQQ", args["token"])
    assert database.engines[0].disposed is True


def test_a_second_run_changes_nothing(database, vault, args):
    run_module(database_rewrap.main, args)
    result = run_module(database_rewrap.main, args)
    assert result["changed"] is False and result["rewrapped"] == 0 and "diff" not in result
    assert len(vault.sent("POST", REWRAP)) == 1


def test_check_mode_takes_the_census_only(database, vault, args):
    result = run_module(database_rewrap.main, args, check_mode=True)
    assert result["changed"] is True and result["rewrapped"] == 2 and result["passes"] == 0
    assert result["census_after"] == result["census_before"] == {"1": 1, "2": 1, "3": 1}
    assert result["oldest_version_in_use"] == 1
    assert vault.sent("POST") == [] and cards().values() == {1: V1, 2: V2, 3: V3, 4: None}


def test_small_batches_page_through_the_table(database, vault, args):
    cards().rows.update((key, {"pan": V1, "tenant": "t"}) for key in range(10, 20))
    result = run_module(database_rewrap.main, dict(args, batch_size=3))
    assert result["rewrapped"] == 12 and result["census_after"] == {"3": 13}
    assert max(len(body["batch_input"]) for _m, _p, body in vault.sent("POST", REWRAP)) <= 3


def test_key_version_rewraps_only_up_to_it(database, vault, args):
    result = run_module(database_rewrap.main, dict(args, key_version=2))
    assert result["target_version"] == 2 and result["rewrapped"] == 1
    assert result["census_after"] == {"2": 2, "3": 1} and cards().values()[1] == "vault:v2:QUFBQQ=="
    [(_m, _p, body)] = vault.sent("POST", REWRAP)
    assert body == {"batch_input": [{"ciphertext": V1, "key_version": 2}], "key_version": 2}


def test_a_version_the_key_does_not_have(database, vault, args):
    result = run_module(database_rewrap.main, dict(args, key_version=5))
    assert result["failed"] is True
    assert result["msg"] == "key_version 5 is not a version of key 'payments' (latest is 3)"
    assert vault.sent("POST") == []


def test_malformed_values_fail_the_task_after_the_rest_is_rewrapped(database, vault, args):
    cards().rows[7] = {"pan": "plaintext-4111111111111111", "tenant": "t"}
    result = run_module(database_rewrap.main, args)
    assert result["failed"] is True
    assert result["msg"] == ("1 value(s) in billing.cards.pan are not transit ciphertexts, first at primary key 7; "
                             "2 row(s) were rewrapped, the rest was left as it was")
    assert result["malformed"] == {"count": 1, "rows": [{"primary_key": 7, "error": _database.NOT_A_CIPHERTEXT}]}
    assert result["rewrapped"] == 2 and cards().values()[7] == "plaintext-4111111111111111"
    assert_not_in_result(result, "4111111111111111")
    reported = run_module(database_rewrap.main, dict(args, fail_on_malformed=False))
    assert not reported.get("failed") and reported["malformed"]["count"] == 1


def test_rows_vault_cannot_rewrap_fail_the_task_and_stay(database, vault, args):
    cards().rows[2]["pan"] = "vault:v1:QkFE"
    result = run_module(database_rewrap.main, args)
    assert result["failed"] is True
    assert result["msg"] == ("Vault could not rewrap 1 row(s), first at primary key 2 (cipher: message authentication "
                             "failed); 1 row(s) were rewrapped, the rest was left as it was")
    assert result["error_count"] == 1 and result["errors"] == [{"primary_key": 2,
                                                               "error": "cipher: message authentication failed"}]
    assert cards().values()[2] == "vault:v1:QkFE" and cards().values()[1] == "vault:v3:QUFBQQ=="


def test_a_value_the_application_wrote_meanwhile_is_kept(database, vault, args):
    def application(table):
        table.before_write = None
        table.rows[1]["pan"] = "vault:v3:QXBwbGljYXRpb24="

    cards().before_write = application
    result = run_module(database_rewrap.main, args)
    assert result["conflicts"] == 1 and result["rewrapped"] == 1 and result["passes"] == 2
    assert cards().values()[1] == "vault:v3:QXBwbGljYXRpb24=" and result["census_after"] == {"3": 3}


def test_a_derived_key_needs_the_context_column(database, fake_vault, args):
    fake_vault.on("GET", KEY, {"data": {"latest_version": 3, "derived": True}}).on("POST", REWRAP, rewrap_answer)
    result = run_module(database_rewrap.main, args)
    assert result["failed"] is True
    assert result["msg"] == ("transit key 'payments' is derived (per-row context): set `context_column` to the "
                             "column holding each row's context; nothing was written")
    assert fake_vault.sent("POST") == []


def test_a_derived_key_sends_each_rows_context(database, fake_vault, args):
    fake_vault.on("GET", KEY, {"data": {"latest_version": 3, "derived": True}}).on("POST", REWRAP, rewrap_answer)
    database.tables["billing.cards"] = FakeTable({1: V1, 2: V3}, context=True)
    result = run_module(database_rewrap.main, dict(args, context_column="tenant", context_encoding="text"))
    assert result["rewrapped"] == 1
    [(_m, _p, body)] = fake_vault.sent("POST", REWRAP)
    assert body == {"batch_input": [{"ciphertext": V1, "context": base64.b64encode(b"tenant-1").decode()}]}


def test_plan_ranges_reads_no_key_and_writes_nothing(database, fake_vault, args):
    cards().rows.update((key, {"pan": V1, "tenant": "t"}) for key in range(5, 10))
    result = run_module(database_rewrap.main, dict(args, plan_ranges=3))
    assert result["changed"] is False and fake_vault.requests == []
    assert result["primary_key_ranges"] == [{"after": None, "up_to": 3}, {"after": 3, "up_to": 6},
                                            {"after": 6, "up_to": None}]


def test_a_primary_key_range_limits_the_rows(database, vault, args):
    result = run_module(database_rewrap.main, dict(args, primary_key_range={"after": "1", "up_to": 3}))
    assert result["rewrapped"] == 1 and result["census_before"] == {"2": 1, "3": 1}
    assert cards().values()[1] == V1


@pytest.mark.parametrize("url_password,option,env,expected", [
    (DB_PASSWORD, None, {}, DB_PASSWORD),
    ("url-password-y7", DB_PASSWORD, {}, DB_PASSWORD),
    (None, None, {"MYSQL_PWD": DB_PASSWORD}, DB_PASSWORD),
])
def test_the_password_reaches_the_driver_and_never_the_result(database, vault, args, monkeypatch,
                                                              url_password, option, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    scheme = "mariadb" if env else "postgresql"
    auth = "app:%s" % url_password if url_password else "app"
    cards().rows[9] = {"pan": "garbage", "tenant": "t"}  # make it fail, so the message is checked too
    run_args = dict(args, database_url="%s://%s@db1:3306/payments" % (scheme, auth), database_password=option)
    result = run_module(database_rewrap.main, run_args)
    assert database.engines[0].url.password == expected
    assert result["failed"] is True and result["database_url"] == "%s://app%s@db1:3306/payments" % (
        scheme, ":********" if url_password else "")
    assert_not_in_result(result, DB_PASSWORD, "url-password-y7")


@pytest.mark.parametrize("extra,text", [
    ({"batch_size": 491}, "batch_size must be between 1 and 490 (got 491)"),
    ({"batch_size": 0}, "batch_size must be between 1 and 490 (got 0)"),
    ({"max_passes": 0}, "max_passes must be 1 or more (got 0)"),
    ({"table": "cards; DROP TABLE cards"}, "`table` must be a plain SQL identifier"),
    ({"column": "pan--"}, "`column` must be a plain SQL identifier"),
    ({"where": "deleted_at IS NULL; DELETE FROM cards"}, "`where` may not contain ';'"),
    ({"database_url": "oracle://app@db/x"}, "unknown scheme 'oracle'"),
    ({"database_url": "postgresql://app@db1"}, "names no database"),
    ({"primary_key_range": [1, 2]}, "primary_key_range must be a dictionary with the options after, up_to, not list"),
    ({"primary_key_range": {"after": "first"}}, "primary_key_range bound 'first' is not an integer"),
    ({"context_encoding": "hex"}, "context_encoding"),
])
def test_bad_input_is_explained_before_any_write(database, vault, args, extra, text):
    result = run_module(database_rewrap.main, dict(args, **extra))
    assert result["failed"] is True and text in result["msg"]
    assert vault.sent("POST") == [] and cards().values() == {1: V1, 2: V2, 3: V3, 4: None}


@pytest.mark.parametrize("table,extra,text", [
    ("billing.missing", {}, "table 'billing.missing' does not exist in database 'payments' on %s" % URL),
    ("billing.cards", {"column": "card"}, "table 'billing.cards' has no column 'card' (option `column`); it has: "
                                          "id, pan"),
    ("billing.cards", {"context_column": "tenant"}, "has no column 'tenant' (option `context_column`)"),
])
def test_a_table_or_column_that_is_not_there(database, vault, args, table, extra, text):
    result = run_module(database_rewrap.main, dict(args, table=table, **extra))
    assert result["failed"] is True and text in result["msg"]
    assert vault.requests == [] and database.engines[0].disposed is True


def test_a_key_that_is_not_unique_is_refused(database, vault, args):
    database.tables["billing.cards"] = FakeTable({1: V1}, unique_key=False)
    result = run_module(database_rewrap.main, args)
    assert result["failed"] is True and "`primary_key` 'id' is not the primary key or a unique column" in result["msg"]


def test_a_missing_transit_key(database, fake_vault, args):
    result = run_module(database_rewrap.main, args)
    assert result["failed"] is True and result["msg"] == "transit key 'payments' does not exist in mount 'transit'"
    assert database.engines[0].disposed is True


class DriverError(Exception):
    def __init__(self, sqlstate, message):
        super().__init__(message)
        self.sqlstate = sqlstate


def dbapi_error(sqlstate, message):
    return sqlalchemy.exc.OperationalError("SELECT ...", {}, DriverError(sqlstate, message))


def test_a_permission_error_names_the_grant(database, vault, args, monkeypatch):
    def first_engine_fails(url, **_kwargs):
        engine = FakeEngine(url)
        engine.fail_with.append(dbapi_error("42501", 'permission denied for table cards'))
        database.engines.append(engine)
        return engine

    monkeypatch.setattr(_database.sqlalchemy, "create_engine", first_engine_fails)
    result = run_module(database_rewrap.main, dict(args, database_password=DB_PASSWORD))
    assert result["failed"] is True
    assert result["msg"].startswith("permission denied on %s (reading the definition of table billing.cards): user "
                                    "'app' needs SELECT and UPDATE on table 'billing.cards'" % URL)
    assert_not_in_result(result, DB_PASSWORD)


def test_a_transient_error_is_retried(database, vault, args, monkeypatch):
    def flaky(url, **_kwargs):
        engine = FakeEngine(url)
        engine.fail_with.append(dbapi_error("40P01", "deadlock detected"))
        database.engines.append(engine)
        return engine

    monkeypatch.setattr(_database.sqlalchemy, "create_engine", flaky)
    result = run_module(database_rewrap.main, dict(args, retries=1))
    assert not result.get("failed") and result["rewrapped"] == 2
    assert database.sleeps == [0.5] and database.engines[0].transactions >= 2
