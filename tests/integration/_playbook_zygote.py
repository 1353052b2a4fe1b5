"""A process that has imported ansible-playbook once and forks a fresh run of it for every request (tests only).

Started by ``_ansible.py`` (argv: the socket's path and the test process's pid) under the Python that runs
ansible-playbook, with the start-up environment and working directory its runs will have (ansible-core reads its
configuration at import).  What it prints while importing (ansible-core's configuration warnings) goes to its
log, which the client puts in front of every run's stderr, where a fresh process would have printed it.

Each request (one connection on the socket: the run's argv, environment and working directory, with its stdin,
stdout and stderr as file descriptors) is served by a forked monitor that forks the run in a session of its own,
sends back the run's pid, waits for it and sends back its exit code as ``Popen.returncode`` has it.  The run is
what the ``ansible-playbook`` console script would do; only the imports were done once (what that saves:
benchmarks/README.md, "make test: where the time goes").

The client half (``zygote_for``, used by ``_ansible.py``) keeps the zygotes of a test process, one per start-up
environment.  Besides ansible-core and the preloaded libraries, standard library only: it runs in the
compatibility venvs too.
"""

import atexit
import collections
import json
import locale
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# Libraries every task of the collection's Vault modules imports in its worker: imported here, the forked
# workers find them loaded.
PRELOAD = ("hvac", "requests")


def _receive(conn):
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    (size,) = struct.unpack("!I", data[:4])
    data = data[4:]
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise EOFError("request cut short")
        data += more
    return json.loads(data.decode("utf-8")), fds


def _exit_code(run):
    try:
        code = run()
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # pylint: disable=broad-except  # what the interpreter prints for an uncaught exception
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write("%s\n" % code)
        code = 1
    return code


def _own_process_state():
    """What ansible-core makes per process at import, made again for this run as a process started afresh would
    have it: the local temporary directory (``ansible-local-<pid>...``, removed at exit; the zygote's is left
    alone) and the random part of the unique ids it gives tasks and hosts."""
    import random  # pylint: disable=import-outside-toplevel

    import ansible.constants as C  # pylint: disable=import-outside-toplevel
    import ansible.utils.vars as ansible_vars  # pylint: disable=import-outside-toplevel
    from ansible.utils.path import cleanup_tmp_file  # pylint: disable=import-outside-toplevel

    atexit.unregister(cleanup_tmp_file)
    C.DEFAULT_LOCAL_TMP = tempfile.mkdtemp(prefix="ansible-local-%s" % os.getpid(),
                                           dir=os.path.dirname(C.DEFAULT_LOCAL_TMP))
    atexit.register(cleanup_tmp_file, C.DEFAULT_LOCAL_TMP, warn=True)
    ansible_vars.random_int = ("%08x" % random.SystemRandom().randrange(2 ** 32))[:8]


def _run(request, fds, playbook_main):
    """The forked run: what the console script does, then the interpreter's exit (atexit, flush).  Never returns
    into the zygote's loop."""
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = list(request["argv"])
        _own_process_state()
    except BaseException:  # pylint: disable=broad-except  # before ansible-playbook ran: say why, exit
        traceback.print_exc()
        os._exit(127)
    code = _exit_code(playbook_main)
    atexit._run_exitfuncs()  # pylint: disable=protected-access  # os._exit below skips them
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF)


def _serve(conn, request, fds, playbook_main):
    """The monitor: forks the run, reports its pid and then its exit code."""
    try:
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run(request, fds, playbook_main)
        for fd in fds:
            os.close(fd)
        conn.sendall(b"%d\n" % pid)
        _pid, status = os.waitpid(pid, 0)
        conn.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
    except BaseException:  # pylint: disable=broad-except  # the client sees the connection close early
        traceback.print_exc()
    finally:
        os._exit(0)


def main(path, parent):
    from ansible.cli.playbook import main as playbook_main  # pylint: disable=import-outside-toplevel

    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    if threading.active_count() != 1:
        raise SystemExit("the imports started threads: forking would copy them half-way")
    # Stopped with SIGTERM: exit as Python does, removing ansible-core's local temporary directory.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    server.listen(64)
    os.rename(path + ".tmp", path)  # the name appears once it accepts: the client waits for the name
    server.settimeout(1.0)
    zygote = os.getpid()
    # Its directory (socket, log) goes with it, also when the test process went without stopping it.
    atexit.register(lambda: os.getpid() == zygote and shutil.rmtree(os.path.dirname(path), ignore_errors=True))
    while os.getppid() == parent:  # the test process is gone: so is the zygote
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        try:
            conn, _addr = server.accept()
        except socket.timeout:
            continue
        conn.settimeout(None)
        try:
            request, fds = _receive(conn)
        except (OSError, ValueError, EOFError):
            conn.close()
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            server.close()
            _serve(conn, request, fds, playbook_main)
        conn.close()
        for fd in fds:
            os.close(fd)


# -- the client side: used by _ansible.py in the test process --------------------------------------------------

