# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rewrap transit ciphertexts held in a database column (PostgreSQL, MariaDB/MySQL) while applications write.

Private to the collection.  The first half is pure decisions (identifiers, URLs, census, ranges, batches,
error classification), unit-tested without a server; :class:`DatabaseRewrapper` is the thin I/O half over
SQLAlchemy Core.

Why it is safe with a live application:

* the census is computed in SQL (GROUP BY over the version extracted from ``vault:v<N>:``), never by
  moving the table;
* rows are read in keyset-paginated batches (``pk > :last ... ORDER BY pk LIMIT n``), rewrapped through
  Vault outside any transaction, and written with compare-and-swap (``... WHERE pk = :pk AND col = :old``)
  in one short transaction per batch: a value the application wrote meanwhile is never overwritten (the
  CAS misses; the row is counted as a conflict and read again in a later pass);
* nothing is kept outside the table, so a run killed anywhere is resumed by running it again: committed
  batches are at the target version and no longer selected, an uncommitted one was rolled back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from concurrent.futures import ThreadPoolExecutor

try:
    from urllib.parse import quote, unquote, urlsplit, parse_qsl
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    raise

from ansible_collections.keyops.lifecycle.plugins.module_utils._consumers import MASK, masked_url
from ansible_collections.keyops.lifecycle.plugins.module_utils._errors import KeyopsModuleError
from ansible_collections.keyops.lifecycle.plugins.module_utils._retry import Retry, with_retries
from ansible_collections.keyops.lifecycle.plugins.module_utils import _rewrap
from ansible_collections.keyops.lifecycle.plugins.module_utils._rewrap import (
    MAX_SAFE_BATCH, NOT_A_CIPHERTEXT, BatchRewrapper, _new_version, make_sender)

try:
    import sqlalchemy
    from sqlalchemy import Integer, MetaData, Table, bindparam, case, cast, func, select, text, update
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.engine import URL
    from sqlalchemy.sql.elements import quoted_name
except ImportError as _import_error:  # pragma: no cover - exercised by the sanity import test
    SQLALCHEMY_IMPORT_ERROR = _import_error
else:
    SQLALCHEMY_IMPORT_ERROR = None

MAX_REPORTED = 20
# Unquoted SQL identifiers both engines accept; anything else is refused rather than quoted creatively.
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# A full transit ciphertext; the version is capped at 9 digits so the SQL cast cannot overflow.
CIPHERTEXT_PATTERN = r"^vault:v[0-9]{1,9}:[A-Za-z0-9+/=]+$"
VERSION_PATTERN = r"^vault:v([0-9]{1,9}):.*$"
CIPHERTEXT_GROUP_PATTERN = r"^vault:v([0-9]{1,9}):[A-Za-z0-9+/=]+$"
MALFORMED = -1

# scheme -> (SQLAlchemy driver, dialect family, password environment variable we read ourselves).
# libpq reads PGPASSWORD / PGPASSFILE by itself, so PostgreSQL needs none from us.
SCHEMES = {
    "postgresql": ("postgresql+psycopg", "postgresql", None),
    "postgres": ("postgresql+psycopg", "postgresql", None),
    "postgresql+psycopg": ("postgresql+psycopg", "postgresql", None),
    "mysql": ("mysql+pymysql", "mysql", "MYSQL_PWD"),
    "mariadb": ("mysql+pymysql", "mysql", "MYSQL_PWD"),
    "mysql+pymysql": ("mysql+pymysql", "mysql", "MYSQL_PWD"),
    "mariadb+pymysql": ("mysql+pymysql", "mysql", "MYSQL_PWD"),
}
# Characters and sequences refused in `where`: it is trusted operator SQL, but one expression, not a script.
WHERE_FORBIDDEN = (";", "--", "/*", "*/", "#")


class DatabaseModuleError(KeyopsModuleError):
    """A database failure explained for the operator (never a password or a stored value)."""


# -- pure decisions ---------------------------------------------------------------------------------------

def validate_identifier(value, option):
    if not isinstance(value, str) or not IDENTIFIER_RE.match(value):
        raise DatabaseModuleError("`%s` must be a plain SQL identifier (letters, digits, _ and $, not starting "
                                  "with a digit, at most 63 characters); got %r" % (option, value))
    return value


