"""Run real playbooks with ansible-playbook and read back every task's result."""

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from _playbook_zygote import zygote_for

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# The Python that runs ansible-playbook and the modules: the test's own, or the venv of another ansible-core line
# (make test's compatibility phase sets KEYOPS_ANSIBLE_PYTHON; the servers and fixtures stay in this Python).
ANSIBLE_PYTHON = os.environ.get("KEYOPS_ANSIBLE_PYTHON") or sys.executable
BIN = os.path.dirname(ANSIBLE_PYTHON)
# Runs forked from a process that imported ansible-playbook once (``_playbook_zygote.py``) unless this is "0".
# Runs that are to be killed (``kill_after``, the ``crash_at`` callback, ``fresh=True``) start as processes of their
# own: what a killed run left is found by its environment, which only an exec'd process shows in /proc.
FORKED_RUNS = os.environ.get("KEYOPS_TEST_FORKED_PLAYBOOKS", "1") != "0"


class PlaybookRun:
    def __init__(self, argv, returncode, stdout, stderr, results, killed=False, pid=None, record_path=None):
        self.argv = argv
        self.pid = pid  # the controller's
        self.record_path = record_path
        self.rc = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.results = results
        self.killed = killed

    @property
    def output(self):
        return self.stdout + self.stderr

    def task(self, name):
        """The last result of the task called ``name``."""
        matches = [entry for entry in self.results if entry["task"] == name]
        assert matches, "task %r did not run; tasks: %s\n%s" % (name, [e["task"] for e in self.results], self.output)
        return matches[-1]["result"]

    def seconds(self, name):
        """How long the task took (from its start to its result), per the recording callback."""
        return [entry for entry in self.results if entry["task"] == name][-1]["seconds"]

    def status(self, name):
        return [entry for entry in self.results if entry["task"] == name][-1]["status"]

    @property
    def changed_count(self):
        return sum(1 for entry in self.results if entry["result"].get("changed"))


def kill_what_is_left(record_file):
    """SIGKILL every process the crashed run left (they carry its KEYOPS_RECORD_FILE); returns how many.

    ansible-core's workers start their own sessions (setsid), so killing the controller's process group leaves
    them and the modules they run going - a module of the crashed run (or a module running inside a worker) would go on writing
    in the middle of the re-run.  A crash of the controller's machine takes them all."""
    marker = ("KEYOPS_RECORD_FILE=%s" % record_file).encode()
    killed, quiet_scans = 0, 0
    while quiet_scans < 3:
        found = False
        for pid in (name for name in os.listdir("/proc") if name.isdigit() and int(name) != os.getpid()):
            try:
                with open("/proc/%s/environ" % pid, "rb") as handle:
                    if marker not in handle.read().split(b"\0"):
                        continue
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                continue
            found, killed = True, killed + 1
        quiet_scans = 0 if found else quiet_scans + 1
        time.sleep(0.05)
    return killed


def play(tasks, module_defaults=None, hosts="localhost", gather_facts=False):
    entry = {"name": "test", "hosts": hosts, "gather_facts": gather_facts, "tasks": tasks}
    if hosts == "localhost":
        entry["connection"] = "local"
    if module_defaults:
        entry["module_defaults"] = module_defaults
    return [entry]


def playbook_env(record_path, callbacks=(), interpreter=ANSIBLE_PYTHON):
    """The environment of every ansible-playbook a test starts: the result recorder (and ``callbacks``), quiet
    output, ``interpreter`` for the modules (None: Ansible's own choice), Ansible's executables first on PATH, and
    no VAULT_* settings (connection settings come only from what the test passes)."""
    run_env = dict(os.environ)
    run_env.update({
        "KEYOPS_RECORD_FILE": str(record_path),
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": ",".join(("record_results",) + tuple(callbacks)),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "PATH": BIN + os.pathsep + run_env.get("PATH", ""),
    })
    if interpreter:
        run_env["ANSIBLE_PYTHON_INTERPRETER"] = interpreter
    for name in list(run_env):
        if name.startswith("VAULT_"):
            del run_env[name]
    return run_env


def ansible_playbook(playbook_path, record_path, env=None, args=(), inventory="localhost,", callbacks=(),
                     expect_rc=None, timeout=600, kill_after=None, cwd=None, fresh=False):
    """Run ansible-playbook; ``kill_after`` seconds SIGKILLs its whole process group (modules included).

    ``fresh``: start it as a process of its own even where a run forked from the zygote would do."""
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, str(playbook_path)] + list(args)
    run_env = playbook_env(record_path, callbacks)
    run_env.update(env or {})
    if os.path.exists(str(record_path)):
        os.unlink(str(record_path))
    forked = FORKED_RUNS and not fresh and kill_after is None and "crash_at" not in callbacks
    zygote = zygote_for(ANSIBLE_PYTHON, run_env, cwd) if forked else None
    if zygote is not None:
        pid, returncode, stdout, stderr = zygote.run(argv, run_env, cwd, timeout)
        killed = False
    else:
        proc = subprocess.Popen(argv, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, cwd=cwd)
        killed = False
        try:
            stdout, stderr = proc.communicate(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            if kill_after is None:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
            killed = True
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        pid, returncode = proc.pid, proc.returncode
    if killed or returncode == -signal.SIGKILL:
        killed = True
        kill_what_is_left(record_path)
        # Module processes the controller started may outlive it: a crash kills them too.
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    results = []
    if os.path.exists(str(record_path)):
        with open(str(record_path)) as handle:
            results = [json.loads(line) for line in handle if line.strip()]
    # Everything the run printed stays next to its results: the secret scan of the test run reads it.
    with open(str(record_path) + ".out", "w") as handle:
        handle.write(stdout + stderr)
    run = PlaybookRun(argv, returncode, stdout, stderr, results, killed, pid, str(record_path))
    if expect_rc is not None:
        assert run.rc == expect_rc, "ansible-playbook rc=%s (expected %s)\n%s" % (run.rc, expect_rc, run.output)
    return run


def run_playbook(tmp_path, playbook, env=None, check=False, diff=False, verbosity=0, extra_vars=None,
                 inventory="localhost,", expect_rc=None, timeout=600, fresh=False):
    """Write ``playbook`` (a list of plays) into ``tmp_path`` and run it with ansible-playbook."""
    path = tmp_path / ("playbook-%d.yml" % len(list(tmp_path.glob("playbook-*.yml"))))
    # The playbook carries the test's inputs (tokens, keys): private, as an operator's vars file would be.
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(yaml.safe_dump(playbook, sort_keys=False))
    args = []
    if check:
        args.append("--check")
    if diff:
        args.append("--diff")
    if verbosity:
        args.append("-" + "v" * verbosity)
    if extra_vars:
        args += ["-e", json.dumps(extra_vars)]
    return ansible_playbook(path, path.with_suffix(".jsonl"), env=env, args=args, inventory=inventory,
                            expect_rc=expect_rc, timeout=timeout, fresh=fresh)


def mitogen_env():
    """What makes ansible-playbook run under mitogen's linear strategy (the collection's supported fast path)."""
    import ansible_mitogen  # pylint: disable=import-outside-toplevel

    strategies = os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy")
    return {"ANSIBLE_STRATEGY_PLUGINS": strategies, "ANSIBLE_STRATEGY": "mitogen_linear"}
