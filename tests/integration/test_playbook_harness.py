"""The test harness's forked runs (``_playbook_zygote.py``) behave as fresh ``ansible-playbook`` processes: the same
tasks give the same results either way, and each forked run has a local temporary directory of its own that is
gone when it ends."""

import json
import os
import subprocess
import uuid

import pytest

from _ansible import ANSIBLE_PYTHON, play, run_playbook
from test_in_process_parity import normalised, tasks


def controller(run):
    """What the recording callback saw of the controller process (``record_results``: ``<record>.controller``)."""
    with open(run.record_path + ".controller") as handle:
        return json.load(handle)


@pytest.mark.compat
def test_forked_runs_match_fresh_ones_and_keep_their_own_temporary_directory(vault, vault_client, tmp_path):
    results, controllers = {}, {}
    for mode in ("forked", "fresh", "forked-again"):
        mount = "harness-%s" % uuid.uuid4().hex[:8]
        vault_client.sys.enable_secrets_engine("transit", path=mount)
        directory = tmp_path / mode
        run = run_playbook(tmp_path, play(tasks(mount, str(directory / "token"), str(directory / "fernet-keys"))),
                           env=vault.env, verbosity=3, fresh=(mode == "fresh"), expect_rc=0)
        # A module process's traceback names its own temporary directory (ansible-core lines without the worker path)
        results[mode] = [(task, status, {name: value for name, value in result.items() if name != "exception"})
                         for task, status, result in normalised(run, mount, directory)]
        controllers[mode] = controller(run)
        assert controllers[mode]["pid"] == run.pid
        # ansible-core's local temporary directory: this run's own, removed when it ended.
        local_tmp = controllers[mode]["local_tmp"]
        assert os.path.basename(local_tmp).startswith("ansible-local-%d" % run.pid), local_tmp
        assert not os.path.exists(local_tmp)
    # The watcher watched: the forked runs really came from the zygote, the fresh one from the console script.
    programs = {mode: os.path.basename(controllers[mode]["cmdline"][1]) for mode in controllers}
    assert programs == {"forked": "_playbook_zygote.py", "forked-again": "_playbook_zygote.py",
                        "fresh": "ansible-playbook"}
    assert controllers["forked"]["local_tmp"] != controllers["forked-again"]["local_tmp"]
    assert results["forked"] == results["fresh"] == results["forked-again"]
    assert len(results["fresh"]) == 12


@pytest.mark.compat
def test_what_importing_ansible_core_prints_reaches_every_forked_run(tmp_path):
    """ansible-core 2.19+ warns about deprecated settings while it is imported, before any run begins: a forked
    run's stderr carries it as a fresh process's does (the zygote printed it once, into its log)."""
    env = {"ANSIBLE_JINJA2_NATIVE": "1"}  # deprecated in 2.19+: a warning at import
    runs = {mode: run_playbook(tmp_path, play([{"name": "hello", "ansible.builtin.debug": {"msg": "hello"}}]),
                               env=env, fresh=(mode == "fresh"), expect_rc=0)
            for mode in ("forked", "fresh", "forked-again")}
    warnings = {mode: [line for line in run.stderr.splitlines() if "JINJA2_NATIVE" in line or "jinja2_native" in line]
                for mode, run in runs.items()}
    assert warnings["forked"] == warnings["fresh"] == warnings["forked-again"], runs["forked"].stderr
    version = subprocess.run([ANSIBLE_PYTHON, "-c", "import ansible.release as r; print(r.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split(".")
    if (int(version[0]), int(version[1])) >= (2, 19):
        assert warnings["fresh"], runs["fresh"].stderr  # the watcher watched: there was something to carry