def split_table(value):
    """``table`` or ``schema.table`` -> (schema or None, table), each validated."""
    if not isinstance(value, str) or not value:
        raise DatabaseModuleError("`table` must be a table name or schema.table")
    parts = value.split(".")
    if len(parts) > 2:
        raise DatabaseModuleError("`table` must be a table name or schema.table; got %r" % value)
    if len(parts) == 2:
        return validate_identifier(parts[0], "table (schema part)"), validate_identifier(parts[1], "table")
    return None, validate_identifier(parts[0], "table")


class DatabaseURL:
    """The parts of a database URL; ``masked`` is the only form that may be shown."""

    def __init__(self, scheme, driver, dialect, username, password, host, port, database, query, password_env):
        self.scheme, self.driver, self.dialect = scheme, driver, dialect
        self.username, self.password, self.host, self.port = username, password, host, port
        self.database, self.query, self.password_env = database, query, password_env

    @property
    def masked(self):
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="") + (":" + MASK if self.password else "") + "@"
        host = self.host or ""
        if ":" in host:
            host = "[%s]" % host
        port = ":%d" % self.port if self.port else ""
        query = "&".join("%s=%s" % (quote(k, safe=""), quote(v, safe="")) for k, v in self.query)
        return "%s://%s%s%s/%s%s" % (self.scheme, auth, host, port, self.database or "", "?" + query if query else "")


def parse_url(url):
    """Parse and check a database URL; errors show the URL with any password masked."""
    if not isinstance(url, str) or "://" not in url:
        raise DatabaseModuleError("`database_url` must look like postgresql://user@host:5432/dbname or "
                                  "mariadb://user@host:3306/dbname")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DatabaseModuleError("`database_url` %s is not a valid URL (%s)" % (mask_url(url), exc))
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise DatabaseModuleError("`database_url` %s: unknown scheme %r; use one of postgresql://, postgres:// (PostgreSQL) "
                                  "or mysql://, mariadb:// (MariaDB/MySQL)" % (mask_url(url), parts.scheme))
    driver, dialect, password_env = SCHEMES[scheme]
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise DatabaseModuleError("`database_url` %s names no database: add /dbname after the host" % mask_url(url))
    if not parts.hostname:
        raise DatabaseModuleError("`database_url` %s names no host" % mask_url(url))
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return DatabaseURL(scheme, driver, dialect, username, password or None, parts.hostname, port, database,
                       parse_qsl(parts.query, keep_blank_values=True), password_env)


def url_secrets(url):
    """Every form in which a password may appear in ``database_url`` (raw and decoded), for no_log_values."""
    found = set()
    if not isinstance(url, str):
        return found
    match = re.match(r"^[^:/]+://([^@/]*)@", url)
    if match and ":" in match.group(1):
        raw = match.group(1).split(":", 1)[1]
        if raw:
            found.update((raw, unquote(raw)))
    return found


mask_url = masked_url  # one masking rule for ids, reports and messages (_consumers.py)


def validate_where(where):
    """Trusted operator SQL, but a single boolean expression: no statement separator, no comments."""
    if where is None:
        return None
    if not isinstance(where, str) or not where.strip():
        raise DatabaseModuleError("`where` must be a non-empty SQL boolean expression, e.g. deleted_at IS NULL")
    for forbidden in WHERE_FORBIDDEN:
        if forbidden in where:
            raise DatabaseModuleError("`where` may not contain %r: give one SQL boolean expression (no statement "
                                      "separators, no comments)" % forbidden)
    return where


def where_text(where):
    """The text() source of ``where``: colons escaped, or SQLAlchemy would take ``12:30`` for a bind parameter."""
    return "(%s)" % where.replace(":", "\\:")


def check_batch_size(batch_size):
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_SAFE_BATCH:
        raise DatabaseModuleError("batch_size must be between 1 and %d (got %s): OpenBao refuses larger JSON bodies "
                                  "by default" % (MAX_SAFE_BATCH, batch_size))
    return batch_size


def census_from_rows(rows):
    """[(version or None or MALFORMED, count)] from the GROUP BY -> (census {"v": n}, null, malformed)."""
    census, null, malformed = {}, 0, 0
    for version, count in rows:
        count = int(count)
        if version is None:
            null += count
        elif int(version) < 1:
            malformed += count
        else:
            census[str(int(version))] = census.get(str(int(version)), 0) + count
    return dict(sorted(census.items(), key=lambda item: int(item[0]))), null, malformed


