"""extensions/awx: credential types inject what the modules read; the awx.awx setup playbook is valid
against awx.awx's own argument specs; the schedules mean what they say."""

import datetime
import json
import os
import re
import subprocess
import sys

import jinja2
import jinja2.meta
import pytest
import yaml
from dateutil import rrule

from awx_helpers import CREDENTIAL_TYPES, credential_type

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
SETUP = os.path.join(ROOT, "extensions", "awx", "awx_setup.yml")
TYPES = sorted(name[:-4] for name in os.listdir(CREDENTIAL_TYPES) if name.endswith(".yml"))
SECRET_INPUTS = {"token", "secret_id", "jwt", "kubeconfig"}


def module_env_vars():
    """Environment variables the collection's connection options fall back to (from the argument specs' source)."""
    names = set()
    for path in ("_vault.py", "_k8s.py"):
        with open(os.path.join(ROOT, "plugins", "module_utils", path)) as handle:
            names.update(re.findall(r"env_fallback, \[\"([A-Z0-9_]+)\"\]", handle.read()))
    return names


def test_the_four_credential_types_exist():
    assert TYPES == ["kubeconfig", "vault_approle", "vault_kubernetes", "vault_token"]


@pytest.mark.parametrize("name", TYPES)
def test_credential_type_is_well_formed(name):
    definition = credential_type(name)
    fields = dict((field["id"], field) for field in definition["inputs"]["fields"])
    assert len(fields) == len(definition["inputs"]["fields"]), "duplicate field ids"
    assert set(definition["inputs"]["required"]) <= set(fields)
    # Secrets are marked secret (AWX encrypts them and never shows them again).
    for field_id in SECRET_INPUTS & set(fields):
        assert fields[field_id].get("secret") is True, field_id
    # A field named like a Jinja global (namespace, range, dict ...) renders the global when left blank.
    environment = jinja2.Environment()
    assert not set(fields) & set(environment.globals), set(fields) & set(environment.globals)
    # Injectors only use the type's fields (and AWX's tower.filename) ...
    injectors = definition["injectors"]
    for section in ("file", "env", "extra_vars"):
        for target, template in injectors.get(section, {}).items():
            used = jinja2.meta.find_undeclared_variables(environment.parse(str(template)))
            assert used <= set(fields) | {"tower"}, (target, used)
    # ... every file template is a field, and every variable they set is one the modules read.
    assert set(label.split(".", 1)[1] for label in injectors.get("file", {})) <= set(fields)
    assert set(injectors["env"]) <= module_env_vars(), set(injectors["env"]) - module_env_vars()


def test_each_vault_type_selects_its_auth_method():
    methods = dict((name, credential_type(name)["injectors"]["env"].get("VAULT_AUTH_METHOD")) for name in TYPES)
    assert methods == {"kubeconfig": None, "vault_approle": "approle", "vault_kubernetes": "kubernetes",
                       "vault_token": "token"}


def awx_tasks():
    with open(SETUP) as handle:
        (play,) = yaml.safe_load(handle)
    for task in play["tasks"]:
        module = [key for key in task if key.startswith("awx.awx.")]
        assert len(module) == 1, task
        yield task, module[0]


def test_setup_playbook_passes_syntax_check():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"))
    subprocess.run([os.path.join(BIN, "ansible-playbook"), "--syntax-check", SETUP], check=True, env=env,
                   capture_output=True, text=True)


def test_setup_playbook_options_are_awx_awx_options():
    specs = {}
    for task, module in awx_tasks():
        if module not in specs:
            doc = subprocess.run([os.path.join(BIN, "ansible-doc"), "-j", module], check=True, capture_output=True,
                                 text=True).stdout
            options = json.loads(doc)[module]["doc"]["options"]
            specs[module] = set(options) | set(alias for option in options.values()
                                               for alias in option.get("aliases", []))
        unknown = set(task[module]) - specs[module]
        assert not unknown, "%s: %s takes no %s" % (task["name"], module, sorted(unknown))
    covered = set(specs)
    assert {"awx.awx.credential_type", "awx.awx.credential", "awx.awx.job_template", "awx.awx.schedule",
            "awx.awx.execution_environment"} <= covered
    # Tasks that carry credential inputs are no_log.
    for task, module in awx_tasks():
        if module == "awx.awx.credential":
            assert task.get("no_log") is True, task["name"]


def test_schedules_are_weekly_and_daily():  # and the snapshot job's daily
    with open(SETUP) as handle:
        (play,) = yaml.safe_load(handle)
    variables = play["vars"]
    render = jinja2.Environment().from_string
    start = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)

    def next_runs(rule_var):
        text = render(variables[rule_var]).render(**variables)
        rule = rrule.rrulestr(text.replace(" RRULE", "\nRRULE"), forceset=True)
        runs = list(rule.xafter(start, count=3))
        return [b - a for a, b in zip(runs, runs[1:])]

    assert next_runs("keyops_awx_weekly_rrule") == [datetime.timedelta(days=7)] * 2
    assert next_runs("keyops_awx_daily_rrule") == [datetime.timedelta(days=1)] * 2
    assert next_runs("keyops_awx_snapshot_rrule") == [datetime.timedelta(days=1)] * 2
    templates = dict((task[module]["name"], task[module]) for task, module in awx_tasks()
                     if module == "awx.awx.job_template")
    schedules = [task[module] for task, module in awx_tasks() if module == "awx.awx.schedule"]
    assert {schedule["unified_job_template"] for schedule in schedules} == set(templates)
    assert sorted(template["playbook"] for template in templates.values()) == [
        "playbooks/rotate_keys.yml", "playbooks/rotate_keys.yml", "playbooks/vault_snapshot.yml"]
    for template in templates.values():
        assert os.path.exists(os.path.join(ROOT, template["playbook"]))


def test_snapshot_job_passes_what_the_snapshot_playbook_reads():
    templates = dict((task[module]["name"], task[module]) for task, module in awx_tasks()
                     if module == "awx.awx.job_template")
    job = templates["keyops vault raft snapshot"]
    with open(os.path.join(ROOT, job["playbook"])) as handle:
        text = handle.read()
    (play,) = yaml.safe_load(text)
    assert set(job["extra_vars"]) <= set(re.findall(r"\b(vault_snapshot_[a-z_]+)\b", text))
    assert play["hosts"].startswith("{{ vault_snapshot_hosts")
    # its own least-privilege AppRole, never the rotation's, and a host that keeps the file (not the EE)
    assert job["credentials"] == ["keyops Vault (snapshot AppRole)"] and job["limit"] == job["extra_vars"][
        "vault_snapshot_hosts"]
