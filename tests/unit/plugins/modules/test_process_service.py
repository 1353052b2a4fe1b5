"""process_service with a fake process table: /proc is a tmp_path tree, signals and the daemon start are recorded,
the clock is fake - nothing is forked, killed or waited for."""

import os
import signal

import pytest
from _module_runner import MASK, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import process_service


class FakeProcesses:
    """/proc/<pid>/{cmdline,stat} under ``root``; ``kill`` obeys SIGTERM unless a process is ``stubborn``."""

    def __init__(self, root):
        self.root = root
        self.signals = []  # (pid, signal) of every signal but 0
        self.stubborn = set()
        self.starts = []  # argument tuples of every daemon start
        self.next_pid = 5000
        self.now = 0.0
        self.timeline = []  # (fake time, action) run once the clock passes that time

    def at(self, when, action):
        self.timeline.append((when, action))

    def add(self, pid, argv, state="S"):
        directory = self.root / str(pid)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        comm = os.path.basename(argv[0])[:15]
        (directory / "stat").write_text("%d (%s) %s 1 %d %d 0 -1" % (pid, comm, state, pid, pid))
        return pid

    def remove(self, pid):
        for name in ("cmdline", "stat"):
            (self.root / str(pid) / name).unlink()
        (self.root / str(pid)).rmdir()

    def alive(self, pid):
        return (self.root / str(pid)).is_dir()

    def kill(self, pid, sig):
        if not self.alive(pid):
            raise ProcessLookupError(pid)
        if sig == 0:
            return
        self.signals.append((pid, sig))
        if sig == signal.SIGKILL or pid not in self.stubborn:
            self.remove(pid)

    # the module's time: sleeping moves the fake clock
    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        due = [event for event in self.timeline if event[0] <= self.now]
        self.timeline = [event for event in self.timeline if event[0] > self.now]
        for _when, action in due:
            action()


@pytest.fixture
def procs(tmp_path, monkeypatch):
    fake = FakeProcesses(tmp_path / "proc")
    fake.root.mkdir()
    real_open = open

    def fake_open(path, *args, **kwargs):
        if isinstance(path, str) and path.startswith("/proc/"):
            path = str(fake.root) + path[len("/proc"):]
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(process_service, "open", fake_open, raising=False)
    monkeypatch.setattr(process_service.os, "kill", fake.kill)
    monkeypatch.setattr(process_service, "time", fake)
    return fake


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "bin" / "bao"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def files(tmp_path):
    return {"pid_file": str(tmp_path / "run" / "bao.pid"), "log_file": str(tmp_path / "log" / "bao.log")}


def daemon_start(procs, lives=True, log_line=None):
    """A stand-in for ``start``: writes the pid file like the real one; the daemon runs (``lives``) or dies at once."""

    def start(argv, pid_file, log_file, chdir, environment, user=None):
        procs.starts.append((list(argv), chdir, dict(environment), user))
        procs.next_pid += 1
        os.makedirs(os.path.dirname(pid_file), exist_ok=True)
        with open(pid_file, "w") as handle:
            handle.write("%d\n" % procs.next_pid)
        if log_line:
            os.makedirs(os.path.dirname(log_file), exist_ok=True)
            with open(log_file, "a") as handle:
                handle.write("==> starting\n%s\nshutting down\n" % log_line)
        if lives:
            procs.add(procs.next_pid, argv)
        return procs.next_pid

    return start


def running(procs, program, files, pid=4242, argv=None):
    procs.add(pid, argv or [program, "server"])
    os.makedirs(os.path.dirname(files["pid_file"]), exist_ok=True)
    with open(files["pid_file"], "w") as handle:
        handle.write("%d\n" % pid)
    return pid


def service(program, files, check_mode=False, **kwargs):
    return run_module(process_service.main, dict(files, argv=[program, "server", "-config=x.hcl"], **kwargs),
                      check_mode=check_mode)


def test_argument_spec():
    spec = module_spec(process_service.main)
    assert spec["argv"]["required"] is True and spec["argv"]["type"] == "list"
    assert spec["pid_file"]["required"] is True and spec["log_file"]["required"] is True
    assert spec["state"]["choices"] == ["started", "stopped", "restarted"] and spec["state"]["default"] == "started"
    assert spec["stop_timeout"]["default"] == 20


def test_a_running_process_of_the_same_program_is_left_alone(procs, program, files, monkeypatch):
    pid = running(procs, program, files, argv=["/usr/local/bin/bao", "server"])
    monkeypatch.setattr(process_service, "start", daemon_start(procs))
    result = service(program, files)
    assert result == dict(result, changed=False, pid=pid) and not result.get("failed")
    assert procs.starts == [] and procs.signals == []


