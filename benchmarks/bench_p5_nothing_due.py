"""P5: the daily rotate_keys.yml run that finds nothing due, over 20 keys, vs an empty play.

Both are whole ansible-playbook runs with the same inventory, extra vars, strategy and interpreter setup; the empty
play has no tasks.  The keys were rotated moments ago with ``rotate_older_than: 30d``, so nothing is due.  Target:
<= 2.0x - the job should cost about what an empty play costs plus one look at Vault.

The collection's modules run inside Ansible's worker process only when the host's Python is the Python running
ansible-playbook (``plugins/plugin_utils/_interpreter.py``), so P5 is measured in each way an operator's localhost
comes to name that Python (``SETUPS``):

* ``exact``: ``ansible_python_interpreter`` is the very path ansible-playbook runs as (what the test harness does:
  ``ANSIBLE_PYTHON_INTERPRETER``);
* ``venv-python``: the inventory names the venv's other spelling (``python3`` when ansible-playbook's shebang says
  ``python``, and the reverse);
* ``discovered``: ``ANSIBLE_PYTHON_INTERPRETER=auto``, ``PATH`` of an activated venv (its ``bin`` first, then only
  ``/usr/bin:/bin``): discovery finds the venv's ``python3.X``;
* ``implicit``: no localhost in the inventory, so the play runs on Ansible's implicit localhost, and no
  ``ANSIBLE_PYTHON_INTERPRETER``;
* ``system-python``: an execution environment's shape without touching the machine's Pythons: ansible-core, the
  collection's requirements (and mitogen) installed with ``pip install --target`` for the non-venv pyenv
  Python 3.11 (cached in ``build/bench-sysprefix``), ansible-playbook run as ``<python3.11> DIR/bin/ansible-playbook``
  with ``PYTHONPATH=DIR``, the host's interpreter the ``python3`` link next to that ``python3.11``.

Before timing, each setup runs the job once with ``-vvvv`` and checks that the collection's module tasks took the
worker path ("in the worker process", and no "separate module process").
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from lab import transit_data

from _ansible import BIN, PlaybookRun, playbook_env
from conftest import ROOT, STRATEGIES, alternated_pairs, record, strategy_env, timed
from rotation_helpers import ROTATE_KEYS, Rotation

KEYS = dict(("k%02d" % index, ([100], None)) for index in range(20))
SETUPS = ("exact", "venv-python", "discovered", "implicit", "system-python")
RUN_TIMEOUT = 300  # seconds for one ansible-playbook run; a P5 run takes 1-3 s

# The execution-environment emulation: pinned ansible-core (requirements/dev.txt) and the collection's requirements,
# plus mitogen for the mitogen_linear strategy, for a Python 3.11 that is not a venv.
SYSPREFIX = os.path.join(ROOT, "build", "bench-sysprefix")
SYSPREFIX_PYTHON = "3.11"


def pinned(name, requirements_file):
    with open(os.path.join(ROOT, requirements_file)) as handle:
        for line in handle:
            if line.split("==")[0].strip().lower() == name:
                return line.strip()
    raise AssertionError("%s is not pinned in %s" % (name, requirements_file))


def shebang_python(script):
    """The interpreter a console script starts (its ``#!`` line): what ansible-playbook's sys.executable is."""
    with open(script) as handle:
        first = handle.readline()
    assert first.startswith("#!"), "%s has no #! line" % script
    return first[2:].strip().split()[0]


@pytest.fixture(scope="session")
def sysprefix():
    """(python3.11, DIR): ansible-core and the collection's requirements pip-installed --target DIR, built once."""
    found = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "find_python.py"), SYSPREFIX_PYTHON],
                           capture_output=True, text=True, timeout=120, check=False)
    if found.returncode != 0:
        pytest.skip("system-python: no CPython %s on this machine (%s)" % (SYSPREFIX_PYTHON, found.stderr.strip()))
    python = found.stdout.strip()
    probe = subprocess.run([python, "-c", "import sys; print(sys.prefix == sys.base_prefix)"], capture_output=True,
                           text=True, timeout=60, check=True)
    assert probe.stdout.strip() == "True", "%s is a venv; the setup needs a Python installation" % python
    specs = [pinned("ansible-core", "requirements/dev.txt"), pinned("mitogen", "requirements/dev.txt"),
             "-r", os.path.join(ROOT, "requirements.txt")]
    with open(os.path.join(ROOT, "requirements.txt"), "rb") as handle:
        stamp_text = json.dumps([python, specs, hashlib.sha256(handle.read()).hexdigest()])
    site = os.path.join(SYSPREFIX, "site")
    stamp = os.path.join(SYSPREFIX, ".stamp")
    if not (os.path.exists(stamp) and open(stamp).read() == stamp_text):
        shutil.rmtree(SYSPREFIX, ignore_errors=True)
        os.makedirs(SYSPREFIX)
        install = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                                  "--target", site] + specs, capture_output=True, text=True, timeout=900, check=False)
        assert install.returncode == 0, "pip install --target failed:\n%s%s" % (install.stdout, install.stderr)
        subprocess.run([python, "-m", "compileall", "-qq", "-j", "0", site], capture_output=True, timeout=900,
                       check=False)
        with open(stamp, "w") as handle:
            handle.write(stamp_text)
    return python, site


