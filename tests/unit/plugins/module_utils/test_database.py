"""database_rewrap's pure decisions: identifiers, URLs and masking, where, census, ranges, errors, the sender."""

import base64

import pytest
import sqlalchemy

from ansible_collections.keyops.lifecycle.plugins.module_utils import _database as d
from ansible_collections.keyops.lifecycle.plugins.module_utils._errors import KeyopsModuleError
from ansible_collections.keyops.lifecycle.plugins.module_utils._rewrap import BatchRewrapper, TooLargeError
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError


def test_error_base():
    assert issubclass(d.DatabaseModuleError, KeyopsModuleError)


@pytest.mark.parametrize("name", ["id", "pan_ciphertext", "_x", "Col$1", "a" * 63])
def test_identifiers_accepted(name):
    assert d.validate_identifier(name, "column") == name


@pytest.mark.parametrize("name", ["", "1col", "a b", "x;drop", 'a"b', "a-b", "a" * 64, None, 5, "naïve"])
def test_identifiers_refused(name):
    with pytest.raises(d.DatabaseModuleError, match="`column` must be a plain SQL identifier"):
        d.validate_identifier(name, "column")


def test_split_table():
    assert d.split_table("cards") == (None, "cards")
    assert d.split_table("billing.cards") == ("billing", "cards")
    for bad in ("a.b.c", "", "billing.", ".cards", "x;y"):
        with pytest.raises(d.DatabaseModuleError):
            d.split_table(bad)


@pytest.mark.parametrize("url,driver,dialect,env", [
    ("postgresql://app@db1/payments", "postgresql+psycopg", "postgresql", None),
    ("postgres://app@db1:5433/payments", "postgresql+psycopg", "postgresql", None),
    ("mysql://app@db2/crm", "mysql+pymysql", "mysql", "MYSQL_PWD"),
    ("mariadb://app@db2:3306/crm", "mysql+pymysql", "mysql", "MYSQL_PWD"),
    ("MariaDB://app@db2:3306/crm", "mysql+pymysql", "mysql", "MYSQL_PWD"),
])
def test_scheme_picks_the_driver(url, driver, dialect, env):
    parsed = d.parse_url(url)
    assert (parsed.driver, parsed.dialect, parsed.password_env) == (driver, dialect, env)
    assert parsed.username == "app" and parsed.password is None


def test_url_parts_and_masking():
    parsed = d.parse_url("postgresql://app:s%40cr%3At@db1.example.com:5432/payments?sslmode=verify-full")
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "app", "s@cr:t", "db1.example.com", 5432, "payments")
    assert parsed.query == [("sslmode", "verify-full")]
    assert parsed.masked == "postgresql://app:********@db1.example.com:5432/payments?sslmode=verify-full"
    assert d.parse_url("postgresql://app@db1/payments").masked == "postgresql://app@db1/payments"
    assert d.url_secrets("postgresql://app:s%40cr%3At@db1/p") == {"s%40cr%3At", "s@cr:t"}
    assert d.url_secrets("postgresql://app@db1/p") == set() and d.url_secrets(None) == set()
    assert d.mask_url("mysql://app:hunter2@db/x") == "mysql://app:********@db/x"
    assert d.mask_url("mysql://db/x") == "mysql://db/x"


@pytest.mark.parametrize("url,text", [
    ("db1/payments", "must look like"),
    (None, "must look like"),
    ("oracle://app:pw@db/x", "unknown scheme 'oracle'"),
    ("https://vault.example.com:8200", "unknown scheme 'https'"),
    ("postgresql://app@db1", "names no database"),
    ("postgresql://app@db1/", "names no database"),
    ("postgresql://app@/payments", "names no host"),
    ("postgresql://app:pw@db1:notaport/payments", "is not a valid URL"),
])
def test_bad_urls(url, text):
    with pytest.raises(d.DatabaseModuleError, match=text) as info:
        d.parse_url(url)
    assert ":pw@" not in info.value.msg


@pytest.mark.parametrize("where", ["id > 0; DROP TABLE t", "id > 0 -- x", "id /* x */ > 0", "id > 0 # x", "  ", ""])
def test_where_refused(where):
    with pytest.raises(d.DatabaseModuleError, match="where"):
        d.validate_where(where)


def test_where_kept_and_colons_escaped():
    assert d.validate_where(None) is None
    assert d.validate_where("deleted_at IS NULL") == "deleted_at IS NULL"
    assert d.where_text("created_at < '2024-01-01 10:00:00'") == "(created_at < '2024-01-01 10\\:00\\:00')"
    # SQLAlchemy then sees no bind parameter in it.
    assert sqlalchemy.text(d.where_text("t < '10:00'"))._bindparams == {}


def test_batch_size():
    assert d.check_batch_size(400) == 400 and d.check_batch_size(d.MAX_SAFE_BATCH) == d.MAX_SAFE_BATCH
    for bad in (0, -1, d.MAX_SAFE_BATCH + 1, "10"):
        with pytest.raises(d.DatabaseModuleError, match="batch_size must be between 1 and"):
            d.check_batch_size(bad)