@pytest.mark.parametrize("situation", ["no pid file", "stale pid", "another program", "zombie", "garbage"])
def test_started_starts_when_the_pid_file_names_no_live_process_of_the_program(procs, program, files,
                                                                               monkeypatch, situation):
    if situation == "stale pid":
        running(procs, program, files, pid=4242)
        procs.remove(4242)
    elif situation == "another program":
        running(procs, program, files, argv=["/usr/bin/python3", "app.py"])
    elif situation == "zombie":
        running(procs, program, files)
        procs.add(4242, [program], state="Z")
    elif situation == "garbage":
        os.makedirs(os.path.dirname(files["pid_file"]))
        with open(files["pid_file"], "w") as handle:
            handle.write("not a pid\n")
    monkeypatch.setattr(process_service, "start", daemon_start(procs))
    result = service(program, files, chdir="/var/lib/bao", environment={"BAO_LOG_LEVEL": "info", "PORT": 8200})
    assert result["changed"] is True and result["pid"] == procs.next_pid
    assert procs.starts == [([program, "server", "-config=x.hcl"], "/var/lib/bao",
                             {"BAO_LOG_LEVEL": "info", "PORT": 8200}, None)]
    assert procs.signals == []  # a pid that is not the program's is never signalled


def test_check_mode_starts_nothing(procs, program, files, monkeypatch):
    monkeypatch.setattr(process_service, "start", daemon_start(procs))
    result = service(program, files, check_mode=True)
    assert result["changed"] is True and result["pid"] is None
    assert procs.starts == [] and not os.path.exists(files["pid_file"])


def test_stopped_terminates_and_removes_the_pid_file(procs, program, files):
    pid = running(procs, program, files)
    result = service(program, files, state="stopped")
    assert result["changed"] is True and result["pid"] is None
    assert procs.signals == [(pid, signal.SIGTERM)] and not os.path.exists(files["pid_file"])
    again = service(program, files, state="stopped")
    assert again["changed"] is False and again["pid"] is None and procs.signals == [(pid, signal.SIGTERM)]


def test_a_process_ignoring_sigterm_is_killed_after_stop_timeout(procs, program, files):
    pid = running(procs, program, files)
    procs.stubborn.add(pid)
    result = service(program, files, state="stopped", stop_timeout=7)
    assert result["changed"] is True
    assert procs.signals == [(pid, signal.SIGTERM), (pid, signal.SIGKILL)]
    assert 7 <= procs.now < 8  # waited stop_timeout on the fake clock, then killed


def test_check_mode_stops_nothing(procs, program, files):
    pid = running(procs, program, files)
    result = service(program, files, check_mode=True, state="stopped")
    assert result["changed"] is True and result["pid"] == pid
    assert procs.signals == [] and os.path.exists(files["pid_file"]) and procs.alive(pid)


def test_restarted_stops_then_starts(procs, program, files, monkeypatch):
    pid = running(procs, program, files)
    monkeypatch.setattr(process_service, "start", daemon_start(procs))
    result = service(program, files, state="restarted")
    assert result["changed"] is True and result["pid"] == procs.next_pid != pid
    assert procs.signals == [(pid, signal.SIGTERM)] and len(procs.starts) == 1


def test_a_program_that_exits_at_once_explains_itself_from_its_log(procs, program, files, monkeypatch):
    monkeypatch.setattr(process_service, "start", daemon_start(
        procs, lives=False, log_line="Error parsing config.hcl: At 3:1: expected: IDENT | STRING got: RBRACE"))
    result = service(program, files)
    assert result["failed"] is True
    assert result["msg"] == ("%s exited while starting: Error parsing config.hcl: At 3:1: expected: IDENT | STRING got: "
                             "RBRACE (log: %s)" % (program, files["log_file"]))


def test_no_log_at_all_says_so(procs, program, files, monkeypatch):
    monkeypatch.setattr(process_service, "start", daemon_start(procs, lives=False))
    result = service(program, files)
    assert result["failed"] is True and result["msg"].endswith("exited while starting: no log (log: %s)" % files["log_file"])


class FakeListener:
    """``listening(host, port)`` on the fake clock: the port accepts connections from ``opens_at`` on."""

    def __init__(self, procs, opens_at=None):
        self.procs, self.opens_at, self.asked = procs, opens_at, []

    def __call__(self, host, port):
        self.asked.append((host, port))
        return self.opens_at is not None and self.procs.now >= self.opens_at


