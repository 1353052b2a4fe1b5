"""The in_process action plugin: the same tasks give the same results in the worker process and in a module
process, and only tasks whose target is the controller's own Python take the worker path."""

import json
import os
import re
import uuid

import pytest

from _ansible import ANSIBLE_PYTHON, BIN, play, run_playbook

WORKER = "in the worker process"
SEPARATE = "runs as a separate module process"


def tasks(mount, token_file, key_repository):
    key = {"name": "parity", "mount": mount}
    return [
        # The key repository modules (files on the controller, no API).
        {"name": "repository setup", "keyops.lifecycle.keyrepo_rotate": {"path": key_repository, "state": "present"}},
        {"name": "repository again", "keyops.lifecycle.keyrepo_rotate": {"path": key_repository, "state": "present"}},
        {"name": "repository rotation, check mode", "keyops.lifecycle.keyrepo_rotate": {
            "path": key_repository, "state": "rotated"}, "check_mode": True, "diff": True},
        {"name": "repository info", "keyops.lifecycle.keyrepo_info": {"path": key_repository}},
        {"name": "create", "keyops.lifecycle.vault_transit_key": dict(key, exportable=False)},
        {"name": "again", "keyops.lifecycle.vault_transit_key": dict(key)},
        {"name": "check-mode change", "keyops.lifecycle.vault_transit_key": dict(key, deletion_allowed=True),
         "check_mode": True, "diff": True},
        {"name": "change", "keyops.lifecycle.vault_transit_key": dict(key, deletion_allowed=True), "diff": True},
        {"name": "info", "keyops.lifecycle.vault_transit_key_info": dict(key)},
        {"name": "token", "keyops.lifecycle.vault_token": {"token_file": token_file, "policies": ["default"],
                                                           "ttl": "1h"}},
        {"name": "bad input", "keyops.lifecycle.vault_transit_key": dict(key, type="no-such-type"),
         "ignore_errors": True},
        {"name": "vault refuses", "keyops.lifecycle.vault_transit_key_info": {"name": "parity", "mount": "nowhere"},
         "ignore_errors": True},
    ]


def normalised(run, mount, tmp_path):
    """Every task's recorded result without what differs between two runs (times, names, paths, ids)."""
    text = json.dumps([(entry["task"], entry["status"], entry["result"]) for entry in run.results], sort_keys=True)
    text = text.replace(mount, "MOUNT").replace(str(tmp_path), "TMP")
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)", "TIME", text)
    text = re.sub(r'"(accessor|request_id|lease_id|[a-z_]*fingerprint)": "[^"]*"', r'"\1": "ID"', text)
    text = re.sub(r'"([a-z_]*age_seconds)": [0-9.]+', r'"\1": 0', text)  # a second apart on a busy machine
    return json.loads(text)


@pytest.mark.compat
@pytest.mark.in_process
def test_worker_and_module_process_give_the_same_results(vault, vault_client, tmp_path):
    results = {}
    for route, extra_vars in (("worker", None), ("module", {"keyops_lifecycle_in_process": False})):
        mount = "parity-%s" % uuid.uuid4().hex[:8]
        vault_client.sys.enable_secrets_engine("transit", path=mount)
        token_file = str(tmp_path / route / "token")
        key_repository = str(tmp_path / route / "fernet-keys")
        run = run_playbook(tmp_path, play(tasks(mount, token_file, key_repository)), env=vault.env, verbosity=4,
                           extra_vars=extra_vars, expect_rc=0)
        # The route really taken (the plugin says which at -vvv/-vvvv), for every module task.
        if route == "worker":
            assert run.output.count(WORKER) == 12, run.output
            assert SEPARATE not in run.output
        else:
            assert WORKER not in run.output
            assert run.output.count("keyops_lifecycle_in_process is false") == 12
        assert vault.token not in run.output  # the token option is no_log on both routes
        with open(token_file) as handle:
            assert handle.read().strip() not in run.output  # nor the token the module created
        results[route] = normalised(run, mount, tmp_path / route)
        results[route + "-run"] = run
    assert results["worker"] == results["module"]
    run = results["worker-run"]
    assert run.task("repository setup")["changed"] and not run.task("repository again")["changed"]
    assert run.task("repository rotation, check mode")["changed"]
    assert run.task("repository info")["primary_index"] == 1  # the check-mode rotation changed nothing
    assert run.task("create")["changed"] and not run.task("again")["changed"]
    assert run.task("check-mode change")["changed"] and run.task("check-mode change")["diff"]
    assert run.status("bad input") == "failed" and "no-such-type" in run.task("bad input")["msg"]
    assert run.status("vault refuses") == "failed" and "nothing is mounted at 'nowhere/'" in run.task("vault refuses")["msg"]
    assert "Traceback" not in run.output