def test_census_from_grouped_rows():
    census, null, malformed = d.census_from_rows([(3, 5), (None, 2), (-1, 4), (1, 10), (12, 1)])
    assert census == {"1": 10, "3": 5, "12": 1} and list(census) == ["1", "3", "12"]
    assert (null, malformed) == (2, 4)
    assert d.census_from_rows([]) == ({}, 0, 0)
    assert d.oldest_version(census) == 1 and d.oldest_version({}) is None and d.oldest_version({"2": 0, "4": 1}) == 4
    assert d.due_count(census, 3) == 10 and d.due_count(census, 13) == 16 and d.due_count({}, 2) == 0


def test_range_positions():
    assert d.range_positions(3000, 3) == [1000, 2000]
    assert d.range_positions(10, 3) == [3, 6]
    assert d.range_positions(10, 1) == []
    assert d.range_positions(0, 3) == []
    assert d.range_positions(2, 4) == [1]
    with pytest.raises(d.DatabaseModuleError):
        d.range_positions(10, 0)


def covered(ranges, keys):
    """Which range each key falls into (after exclusive, up_to inclusive, None open)."""
    out = []
    for key in keys:
        hits = [i for i, r in enumerate(ranges) if (r["after"] is None or key > r["after"])
                and (r["up_to"] is None or key <= r["up_to"])]
        out.append(hits)
    return out


@pytest.mark.parametrize("total,parts", [(3000, 3), (10, 3), (2, 4), (1, 1), (7, 7), (5, 2)])
def test_ranges_cover_every_key_exactly_once(total, parts):
    keys = list(range(10, 10 + 3 * total, 3))
    boundaries = [keys[p - 1] for p in d.range_positions(total, parts)]
    ranges = d.ranges_from_boundaries(boundaries, parts)
    assert len(ranges) == parts and ranges[0]["after"] is None and ranges[-1]["up_to"] is None
    # Existing keys, keys inserted later at both ends and in between: each in exactly one range.
    probe = keys + [0, 10 ** 9] + [k + 1 for k in keys]
    assert all(len(hits) == 1 for hits in covered(ranges, probe))
    assert all(ranges[i]["up_to"] == ranges[i + 1]["after"] for i in range(parts - 1))


def test_ranges_inside_a_given_range_and_empty_tables():
    assert d.ranges_from_boundaries([20], 2, after=10, up_to=30) == [
        {"after": 10, "up_to": 20}, {"after": 20, "up_to": 30}]
    assert d.ranges_from_boundaries([], 3) == [{"after": None, "up_to": None}]
    assert d.ranges_from_boundaries([], 2, after=5) == [{"after": 5, "up_to": 5}, {"after": 5, "up_to": None}]


