"""Throwaway database servers on 127.0.0.1 for the database consumers: PostgreSQL and MariaDB.

Each server runs as its own system user (``postgres`` / ``mysql``) in a private temporary directory and
gets an application database and user with a random password (registered for the secret scan).  The
superuser is reachable only through the server's Unix socket (trust / unix-socket auth), which is how
tests create tables, triggers and less privileged users; TCP logins need the password.

``url`` is the application's URL *without* the password (what a playbook would hold); ``password`` the
secret; ``sqlalchemy_url()`` both together for the tests' own checks.
"""

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time

from lab import _process
from lab.openbao import LabError
from lab.postgres import _bin as _pg_bin

APP_DATABASE = "app"
APP_USER = "app"


def _random_password():
    # Letters and digits only: no URL quoting needed, nothing a shell could mangle.
    return "pw" + secrets.token_hex(16)


def _private_base(prefix, owner):
    """A 0755 directory (the server user must reach it) with a 0700 subdirectory owned by ``owner``."""
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)
    data = os.path.join(base, "data")
    os.makedirs(data)
    shutil.chown(data, owner, owner)
    os.chmod(data, 0o700)
    return base, data


class _DatabaseServer:
    engine = None
    scheme = None
    proc = None
    base = None

    def __init__(self, port=None):
        self.port = port or _process.free_port()
        self.password = _random_password()
        _process.register_secret("database-password", self.password)
        self.user = APP_USER
        self.database = APP_DATABASE

    @property
    def url(self):
        return "%s://%s@127.0.0.1:%d/%s" % (self.scheme, self.user, self.port, self.database)

    def sqlalchemy_url(self, user=None, password=None):
        driver = {"postgresql": "postgresql+psycopg", "mariadb": "mysql+pymysql"}[self.engine]
        return "%s://%s:%s@127.0.0.1:%d/%s" % (driver, user or self.user, password or self.password, self.port,
                                               self.database)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class PostgresDatabase(_DatabaseServer):
    """initdb (scram-sha-256 on TCP, trust on the socket) + postgres as the ``postgres`` user."""

    engine = "postgresql"
    scheme = "postgresql"

    @property
    def socket_dir(self):
        return os.path.join(self.base, "data")

    def _psql(self, sql, database="postgres"):
        subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("psql"), "-h", self.socket_dir, "-p",
                        str(self.port), "-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                       check=True, capture_output=True, text=True)

    def start(self, timeout=30.0):
        self.base, data = _private_base("keyops-pgdb-", "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("initdb"), "-D", data, "-U", "postgres",
                        "--auth-local=trust", "--auth-host=scram-sha-256"], check=True, capture_output=True, text=True)
        log = os.path.join(self.base, "postgres.log")
        open(log, "w").close()
        shutil.chown(log, "postgres", "postgres")
        self.proc = _process.spawn(["runuser", "-u", "postgres", "--", _pg_bin("postgres"), "-D", data,
                                    "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                                    "-c", "unix_socket_directories=%s" % data, "-c", "fsync=off",
                                    "-c", "synchronous_commit=off", "-c", "full_page_writes=off"], log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True, check=False)
            if ready.returncode == 0:
                break
            time.sleep(0.2)
        else:
            self.stop()
            raise LabError("PostgreSQL did not start:\n" + _process.tail(log))
        try:
            self._psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (self.user, self.password))
            self._psql("CREATE DATABASE %s OWNER %s" % (self.database, self.user))
        except subprocess.CalledProcessError as exc:
            self.stop()
            raise LabError("PostgreSQL: cannot create the app database: %s" % exc.stderr)
        return self

    def admin(self, sql):
        """Run SQL as the superuser in the app database (tests: roles, grants, triggers)."""
        self._psql(sql, database=self.database)

    def stop(self):
        if self.proc is not None:
            _process.stop_pid(self.proc.pid, proc=self.proc)
            subprocess.run(["pkill", "-u", "postgres", "-f", self.base], check=False)
            self.proc = None
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


def _mariadb_bin(names):
    for name in names:
        for folder in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                return path
    found = shutil.which(names[0])
    if not found:
        raise LabError("MariaDB is not installed: run 'make system-deps' (apt-get install mariadb-server)")
    return found