class Setup:
    """How ansible-playbook is started and what its inventory says about localhost's Python."""

    def __init__(self, name, command, inventory, env=None, unset=(), strategy_plugins=None):
        self.name = name
        self.command = command  # argv up to ansible-playbook itself
        self.inventory = inventory  # text of the inventory file
        self.env = env or {}
        self.unset = tuple(unset)
        self.strategy_plugins = strategy_plugins


def make_setup(name, request):
    ansible_playbook = os.path.join(BIN, "ansible-playbook")
    runs_as = shebang_python(ansible_playbook)  # the venv's Python as ansible-playbook's shebang spells it
    venv_bin = os.path.dirname(runs_as)
    if name == "exact":
        # As the test harness sets it (ANSIBLE_PYTHON_INTERPRETER), spelt as ansible-playbook's #! line spells it.
        return Setup(name, [ansible_playbook], "localhost ansible_connection=local\n",
                     env={"ANSIBLE_PYTHON_INTERPRETER": runs_as})
    if name == "venv-python":
        other = os.path.join(venv_bin, "python3" if os.path.basename(runs_as) == "python" else "python")
        return Setup(name, [ansible_playbook],
                     "localhost ansible_connection=local ansible_python_interpreter=%s\n" % other,
                     unset=["ANSIBLE_PYTHON_INTERPRETER"])
    if name == "discovered":
        return Setup(name, [ansible_playbook], "localhost ansible_connection=local\n",
                     env={"ANSIBLE_PYTHON_INTERPRETER": "auto", "VIRTUAL_ENV": os.path.dirname(venv_bin),
                          "PATH": os.pathsep.join([venv_bin, "/usr/bin", "/bin"])})
    if name == "implicit":
        # An inventory that names another host only (never contacted: the play runs on localhost alone).
        return Setup(name, [ansible_playbook], "unrelated ansible_connection=local\n",
                     unset=["ANSIBLE_PYTHON_INTERPRETER"])
    assert name == "system-python"
    python, site = request.getfixturevalue("sysprefix")
    collections = os.path.join(ROOT, "build", "collections")
    search_path = [os.path.dirname(python), os.path.join(site, "bin"), "/usr/bin", "/bin"]
    return Setup(name, [python, os.path.join(site, "bin", "ansible-playbook")],
                 "localhost ansible_connection=local ansible_python_interpreter=%s\n"
                 % os.path.join(os.path.dirname(python), "python3"),
                 env={"PYTHONPATH": os.pathsep.join([site, collections]),
                      "PATH": os.pathsep.join(search_path)},
                 unset=["ANSIBLE_PYTHON_INTERPRETER", "VIRTUAL_ENV"],
                 strategy_plugins=os.path.join(site, "ansible_mitogen", "plugins", "strategy"))