def test_key_range_and_coercion():
    assert d.check_key_range(None) == (None, None)
    assert d.check_key_range({"after": 3, "up_to": None}) == (3, None)
    with pytest.raises(d.DatabaseModuleError, match="primary_key_range"):
        d.check_key_range({"from": 1})
    assert d.coerce_key("1000", int) == 1000 and d.coerce_key(5, int) == 5 and d.coerce_key("a", str) == "a"
    assert d.coerce_key(None, int) is None
    with pytest.raises(d.DatabaseModuleError, match="not an integer"):
        d.coerce_key("abc", int)
    assert d.json_key(5) == 5 and d.json_key("x") == "x" and d.json_key(None) is None
    import uuid
    assert d.json_key(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


def test_contexts():
    assert d.encode_context("dGVuYW50LTE=", "base64") == "dGVuYW50LTE="
    assert d.encode_context("tenant-1", "text") == base64.b64encode(b"tenant-1").decode()
    assert d.encode_context(b"tenant-1", "text") == base64.b64encode(b"tenant-1").decode()
    assert d.encode_context(None, "base64") is None and d.encode_context("", "text") is None
    with pytest.raises(ValueError, match="context field 'context_column' is not base64"):
        d.encode_context("tenant-1", "base64")


@pytest.mark.parametrize("dialect,code,message,kind,transient", [
    ("postgresql", "28P01", "password authentication failed", "auth", False),
    ("postgresql", None, 'connection failed: FATAL:  password authentication failed for user "app"', "auth", False),
    ("postgresql", None, "connection failed: Connection refused", "connect", True),
    ("postgresql", "3D000", 'database "x" does not exist', "database", False),
    ("postgresql", "42P01", 'relation "t" does not exist', "table", False),
    ("postgresql", "42703", 'column "c" does not exist', "column", False),
    ("postgresql", "42501", "permission denied for table t", "permission", False),
    ("postgresql", "40P01", "deadlock detected", "busy", True),
    ("postgresql", "42601", "syntax error", "syntax", False),
    ("mysql", 1045, "Access denied for user 'app'", "auth", False),
    ("mysql", 1049, "Unknown database 'x'", "database", False),
    ("mysql", 1146, "Table 'app.t' doesn't exist", "table", False),
    ("mysql", 1142, "UPDATE command denied to user", "permission", False),
    ("mysql", 2003, "Can't connect to MySQL server", "connect", True),
    ("mysql", 2013, "Lost connection to MySQL server during query", "connect", True),
    ("mysql", 1213, "Deadlock found", "busy", True),
])
def test_classify(dialect, code, message, kind, transient):
    assert d.classify(dialect, code, message) == (kind, transient)


class FakeVault:
    """Answers rewrap batches like OpenBao: per-item errors, 400 for mixed contexts, complexity limits."""

    def __init__(self, limit=None):
        self.calls = []
        self.limit = limit

    def write(self, path, body):
        items = body["batch_input"]
        self.calls.append((path, len(items)))
        if self.limit and len(items) > self.limit:
            raise VaultModuleError("refused JSON input due to high complexity", status=400)
        if len({"context" in item for item in items}) > 1:
            raise VaultModuleError("context should be set either in all the request blocks or in none", status=400)
        results = []
        for item in items:
            if item["ciphertext"].endswith("bad"):
                results.append({"error": "cipher: message authentication failed"})
            else:
                results.append({"ciphertext": "vault:v%d:new" % item.get("key_version", 9)})
        return {"data": {"batch_results": results}}


def test_sender_contexts_key_version_and_isolated_errors():
    vault = FakeVault()
    send = d.make_sender(vault, "transit/", "k", key_version=2)
    results = send(["vault:v1:a", "vault:v1:bad", "vault:v1:c"], ["Yw==", "Yw==", "Yw=="])
    # The batch was split until each part was accepted: one error, the others rewrapped to v2.
    assert [r.get("ciphertext") or r["error"] for r in results] == [
        "vault:v2:new", "cipher: message authentication failed", "vault:v2:new"]
    assert vault.calls[0] == ("transit/rewrap/k", 3)


def test_sender_too_large_splits_through_batch_rewrapper():
    vault = FakeVault(limit=4)
    rewrap = BatchRewrapper(d.make_sender(vault, "transit", "k"), 10)
    results = rewrap(["vault:v1:x%d" % i for i in range(10)])
    assert len(results) == 10 and all(r["ciphertext"] == "vault:v9:new" for r in results)
    single = d.make_sender(FakeVault(limit=0.5), "transit", "k")
    with pytest.raises(TooLargeError):
        single(["vault:v1:x"])


def test_sender_wrong_answer_length():
    class Short(FakeVault):
        def write(self, path, body):
            return {"data": {"batch_results": []}}

    with pytest.raises(VaultModuleError, match="answered 0 results for a batch of 1"):
        d.make_sender(Short(), "transit", "k")(["vault:v1:a"])


def test_version_expression_compiles_for_both_engines():
    from sqlalchemy.dialects import mysql, postgresql

    table = sqlalchemy.Table("t", sqlalchemy.MetaData(), sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
                             sqlalchemy.Column("secret", sqlalchemy.Text))
    for dialect, parsed_url, operator in ((postgresql.dialect(), "postgresql://a@h/db", "SUBSTRING"),
                                          (mysql.dialect(), "mariadb://a@h/db", "REGEXP_REPLACE")):
        rewrapper = d.DatabaseRewrapper.__new__(d.DatabaseRewrapper)
        rewrapper.parsed = d.parse_url(parsed_url)
        rewrapper.column = table.c.secret
        sql = str(rewrapper.version_expr().compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        assert operator in sql.upper() and "CASE" in sql
        assert ("(?-i)" in sql) == (operator == "REGEXP_REPLACE")  # MariaDB's REGEXP follows the collation


def test_due_matches_the_sql_census():
    assert d._due("vault:v1:QUJD", 2) and d._due("vault:v12:QUJD", 13)
    assert not d._due("vault:v2:QUJD", 2) and not d._due("vault:v13:QUJD", 13)
    for malformed in ("VAULT:V1:QUJD", "vault:v1:", "vault:v1:QU JD", "plain", None, "vault:v1:QUJD\n", "vault:vx:QUJD"):
        assert not d._due(malformed, 5)


def test_sender_isolates_the_item_a_whole_batch_was_refused_for():
    class Strict(FakeVault):
        def write(self, path, body):
            if any(item["ciphertext"].endswith("bad") for item in body["batch_input"]):
                self.calls.append((path, len(body["batch_input"])))
                raise VaultModuleError("invalid ciphertext: unable to decrypt", status=400)
            return FakeVault.write(self, path, body)

    vault = Strict()
    results = d.make_sender(vault, "transit", "k")(["vault:v1:a", "vault:v1:b", "vault:v1:bad", "vault:v1:c"])
    assert [r.get("ciphertext") or r["error"] for r in results] == [
        "vault:v9:new", "vault:v9:new", "invalid ciphertext: unable to decrypt", "vault:v9:new"]