class MariaDBDatabase(_DatabaseServer):
    """mariadb-install-db + mariadbd as the ``mysql`` user; root only through the socket."""

    engine = "mariadb"
    scheme = "mariadb"

    @property
    def socket(self):
        return os.path.join(self.base, "run", "mysqld.sock")

    def start(self, timeout=60.0):
        self.base, data = _private_base("keyops-mariadb-", "mysql")
        run = os.path.join(self.base, "run")
        os.makedirs(run)
        shutil.chown(run, "mysql", "mysql")
        os.chmod(run, 0o755)
        installed = subprocess.run([_mariadb_bin(("mariadb-install-db", "mysql_install_db")), "--no-defaults",
                                    "--auth-root-authentication-method=normal", "--datadir=%s" % data,
                                    "--user=mysql", "--skip-test-db"], capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            shutil.rmtree(self.base, ignore_errors=True)
            raise LabError("mariadb-install-db failed:\n" + installed.stdout[-2000:] + installed.stderr[-2000:])
        log = os.path.join(self.base, "mariadb.log")
        self.proc = _process.spawn([_mariadb_bin(("mariadbd", "mysqld")), "--no-defaults", "--datadir=%s" % data,
                                    "--socket=%s" % self.socket, "--port=%d" % self.port,
                                    "--bind-address=127.0.0.1", "--user=mysql", "--skip-name-resolve",
                                    "--pid-file=%s" % os.path.join(run, "mysqld.pid"),
                                    "--innodb-flush-log-at-trx-commit=2", "--max-connections=200"], log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.admin("SELECT 1", database=None)
                break
            except Exception:  # pylint: disable=broad-except  # not accepting connections yet
                time.sleep(0.2)
        else:
            self.stop()
            raise LabError("MariaDB did not start:\n" + _process.tail(log))
        if self.proc.poll() is not None:
            self.stop()
            raise LabError("MariaDB exited:\n" + _process.tail(log))
        for sql in ("CREATE DATABASE %s" % self.database,
                    "CREATE USER '%s'@'%%' IDENTIFIED BY '%s'" % (self.user, self.password),
                    "GRANT ALL PRIVILEGES ON %s.* TO '%s'@'%%'" % (self.database, self.user)):
            self.admin(sql, database=None)
        return self

    def admin(self, sql, database=APP_DATABASE):
        """Run SQL as root over the socket (tests: users, grants, triggers)."""
        import pymysql

        connection = pymysql.connect(unix_socket=self.socket, user="root", database=database, autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def stop(self):
        if self.proc is not None:
            _process.stop_pid(self.proc.pid, timeout=20.0, proc=self.proc)
            self.proc = None
        if self.base:
            for pid_file in glob.glob(os.path.join(self.base, "run", "*.pid")):
                try:
                    with open(pid_file) as handle:
                        _process.stop_pid(int(handle.read().strip()))
                except (OSError, ValueError):
                    pass
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


SERVERS = {"postgres": PostgresDatabase, "mariadb": MariaDBDatabase}


def start_detached(component):
    """Start one server for ``python -m lab up``: it keeps running after the command exits."""
    server = SERVERS[component]().start()
    entry = {"pid": server.proc.pid, "address": "127.0.0.1:%d" % server.port, "url": server.url,
             "password": server.password, "base": server.base, "engine": server.engine}
    server.proc = None  # detach: 'down' stops it through stop_detached
    return entry


def stop_detached(entry):
    """Stop a server start_detached started (from the lab state) and remove its directory."""
    _process.stop_pid(entry["pid"], timeout=20.0)
    base = entry.get("base")
    if base and os.path.isdir(base):
        if entry.get("engine") == "postgresql":
            subprocess.run(["pkill", "-u", "postgres", "-f", base], check=False)
        for pid_file in glob.glob(os.path.join(base, "run", "*.pid")):
            try:
                with open(pid_file) as handle:
                    _process.stop_pid(int(handle.read().strip()), timeout=20.0)
            except (OSError, ValueError):
                pass
        shutil.rmtree(base, ignore_errors=True)


def alive(entry):
    return _process.pid_alive(entry["pid"])