def oldest_version(census):
    return min((int(version) for version, count in census.items() if count), default=None)


def due_count(census, target):
    return sum(count for version, count in census.items() if int(version) < target)


def range_positions(total, parts):
    """1-based row numbers (in key order) of the last row of each of the first ``parts - 1`` ranges."""
    if parts < 1:
        raise DatabaseModuleError("plan_ranges must be 1 or more (got %s)" % parts)
    return sorted(set(max(1, (total * k) // parts) for k in range(1, parts) if total))


def ranges_from_boundaries(boundaries, parts, after=None, up_to=None):
    """``parts`` ranges ``{after (exclusive), up_to (inclusive)}`` that cover (after, up_to] exactly.

    ``boundaries`` are the keys ending the first ranges, ascending.  With fewer rows than ranges the last
    boundary is repeated: those ranges are empty (``after == up_to``) but still listed, so host *i* of *N*
    can always take range *i*.  With no key at all to pin them to (an empty, open table) there is one range.
    """
    boundaries = list(boundaries)
    if not boundaries:
        if parts == 1 or after is None:
            return [{"after": after, "up_to": up_to}]
        boundaries = [after]
    while len(boundaries) < parts - 1:
        boundaries.append(boundaries[-1])
    edges = [after] + boundaries[:parts - 1] + [up_to]
    return [{"after": edges[i], "up_to": edges[i + 1]} for i in range(parts)]


def check_key_range(key_range):
    if key_range is None:
        return None, None
    if not isinstance(key_range, dict) or set(key_range) - {"after", "up_to"}:
        raise DatabaseModuleError("primary_key_range must be a dictionary with `after` (exclusive) and/or "
                                  "`up_to` (inclusive); null means an open end")
    return key_range.get("after"), key_range.get("up_to")


def coerce_key(value, python_type):
    """A range bound as the key column's type: templating turns integers into strings."""
    if value is None or python_type is not int or isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise DatabaseModuleError("primary_key_range bound %r is not an integer, but the primary key is" % (value,))


def json_key(value):
    """A primary key value as results carry it (JSON)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def encode_context(value, encoding, column="context_column"):
    """The base64 context Vault takes, from the column's value; None for a missing (NULL or empty) context."""
    if value is None or (hasattr(value, "__len__") and not len(value)):
        return None
    return _rewrap.encode_context(value, column, encoding)


# (dialect, code) -> what went wrong; codes are PostgreSQL SQLSTATEs and MySQL error numbers.
_EXPLAIN = {
    ("postgresql", "28P01"): "auth", ("postgresql", "28000"): "auth", ("postgresql", "3D000"): "database",
    ("postgresql", "42P01"): "table", ("postgresql", "3F000"): "table", ("postgresql", "42703"): "column",
    ("postgresql", "42501"): "permission", ("postgresql", "42601"): "syntax", ("postgresql", "42883"): "syntax",
    ("postgresql", "42804"): "syntax", ("postgresql", "22P02"): "syntax",
    ("mysql", 1045): "auth", ("mysql", 1044): "database", ("mysql", 1049): "database", ("mysql", 1146): "table",
    ("mysql", 1054): "column", ("mysql", 1142): "permission", ("mysql", 1143): "permission",
    ("mysql", 1064): "syntax", ("mysql", 1139): "syntax",
    ("postgresql", "40001"): "busy", ("postgresql", "40P01"): "busy", ("postgresql", "55P03"): "busy",
    ("mysql", 1205): "busy", ("mysql", 1213): "busy",
}
# Transient: the same statement may simply be sent again (reads, and CAS writes, which are idempotent).
_TRANSIENT = {
    ("postgresql", "40001"), ("postgresql", "40P01"), ("postgresql", "57P01"), ("postgresql", "57P03"),
    ("postgresql", "53300"), ("postgresql", "08000"), ("postgresql", "08001"), ("postgresql", "08003"),
    ("postgresql", "08006"), ("postgresql", "55P03"),
    ("mysql", 1205), ("mysql", 1213), ("mysql", 2002), ("mysql", 2003), ("mysql", 2006), ("mysql", 2013),
    ("mysql", 1040), ("mysql", 1927), ("mysql", 4031),
}
_TRANSIENT_TEXT = ("connection refused", "server closed the connection", "connection reset", "timeout expired",
                   "timed out", "could not connect", "lost connection", "gone away", "terminating connection",
                   "the database system is starting up", "the database system is shutting down")


def classify(dialect, code, message):
    """(kind, transient) of a driver error: auth/database/table/column/permission/syntax/busy/connect/other."""
    text_lower = (message or "").lower()
    kind = _EXPLAIN.get((dialect, code))
    if kind is None:
        if "password authentication failed" in text_lower or "access denied for user" in text_lower:
            kind = "auth"
        elif "does not exist" in text_lower and "database" in text_lower:
            kind = "database"
        elif any(marker in text_lower for marker in _TRANSIENT_TEXT) or (dialect, code) in _TRANSIENT:
            kind = "connect"
        else:
            kind = "other"
    transient = (dialect, code) in _TRANSIENT or (kind == "connect")
    return kind, transient and kind not in ("auth", "database", "permission")


# -- I/O ------------------------------------------------------------------------------------------------

def _driver_error(exc, dialect):
    """(code, message) of a SQLAlchemy DBAPIError's driver exception; never the statement or parameters."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlstate", None)
    if dialect == "mysql":
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        message = str(args[1]) if len(args) > 1 else str(orig)
    else:
        message = str(orig)
    message = " ".join(message.split())
    return code, message[:500]


_CIPHERTEXT_RE = re.compile(CIPHERTEXT_PATTERN)


def _due(value, target):
    """Is this stored value a ciphertext below ``target``?  (The same test as the SQL census.)"""
    if not isinstance(value, str) or not _CIPHERTEXT_RE.fullmatch(value):
        return False
    return int(value[7:value.index(":", 7)]) < target


class _Counters:
    def __init__(self):
        self.rewrapped = self.conflicts = self.passes = 0
        self.errors = {}  # primary key -> message (every failing row once, however many passes)

    def error(self, key, message):
        self.errors.setdefault(json_key(key), message)


class DatabaseRewrapper:
    """Census, plan and rewrap of one column through one Vault connection (the module's I/O half)."""

    def __init__(self, vault, url, password=None, timeout=30, retries=3, environ=None, sleep=None):
        if SQLALCHEMY_IMPORT_ERROR is not None:
            raise DatabaseModuleError("database_rewrap needs SQLAlchemy, psycopg and PyMySQL on the host the module "
                                      "runs on (pip install 'SQLAlchemy>=2' 'psycopg[binary]' PyMySQL): %s"
                                      % SQLALCHEMY_IMPORT_ERROR)
        self.vault = vault
        self.parsed = parse_url(url)
        self.masked_url = self.parsed.masked
        self.retries = retries if retries is not None else 3
        self._sleep = sleep
        environ = environ if environ is not None else {}
        secret = password or self.parsed.password
        if not secret and self.parsed.password_env:
            secret = environ.get(self.parsed.password_env) or None
        connect_args = {"connect_timeout": int(timeout or 30)}
        if self.parsed.dialect == "mysql":
            connect_args.update(read_timeout=max(60, int(timeout or 30) * 4), write_timeout=max(60, int(timeout or 30) * 4))
        self.url = URL.create(self.parsed.driver, username=self.parsed.username, password=secret,
                              host=self.parsed.host, port=self.parsed.port, database=self.parsed.database,
                              query=dict(self.parsed.query))
        try:
            # hide_parameters: SQLAlchemy's error texts never carry the values of a statement.
            self.engine = sqlalchemy.create_engine(self.url, hide_parameters=True,
                                                   connect_args=connect_args)
        except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as exc:
            raise DatabaseModuleError("cannot use `database_url` %s: %s" % (self.masked_url, exc))
        self.table = self.key = self.column = self.context = None
        self._pg_cas = None
        self.where = None

    # -- plumbing -------------------------------------------------------------------------------

    def _explain(self, exc, doing):
        code, message = _driver_error(exc, self.parsed.dialect)
        kind, _transient = classify(self.parsed.dialect, code, message)
        where = "%s (%s)" % (self.masked_url, doing)
        user = self.parsed.username or "(default user)"
        if kind == "auth":
            return ("the database at %s rejected the credentials of user %r: check the `database_password` option, the "
                    "password in `database_url`, %s: %s" % (
                        where, user, "PGPASSWORD/PGPASSFILE" if self.parsed.dialect == "postgresql" else "MYSQL_PWD",
                        message))
        if kind == "database":
            return "database %r does not exist on %s, or the user may not use it: %s" % (
                self.parsed.database, where, message)
        if kind == "table":
            return "table %r does not exist in %s, or the user cannot see it: %s" % (self._table_name(), where, message)
        if kind == "column":
            return "a column is missing in table %r on %s: %s" % (self._table_name(), where, message)
        if kind == "permission":
            return ("permission denied on %s: user %r needs SELECT and UPDATE on table %r (e.g. GRANT SELECT, UPDATE "
                    "ON %s TO %s): %s" % (where, user, self._table_name(), self._table_name(), user, message))
        if kind == "syntax" and self.where is not None:
            return "the database refused the statement on %s; check `where` (trusted operator SQL): %s" % (
                where, message)
        if kind == "connect":
            return "cannot reach the database at %s: %s" % (where, message)
        if kind == "busy":
            return ("the database at %s kept refusing the statement (deadlock / lock timeout / serialization) after "
                    "retries; re-run, nothing was lost: %s" % (where, message))
        return "database error on %s: %s" % (where, message)

    def _table_name(self):
        return getattr(self, "_table_label", None) or "?"

    def _run(self, doing, attempt):
        """``attempt(connection)`` in one transaction; transient failures retried, others explained."""

        def once():
            try:
                with self.engine.begin() as connection:
                    return attempt(connection)
            except sqlalchemy.exc.DBAPIError as exc:
                code, message = _driver_error(exc, self.parsed.dialect)
                error = DatabaseModuleError(self._explain(exc, doing))
                if classify(self.parsed.dialect, code, message)[1] or exc.connection_invalidated:
                    raise Retry(error)
                raise error
            except sqlalchemy.exc.NoSuchTableError:
                raise
            except sqlalchemy.exc.SQLAlchemyError as exc:
                raise DatabaseModuleError("database error on %s (%s): %s"
                                          % (self.masked_url, doing, exc.__class__.__name__))

        kwargs = {"sleep": self._sleep} if self._sleep else {}
        return with_retries(once, self.retries, **kwargs)

    def close(self):
        self.engine.dispose()

    # -- table --------------------------------------------------------------------------------

    def open_table(self, table, column, primary_key, context_column=None, where=None):
        schema, name = split_table(table)
        self._table_label = table
        names = [validate_identifier(column, "column"), validate_identifier(primary_key, "primary_key")]
        if context_column is not None:
            names.append(validate_identifier(context_column, "context_column"))
        self.where = validate_where(where)

        def reflect(connection):
            return Table(quoted_name(name, None), MetaData(), schema=schema, autoload_with=connection)

        try:
            reflected = self._run("reading the definition of table %s" % table, reflect)
        except DatabaseModuleError:
            raise
        except sqlalchemy.exc.NoSuchTableError:
            raise DatabaseModuleError("table %r does not exist in database %r on %s, or the user cannot see it"
                                      % (table, self.parsed.database, self.masked_url))
        columns = dict((c.name, c) for c in reflected.columns)
        for option, wanted in zip(("column", "primary_key", "context_column"), names):
            if wanted not in columns:
                raise DatabaseModuleError("table %r has no column %r (option `%s`); it has: %s"
                                          % (table, wanted, option, ", ".join(sorted(columns))))
        if not self._unique(reflected, primary_key):
            raise DatabaseModuleError("`primary_key` %r is not the primary key or a unique column of table %r: "
                                      "batches are paged by it, so it must be unique" % (primary_key, table))
        self.table = reflected
        self.column = columns[column]
        self.key = columns[primary_key]
        self.context = columns[context_column] if context_column else None
        try:
            self.key_type = self.key.type.python_type
        except NotImplementedError:
            self.key_type = None
        return self

    @staticmethod
    def _unique(table, name):
        if [c.name for c in table.primary_key.columns] == [name]:
            return True
        for index in table.indexes:
            if index.unique and [c.name for c in index.columns] == [name]:
                return True
        for constraint in table.constraints:
            if isinstance(constraint, sqlalchemy.UniqueConstraint) and [c.name for c in constraint.columns] == [name]:
                return True
        return False

    # -- SQL pieces ---------------------------------------------------------------------------------

    def _patterns(self):
        # MariaDB's REGEXP follows the column's collation (case-insensitive by default): force case.
        flag = "(?-i)" if self.parsed.dialect == "mysql" else ""
        return flag + CIPHERTEXT_PATTERN, flag + VERSION_PATTERN

    def version_expr(self):
        """SQL: NULL for NULL, -1 for a value that is not a ciphertext, else the key version."""
        full, version = self._patterns()
        col = self.column
        if self.parsed.dialect == "postgresql":
            # One regular expression per row: substring() returns the captured version, or NULL on no match.
            extracted = cast(func.substring(col, CIPHERTEXT_GROUP_PATTERN), Integer)
            return case((col.is_(None), None), else_=func.coalesce(extracted, MALFORMED))
        return case((col.is_(None), None),
                    (col.regexp_match(full), cast(col.regexp_replace(version, "\\1"), Integer)),
                    else_=MALFORMED)

    def _filters(self, after=None, up_to=None):
        clauses = []
        if after is not None:
            clauses.append(self.key > coerce_key(after, self.key_type))
        if up_to is not None:
            clauses.append(self.key <= coerce_key(up_to, self.key_type))
        if self.where is not None:
            clauses.append(text(where_text(self.where)))
        return clauses

    # -- reads ------------------------------------------------------------------------------------

    def census(self, after=None, up_to=None):
        """(census, null, malformed) of the range, computed by the server."""
        inner = select(self.version_expr().label("v")).where(*self._filters(after, up_to)).subquery()
        query = select(inner.c.v, func.count()).group_by(inner.c.v)
        rows = self._run("census of %s.%s" % (self._table_label, self.column.name),
                         lambda connection: connection.execute(query).fetchall())
        return census_from_rows(rows)

    def malformed_rows(self, after=None, up_to=None, limit=MAX_REPORTED):
        query = (select(self.key).where(self.version_expr() == MALFORMED, *self._filters(after, up_to))
                 .order_by(self.key).limit(limit))
        rows = self._run("listing malformed values", lambda connection: connection.execute(query).fetchall())
        return [{"primary_key": json_key(row[0]), "error": NOT_A_CIPHERTEXT} for row in rows]

    def plan_ranges(self, parts, after=None, up_to=None):
        """``parts`` key ranges of about equal row counts covering (after, up_to], from the keys in SQL."""
        if not isinstance(parts, int) or parts < 1:
            raise DatabaseModuleError("plan_ranges must be 1 or more (got %s)" % (parts,))
        range_filters = self._filters(after, up_to)
        if self.where is not None:
            range_filters = range_filters[:-1]  # the ranges split the table, whatever `where` selects

        def boundaries(connection):
            total = connection.execute(select(func.count()).select_from(self.table).where(*range_filters)).scalar()
            positions = range_positions(int(total or 0), parts)
            if not positions:
                return []
            numbered = select(self.key.label("k"), func.row_number().over(order_by=self.key).label("n")) \
                .where(*range_filters).subquery()
            query = select(numbered.c.k).where(numbered.c.n.in_(positions)).order_by(numbered.c.k)
            return [row[0] for row in connection.execute(query)]

        keys = self._run("planning primary key ranges", boundaries)
        return ranges_from_boundaries([json_key(k) for k in keys], parts, json_key(after), json_key(up_to))

    # -- rewrap -------------------------------------------------------------------------------------

    def rewrap(self, target, send, batch_size, max_passes=3, after=None, up_to=None, derived=False,
               context_encoding="base64"):
        """Passes of keyset-paginated batches; rows below ``target`` are rewrapped; returns the counters.

        Pages are ``pk > :last [AND where] [AND range] ORDER BY pk LIMIT n`` - an index range scan whatever the
        table holds - and the version is checked here, on the page: a version filter in SQL would make the
        planner scan and sort the whole table for every page.  One batch is at Vault while the previous one
        is written and the next one read (one thread talks to Vault, this one to the database), so the two
        round trips overlap; each batch is still written in its own transaction.
        """
        counters = _Counters()
        rewrapper = BatchRewrapper(send, batch_size)
        cas = self._compare_and_swap
        with ThreadPoolExecutor(max_workers=1) as vault_thread:
            for _pass in range(max_passes):
                counters.passes += 1
                conflicts_before = counters.conflicts
                in_flight = None
                for due in self._pages(target, batch_size, after, up_to):
                    keys, items = self._prepare(due, counters, derived, context_encoding)
                    if not items:
                        continue
                    contexts = [context for _old, context in items] if derived else None
                    future = vault_thread.submit(rewrapper, [old for old, _context in items], contexts)
                    if in_flight is not None:
                        self._write(in_flight, target, cas, counters)
                    in_flight = (keys, items, future)
                if in_flight is not None:
                    self._write(in_flight, target, cas, counters)
                if counters.conflicts == conflicts_before:
                    break  # nothing changed under us: another pass would find only what failed
        return counters

    def _compare_and_swap(self, connection, updates):
        """Write a batch, each row only if it still holds the value we read; returns the rows written.

        PostgreSQL: one ``UPDATE ... FROM unnest(:keys, :olds, :news)`` per batch (one statement with three
        array parameters, one round trip - faster than a pipelined statement per row).  MySQL/MariaDB: ``executemany`` of the per-row
        UPDATE (MariaDB's table value constructors cannot name their columns).  Same semantics either way:
        ``SET col = new WHERE pk = key AND col = old``.
        """
        if self.parsed.dialect == "postgresql":
            if self._pg_cas is None:  # built once: the statement is compiled (and cached) once per run
                batch = func.unnest(bindparam("b_keys", type_=postgresql.ARRAY(self.key.type)),
                                    bindparam("b_olds", type_=postgresql.ARRAY(self.column.type)),
                                    bindparam("b_news", type_=postgresql.ARRAY(self.column.type))) \
                    .table_valued("b_key", "b_old", "b_new").render_derived(name="keyops_batch")
                self._pg_cas = (update(self.table).where(self.key == batch.c.b_key, self.column == batch.c.b_old)
                                .values({self.column.name: batch.c.b_new}))
            return connection.execute(self._pg_cas, {
                "b_keys": [row["b_key"] for row in updates], "b_olds": [row["b_old"] for row in updates],
                "b_news": [row["b_new"] for row in updates]}).rowcount
        statement = (update(self.table).where(self.key == bindparam("b_key"), self.column == bindparam("b_old"))
                     .values({self.column.name: bindparam("b_new")}))
        return connection.execute(statement, updates).rowcount

    def _pages(self, target, batch_size, after, up_to):
        """The rows below ``target`` of each page, in key order (a page may hold none)."""
        columns = [self.key, self.column] + ([self.context] if self.context is not None else [])
        last = None
        while True:
            filters = [self.column.isnot(None)] + self._filters(after, up_to)
            if last is not None:
                filters.append(self.key > last)
            query = select(*columns).where(*filters).order_by(self.key).limit(batch_size)
            rows = self._run("reading a batch", lambda connection, q=query: connection.execute(q).fetchall())
            if not rows:
                return
            last = rows[-1][0]
            yield [row for row in rows if _due(row[1], target)]
            if len(rows) < batch_size:
                return

    def _prepare(self, rows, counters, derived, context_encoding):
        """(keys, [(ciphertext, context)]) of the rows that can be sent; the others get their error."""
        items, keys = [], []
        for row in rows:
            key, old = row[0], row[1]
            context = None
            if self.context is not None:
                try:
                    context = encode_context(row[2], context_encoding, self.context.name)
                except ValueError as exc:
                    counters.error(key, str(exc))
                    continue
            if derived and context is None:
                counters.error(key, "context_column %r is NULL or empty: a derived key needs the row's context"
                               % self.context.name)
                continue
            items.append((old, context))
            keys.append(key)
        return keys, items

    def _write(self, in_flight, target, cas, counters):
        keys, items, future = in_flight
        results = future.result()
        updates = []
        for key, (old, _context), result in zip(keys, items, results):
            new = result.get("ciphertext") if isinstance(result, dict) else None
            got = _new_version(new)
            if got is None:
                counters.error(key, str((result or {}).get("error") or "no ciphertext returned"))
                continue
            if got < target:
                counters.error(key, "Vault returned version %d below the target %d" % (got, target))
                continue
            updates.append({"b_key": key, "b_old": old, "b_new": new})
        if not updates:
            return
        # One short transaction per batch; the CAS keeps whatever the application wrote meanwhile.
        written = self._run("writing a batch (compare-and-swap UPDATE)", lambda connection: cas(connection, updates))
        written = len(updates) if written is None or written < 0 else min(written, len(updates))
        counters.rewrapped += written
        counters.conflicts += len(updates) - written


def read_key(vault, mount, name):
    """(latest version, derived) of a transit key; a clear error when it does not exist."""
    data = vault.read("%s/keys/%s" % (mount.strip("/"), name))
    if not data:
        raise DatabaseModuleError("transit key %r does not exist in mount %r" % (name, mount))
    return int(data["latest_version"]), bool(data.get("derived"))


def run(vault, params, check_mode, environ, no_log_values=None):
    """Everything database_rewrap does; returns the result dict or raises DatabaseModuleError."""
    check_batch_size(params["batch_size"])
    if params["max_passes"] is None or params["max_passes"] < 1:
        raise DatabaseModuleError("max_passes must be 1 or more (got %s)" % params["max_passes"])
    after, up_to = check_key_range(params.get("primary_key_range"))
    if params.get("context_encoding") not in ("base64", "text"):
        raise DatabaseModuleError("context_encoding must be base64 or text")
    database = DatabaseRewrapper(vault, params["database_url"], params.get("database_password"), params.get("timeout"),
                                 params.get("retries"), environ)
    if no_log_values is not None:
        for name in ("MYSQL_PWD", "PGPASSWORD"):
            if environ.get(name):
                no_log_values.add(environ[name])
    result = dict(database_url=database.masked_url, changed=False)
    try:
        database.open_table(params["table"], params["column"], params["primary_key"], params.get("context_column"),
                            params.get("where"))
        if params.get("plan_ranges") is not None:
            result["primary_key_ranges"] = database.plan_ranges(params["plan_ranges"], after, up_to)
            return result
        latest, derived = read_key(vault, params["mount"], params["name"])
        target = params.get("key_version") or latest
        if not 1 <= target <= latest:
            raise DatabaseModuleError("key_version %d is not a version of key %r (latest is %d)"
                                      % (target, params["name"], latest))
        if derived and not params.get("context_column"):
            raise DatabaseModuleError("transit key %r is derived (per-row context): set `context_column` to the "
                                      "column holding each row's context; nothing was written" % params["name"])
        result["target_version"] = target
        census_before, null_before, malformed_before = database.census(after, up_to)
        null, malformed = null_before, malformed_before
        result.update(census_before=census_before)
        counters = None
        if check_mode:
            census_after = census_before
            rewrapped = due_count(census_before, target)
            result.update(passes=0, conflicts=0)
        else:
            send = make_sender(vault, params["mount"], params["name"], params.get("key_version"))
            counters = database.rewrap(target, send, params["batch_size"], params["max_passes"], after, up_to,
                                       derived, params.get("context_encoding") or "base64")
            rewrapped = counters.rewrapped
            census_after, null, malformed = database.census(after, up_to)
            result.update(passes=counters.passes, conflicts=counters.conflicts)
        malformed_rows = database.malformed_rows(after, up_to) if malformed else []
        errors = [] if counters is None else [{"primary_key": k, "error": v} for k, v in counters.errors.items()]
        result.update(census_after=census_after, rewrapped=rewrapped, changed=rewrapped > 0, null=null,
                      malformed={"count": malformed, "rows": malformed_rows},
                      errors=errors[:MAX_REPORTED], error_count=len(errors),
                      oldest_version_in_use=oldest_version(census_after),
                      diff={"before": {"census": census_before, "null": null_before, "malformed": malformed_before},
                            "after": {"census": census_after, "null": null, "malformed": malformed}})
        problems = []
        if malformed and params.get("fail_on_malformed", True):
            problems.append("%d value(s) in %s.%s are not transit ciphertexts, first at primary key %r"
                            % (malformed, params["table"], params["column"], malformed_rows[0]["primary_key"]
                               if malformed_rows else None))
        if errors:
            problems.append("Vault could not rewrap %d row(s), first at primary key %r (%s)"
                            % (len(errors), errors[0]["primary_key"], errors[0]["error"]))
        if problems:
            details = dict(result)
            details.pop("diff", None)
            raise DatabaseModuleError("; ".join(problems) + "; %d row(s) were rewrapped, the rest was left as it was"
                                      % rewrapped, **details)
        return result
    finally:
        database.close()