def test_with_listen_address_a_start_waits_until_the_port_answers(procs, program, files, monkeypatch):
    monkeypatch.setattr(process_service, "start", daemon_start(procs))
    listener = FakeListener(procs, opens_at=4.0)
    monkeypatch.setattr(process_service, "listening", listener)
    result = service(program, files, listen_address="127.0.0.1:8200")
    assert result["changed"] is True and result["pid"] == procs.next_pid and not result.get("failed")
    assert 4.0 <= procs.now < 4.5 and set(listener.asked) == {("127.0.0.1", 8200)}


def test_with_listen_address_a_server_that_dies_slowly_still_explains_itself(procs, program, files, monkeypatch):
    """The case a fixed half-second check misses on a loaded host: the bad configuration kills it after 3 s."""
    monkeypatch.setattr(process_service, "start", daemon_start(
        procs, log_line="Error parsing config: only one storage stanza may be given"))
    procs.at(3.0, lambda: procs.remove(procs.next_pid))
    monkeypatch.setattr(process_service, "listening", FakeListener(procs))
    result = service(program, files, listen_address="127.0.0.1:8200")
    assert result["failed"] is True and 3.0 <= procs.now < 3.5
    assert result["msg"] == ("%s exited while starting: Error parsing config: only one storage stanza may be given "
                             "(log: %s)" % (program, files["log_file"]))


def test_with_listen_address_a_server_that_never_listens_times_out_and_keeps_running(procs, program, files,
                                                                                     monkeypatch):
    monkeypatch.setattr(process_service, "start", daemon_start(procs, log_line="error: waiting for the seal"))
    monkeypatch.setattr(process_service, "listening", FakeListener(procs))
    result = service(program, files, listen_address="[::1]:8200", start_timeout=9)
    assert result["failed"] is True and result["changed"] is True and 9 <= procs.now < 9.5
    assert result["msg"] == ("%s runs (pid %d) but did not listen on [::1]:8200 within 9s; its last log line: "
                             "error: waiting for the seal (log: %s)" % (program, procs.next_pid, files["log_file"]))
    assert procs.alive(procs.next_pid) and procs.signals == []


@pytest.mark.parametrize("address", ["8200", "127.0.0.1", "127.0.0.1:http", ":8200"])
def test_a_listen_address_that_is_not_host_port_is_refused_before_anything_starts(procs, program, files,
                                                                                  monkeypatch, address):
    monkeypatch.setattr(process_service, "start", daemon_start(procs))
    result = service(program, files, listen_address=address)
    assert result["failed"] is True and result["msg"].startswith("listen_address %r is not host:port" % address)
    assert procs.starts == []


def test_listening_really_connects(tmp_path):
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    assert process_service.listening("127.0.0.1", port) is False  # bound, not listening
    server.listen(1)
    try:
        assert process_service.listening("127.0.0.1", port) is True
    finally:
        server.close()


def test_a_start_that_cannot_fork_is_reported(procs, program, files, monkeypatch):
    def refuse(*args):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(process_service, "start", refuse)
    result = service(program, files)
    assert result["failed"] is True
    assert result["msg"] == "cannot start %s: [Errno 11] Resource temporarily unavailable" % program


def test_empty_argv(procs, files):
    result = run_module(process_service.main, dict(files, argv=[]))
    assert result["failed"] is True and result["msg"].startswith("argv is empty: give the program to run")


def test_a_program_that_is_not_executable(procs, files, tmp_path):
    script = tmp_path / "bao"
    script.write_text("x")
    for argv0 in (str(script), str(tmp_path / "missing")):
        result = run_module(process_service.main, dict(files, argv=[argv0]))
        assert result["failed"] is True and result["msg"] == "%s is not an executable file" % argv0


def test_an_unknown_user(procs, program, files):
    result = service(program, files, user="keyops-no-such-user")
    assert result["failed"] is True and result["msg"] == "user keyops-no-such-user does not exist"


def test_another_user_needs_root(procs, program, files, monkeypatch):
    monkeypatch.setattr(process_service.os, "geteuid", lambda: 54321)
    result = service(program, files, user="root")
    assert result["failed"] is True and result["msg"] == "running %s as root needs root" % program


def test_a_bad_state_is_refused(procs, program, files):
    result = service(program, files, state="reloaded")
    assert result["failed"] is True and "started, stopped, restarted" in result["msg"]


def test_environment_values_are_not_returned(procs, program, files):
    running(procs, program, files)
    secret = "aws-secret-access-key-0123456789"
    result = service(program, files, environment={"AWS_SECRET_ACCESS_KEY": secret})
    assert result["changed"] is False
    assert secret not in str(result)
    assert "environment" in no_log_options(module_spec(process_service.main)) or MASK in str(result)