def setup_strategy_env(setup, strategy):
    env = strategy_env(strategy)
    if strategy != "linear" and setup.strategy_plugins:
        env["ANSIBLE_STRATEGY_PLUGINS"] = setup.strategy_plugins  # mitogen of that installation
    return env


def run_playbook(setup, playbook, record_path, inventory, args=(), env=None, expect_rc=0):
    """ansible-playbook as tests/integration/_ansible.py runs it, started and configured as ``setup`` says."""
    run_env = playbook_env(record_path, interpreter=None)
    for name in setup.unset:
        run_env.pop(name, None)
    run_env.update(setup.env)
    run_env.update(env or {})
    if os.path.exists(str(record_path)):
        os.unlink(str(record_path))
    argv = list(setup.command) + ["-i", str(inventory), str(playbook)] + list(args)
    proc = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    results = []
    if os.path.exists(str(record_path)):
        with open(str(record_path)) as handle:
            results = [json.loads(line) for line in handle if line.strip()]
    run = PlaybookRun(argv, proc.returncode, proc.stdout, proc.stderr, results)
    assert run.rc == expect_rc, "ansible-playbook rc=%s (expected %s)\n%s" % (run.rc, expect_rc, run.output)
    return run


WORKER = re.compile(r"keyops\.lifecycle: running (\S+) in the worker process")
SEPARATE = re.compile(r"keyops\.lifecycle: (\S+) runs as a separate module process: (.*)")


def worker_path_taken(output):
    """(modules run in the worker process, [(module, reason)] run as separate module processes)."""
    return WORKER.findall(output), SEPARATE.findall(output)


@pytest.mark.bench
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("setup_name", SETUPS)
def test_p5_nothing_due_vs_empty_play(vault, tmp_path, request, setup_name, strategy):
    setup = make_setup(setup_name, request)
    mount = "bench-p5-%s-%s" % (setup_name, strategy.replace("_", "-"))
    transit_data.client(vault.address, vault.token).sys.enable_secrets_engine("transit", path=mount)
    rotation = Rotation(vault, mount, tmp_path, KEYS, rotate_older_than="30d")
    env = dict(vault.env, **setup_strategy_env(setup, strategy))
    empty = tmp_path / "empty.yml"
    empty.write_text("- name: Empty\n  hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(setup.inventory)
    job_args = ["-e", "@" + rotation.vars_path, "-e", "rotation_report_dir=%s" % rotation.report_dir]
    runs = {"n": 0}

    def job(*extra):
        runs["n"] += 1
        return run_playbook(setup, ROTATE_KEYS, tmp_path / ("run-%d.jsonl" % runs["n"]), inventory,
                            args=job_args + list(extra), env=env)

    job()  # the report directory exists, bytecode is written; the first run is not timed
    checked = job("-vvvv")
    assert checked.changed_count == 0, checked.output
    in_worker, separate = worker_path_taken(checked.output)
    assert in_worker and not separate, (
        "%s: the module tasks did not all take the worker path: worker %s, separate %s\n%s"
        % (setup_name, in_worker, separate, checked.output[-4000:]))

    def empty_play():
        return timed(run_playbook, setup, empty, tmp_path / "empty.jsonl", inventory,
                     args=["-e", "@" + rotation.vars_path], env=env)[0]

    def nothing_due():
        seconds, run = timed(job)
        assert run.changed_count == 0
        return seconds

    load_before = os.getloadavg()
    empty_seconds, job_seconds, ratio = alternated_pairs(empty_play, nothing_due, pairs=5)
    record("P5 %s (%s)" % (setup_name, strategy), keys=len(KEYS), setup=setup_name,
           ansible_playbook=" ".join(setup.command), inventory=setup.inventory.strip(),
           modules_in_worker_process=len(in_worker), modules_in_separate_process=len(separate),
           empty_play_seconds=empty_seconds, nothing_due_seconds=job_seconds, median_ratio=ratio,
           load_average=[round(value, 2) for value in load_before + os.getloadavg()], target="<= 2.0")
    assert ratio <= 2.0, "%s: a nothing-due run took %.2fx an empty play (target 2.0x)" % (setup_name, ratio)
