"""Run real playbooks with ansible-playbook and read back every task's result."""

import json
import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)


class PlaybookRun:
    def __init__(self, argv, returncode, stdout, stderr, results):
        self.argv = argv
        self.rc = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.results = results

    @property
    def output(self):
        return self.stdout + self.stderr

    def task(self, name):
        """The last result of the task called ``name``."""
        matches = [entry for entry in self.results if entry["task"] == name]
        assert matches, "task %r did not run; tasks: %s\n%s" % (name, [e["task"] for e in self.results], self.output)
        return matches[-1]["result"]

    def status(self, name):
        return [entry for entry in self.results if entry["task"] == name][-1]["status"]

    @property
    def changed_count(self):
        return sum(1 for entry in self.results if entry["result"].get("changed"))


def play(tasks, module_defaults=None, hosts="localhost", gather_facts=False):
    entry = {"name": "test", "hosts": hosts, "gather_facts": gather_facts, "tasks": tasks}
    if hosts == "localhost":
        entry["connection"] = "local"
    if module_defaults:
        entry["module_defaults"] = module_defaults
    return [entry]


def run_playbook(tmp_path, playbook, env=None, check=False, diff=False, verbosity=0, extra_vars=None,
                 inventory="localhost,", expect_rc=None, timeout=300):
    """Write ``playbook`` (a list of plays) into ``tmp_path`` and run it with ansible-playbook."""
    path = tmp_path / ("playbook-%d.yml" % len(list(tmp_path.glob("playbook-*.yml"))))
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    record = path.with_suffix(".jsonl")
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, str(path)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    run_env = dict(os.environ)
    run_env.update({
        "KEYOPS_RECORD_FILE": str(record),
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "record_results",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "PATH": BIN + os.pathsep + run_env.get("PATH", ""),
    })
    # Connection settings come only from what the test passes.
    for name in list(run_env):
        if name.startswith("VAULT_"):
            del run_env[name]
    run_env.update(env or {})
    proc = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=timeout, check=False)
    results = []
    if record.exists():
        results = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    run = PlaybookRun(argv, proc.returncode, proc.stdout, proc.stderr, results)
    if expect_rc is not None:
        assert run.rc == expect_rc, "ansible-playbook rc=%s (expected %s)\n%s" % (run.rc, expect_rc, run.output)
    return run