@pytest.mark.compat
@pytest.mark.in_process
def test_every_spelling_of_the_controllers_python_takes_the_worker_path(vault, vault_client, tmp_path):
    """The setups users have: the venv's python or python3 for ansible-playbook's python, an inventory localhost
    whose interpreter is discovered on the PATH of an activated venv, the implicit localhost, a task delegated
    to the controller.  Another environment of the same binary (the system Python under the venv), another
    connection or become take the ordinary path."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "venv-python ansible_connection=local ansible_python_interpreter=%s\n"
        "venv-python3 ansible_connection=local ansible_python_interpreter=%s\n"
        "discovered ansible_connection=local\n"
        "other-python ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n"
        "remote ansible_host=127.0.0.9 ansible_connection=ssh ansible_python_interpreter=%s\n"
        % (os.path.join(BIN, "python"), os.path.join(BIN, "python3"), ANSIBLE_PYTHON))
    mount = "routes-%s" % uuid.uuid4().hex[:8]
    vault_client.sys.enable_secrets_engine("transit", path=mount)
    vault_client.secrets.transit.create_key("probe", mount_point=mount)
    probe = {"keyops.lifecycle.vault_transit_key_info": {"name": "probe", "mount": mount}, "ignore_errors": True}
    playbook = [{"hosts": "venv-python,venv-python3,discovered,other-python", "gather_facts": False,
                 "tasks": [dict(probe, name="direct"), dict(probe, name="again")]},
                {"hosts": "remote", "gather_facts": False,
                 "tasks": [dict(probe, name="delegated", delegate_to="venv-python")]},
                {"hosts": "localhost", "gather_facts": False,  # not in the inventory: the implicit localhost
                 "tasks": [dict(probe, name="implicit")]},
                {"hosts": "venv-python", "gather_facts": False, "become": True,
                 "tasks": [dict(probe, name="become")]}]
    # An activated venv: its bin first on PATH, no other Python ahead of it; interpreter discovery is the default.
    env = dict(vault.env, PATH=os.pathsep.join((BIN, "/usr/bin", "/bin")), ANSIBLE_PYTHON_INTERPRETER="auto")
    run = run_playbook(tmp_path, playbook, env=env, verbosity=4, inventory=str(inventory))
    routes = {}
    for line in run.output.splitlines():
        if WORKER in line or SEPARATE in line:
            routes[line] = routes.get(line, 0) + 1
    assert run.output.count(WORKER) == 8, run.output  # 3 hosts x 2 tasks, delegated, implicit localhost
    other = "the host's Python (/usr/bin/python3) is another Python or environment than the one running Ansible"
    assert run.output.count(other) == 2, run.output
    assert "the task uses become" in run.output
    assert run.output.count(SEPARATE) == 3, routes
    # Discovery ran once for "discovered" and was recorded as ansible-core records it; the second task reused it.
    discovered = [entry["result"] for entry in run.results if entry["host"] == "discovered"]
    assert discovered[0]["ansible_facts"]["discovered_interpreter_python"].startswith(BIN + os.sep)
    assert "ansible_facts" not in discovered[1]
    assert run.output.count("Attempting python interpreter discovery") == 1
    # (the system Python has no hvac: it fails there, as it would without this collection's worker path)
    assert all(entry["status"] == "ok" for entry in run.results
               if entry["task"] != "become" and entry["host"] != "other-python"), run.results
    assert "Traceback" not in run.output
