"""A throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package), e.g. for OpenBao's postgresql storage."""

import glob
import os
import shutil
import subprocess
import tempfile
import time

from lab import _process
from lab.openbao import LabError


def _bin(name):
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/%s" % name))
    if not found:
        raise LabError("PostgreSQL is not installed: run 'make system-deps' (apt-get install postgresql)")
    return found[-1]


class PostgresServer:
    """initdb + postgres as the ``postgres`` user in a private directory, trust auth on loopback only."""

    def __init__(self, port=None):
        self.port = port or _process.free_port()
        self.url = "postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable" % self.port
        self.base = None
        self.proc = None

    def _as_postgres(self, argv, **kwargs):
        return subprocess.run(["runuser", "-u", "postgres", "--"] + argv, check=True, capture_output=True,
                              text=True, **kwargs)

    def start(self, timeout=30.0):
        # Outside pytest's root-only tmp: the postgres user must own and reach it.
        self.base = tempfile.mkdtemp(prefix="keyops-pg-")
        os.chmod(self.base, 0o755)
        data = os.path.join(self.base, "data")
        os.makedirs(data)
        shutil.chown(data, "postgres", "postgres")
        os.chmod(data, 0o700)
        self._as_postgres([_bin("initdb"), "-D", data, "--auth=trust", "-U", "postgres"])
        log = os.path.join(self.base, "postgres.log")
        open(log, "w").close()
        shutil.chown(log, "postgres", "postgres")
        self.proc = _process.spawn(["runuser", "-u", "postgres", "--", _bin("postgres"), "-D", data,
                                    "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                                    "-c", "unix_socket_directories=%s" % data], log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True, check=False)
            if ready.returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise LabError("PostgreSQL did not start:\n" + _process.tail(log))

    def stop(self):
        if self.proc is not None:
            _process.stop_pid(self.proc.pid, proc=self.proc)
            subprocess.run(["pkill", "-u", "postgres", "-f", self.base], check=False)
            self.proc = None
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