# What ansible-core and Python read when they start and import (configuration, paths, locale): runs differing in
# any of these get zygotes of their own.  Everything else (VAULT_*, KEYOPS_*, KUBECONFIG, ...) is read by the run.
IMPORT_TIME_PREFIXES = ("ANSIBLE_", "_ANSIBLE_", "PYTHON", "LC_", "LD_", "OPENSSL_")
IMPORT_TIME_VARIABLES = ("HOME", "PATH", "TMPDIR", "LANG", "LANGUAGE", "TZ", "TERM", "COLUMNS", "NO_COLOR",
                         "FORCE_COLOR",
                         # hvac (preloaded) takes these at import
                         "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY", "VAULT_CACERT", "VAULT_CAPATH")


class _Zygote:
    """One ``_playbook_zygote.py`` process: runs ansible-playbook forked from it, reported as ``Popen`` reports a
    process of its own (return code, text output with universal newlines, ``TimeoutExpired``)."""

    def __init__(self, python, env, cwd):
        self.directory = tempfile.mkdtemp(prefix="keyops-zygote-")  # short: a socket path has ~100 bytes
        self.path = os.path.join(self.directory, "socket")
        log_path = os.path.join(self.directory, "log")
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([python, os.path.abspath(__file__), self.path, str(os.getpid())], env=env,
                                            cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                with open(log_path, "rb") as log:
                    printed = log.read().decode("utf-8", "replace")
                self.stop()
                raise RuntimeError("the playbook zygote did not start:\n%s" % printed)
            time.sleep(0.01)
        # What importing ansible-core printed (configuration warnings): every fresh process prints it first.
        with open(log_path, "rb") as log:
            self.preamble = log.read()

    @property
    def alive(self):
        return self.process.poll() is None

    def run(self, argv, env, cwd, timeout):
        """``(pid, returncode, stdout, stderr)`` of one run; its process group is killed on ``timeout``."""
        deadline = time.monotonic() + timeout
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        stdin = os.open(os.devnull, os.O_RDONLY)
        payload = json.dumps({"argv": argv, "env": env, "cwd": cwd or os.getcwd()}).encode("utf-8")
        chunks = {out_read: [], err_read: [self.preamble]}
        readers = [threading.Thread(target=_read_all, args=(fd, chunks[fd]), daemon=True) for fd in chunks]
        pid = None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            try:
                conn.connect(self.path)
                socket.send_fds(conn, [struct.pack("!I", len(payload)) + payload], [stdin, out_write, err_write])
            finally:
                for fd in (stdin, out_write, err_write):
                    os.close(fd)
            for reader in readers:
                reader.start()
            answers = conn.makefile("rb")
            try:
                conn.settimeout(max(0.0, deadline - time.monotonic()))
                pid = int(answers.readline())
                conn.settimeout(max(0.0, deadline - time.monotonic()))
                line = answers.readline()
                if not line:
                    raise RuntimeError("the playbook zygote's monitor of run %d went away (see the run's output)" % pid)
                returncode = int(line)
                for reader in readers:
                    reader.join(max(0.0, deadline - time.monotonic()))
                if any(reader.is_alive() for reader in readers):  # a process the run left holds its output open
                    raise socket.timeout()
            except socket.timeout:
                if pid is not None:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                raise subprocess.TimeoutExpired(argv, timeout)
        stdout, stderr = (_text(b"".join(chunks[fd])) for fd in (out_read, err_read))
        return pid, returncode, stdout, stderr

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()  # it removes its ansible-local temporary directory
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _text(data):
    """What ``Popen(text=True)`` makes of a process's output: the locale's encoding, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def _read_all(fd, chunks):
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            chunks.append(data)
    finally:
        os.close(fd)


_ZYGOTES = collections.OrderedDict()  # least recently used first
_ZYGOTES_LOCK = threading.Lock()
# Zygotes kept per test process (~50 MB each); the least recently used one stops when another is needed.
MAX_ZYGOTES = 3


def zygote_for(python, env, cwd):
    """The zygote for runs of ``python``'s ansible-playbook with this start-up environment and working directory
    (ansible-core's configuration depends on both), started on first use with only that environment."""
    cwd = cwd or os.getcwd()
    key = (tuple(sorted((name, value) for name, value in env.items()
                        if name.startswith(IMPORT_TIME_PREFIXES) or name in IMPORT_TIME_VARIABLES)), cwd, python)
    with _ZYGOTES_LOCK:
        if key in _ZYGOTES and not _ZYGOTES[key].alive:
            _ZYGOTES.pop(key).stop()  # killed (out of memory, a test's kill): a new one
        if key not in _ZYGOTES:
            while len(_ZYGOTES) >= MAX_ZYGOTES:
                _ZYGOTES.popitem(last=False)[1].stop()  # a run it forked goes on: its monitor is its parent
            _ZYGOTES[key] = _Zygote(python, dict(key[0]), cwd)
        _ZYGOTES.move_to_end(key)
        return _ZYGOTES[key]


@atexit.register
def _stop_zygotes():
    for zygote in _ZYGOTES.values():
        zygote.stop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
