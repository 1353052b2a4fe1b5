"""A process that has imported ansible-playbook once and forks a fresh run of it for every request (tests only).

Started by ``_ansible.py`` (argv: the socket's path and the test process's pid) under the Python that runs
ansible-playbook, with the start-up environment and working directory its runs will have (ansible-core reads its
configuration at import).  What it prints while importing (ansible-core's configuration warnings) goes to its log,
which the client puts in front of every run's stderr, where a fresh process would have printed it.  Each request (one connection on the Unix
socket given as argv[1]: the run's argv, environment and working directory, with its stdin, stdout and stderr as
file descriptors) is served by a forked monitor that forks the run in a session of its own, sends back the run's
pid, waits for it and sends back its exit code as ``Popen.returncode`` has it.  The run is what the
``ansible-playbook`` console script would do; only the imports (~0.4 CPU-s of its ~1.1) were done once.

Standard library only: it runs in the compatibility venvs too.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
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


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
