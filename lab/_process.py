"""Starting, waiting for and stopping the background servers of the lab."""

import os
import signal
import socket
import subprocess
import time


def free_port(host="127.0.0.1"):
    """Ask the kernel for a free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def private_dir(path):
    """Create ``path`` (and parents) with mode 0700: lab directories hold tokens and keys."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path, text):
    """Write ``text`` to ``path`` with mode 0600 from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def spawn(argv, log_path, env=None, cwd=None):
    """Start ``argv`` in its own session (so it survives the launcher) logging to ``log_path``."""
    # Server logs can hold secrets (a dev server prints its root token): private like everything else here.
    log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        return subprocess.Popen(  # pylint: disable=consider-using-with
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def stop_pid(pid, timeout=10.0, proc=None):
    """SIGTERM, wait up to ``timeout``, then SIGKILL.  Safe on already-dead pids."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None and not pid_alive(pid):
                return
            time.sleep(0.05)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def tail(path, lines=20):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


class BackgroundServer:
    """A server process the lab starts and always stops: ``with Server(...) as s`` or start()/stop().

    Subclasses set ``workdir`` and ``log_path`` and implement ``start()`` with :meth:`launch`
    followed by their own readiness wait.
    """

    proc = None
    log_path = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def launch(self, argv, ready, env=None, cwd=None):
        """Spawn ``argv`` and call ``ready()``; a failed start leaves no process behind."""
        self.proc = spawn(argv, self.log_path, env=env, cwd=cwd)
        try:
            ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid, proc=self.proc)
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_REGISTERED = set()


def register_secret(kind, value):
    """Note a secret the lab made (token, migration string, plaintext ...) for the secret scan of a test run.

    Only when $KEYOPS_SECRET_REGISTRY names a directory: one 0600 file per process, ``kind<TAB>value`` lines.
    """
    directory = os.environ.get("KEYOPS_SECRET_REGISTRY")
    if not directory or not value or (kind, value) in _REGISTERED:
        return
    _REGISTERED.add((kind, value))
    private_dir(directory)
    fd = os.open(os.path.join(directory, "%d.tsv" % os.getpid()), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write("%s\t%s\n" % (kind, value))
