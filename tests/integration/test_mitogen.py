"""The fast path: rotate_keys.yml and the keyrepo role under mitogen's linear strategy (mitogen_linear).

The same invariants as under the default strategy - a full rotation completes, a re-run changes nothing, no
plaintext, token or key in even -vvv output - and proof that mitogen really ran the plays.
"""

import json
import os
import subprocess
import sys

import yaml

from lab import seed

from _ansible import ROOT, mitogen_env
from keyrepo_helpers import KeystoneNodes
from rotation_helpers import Rotation

KEYS = {"fast-alpha": ([60, 40], None), "fast-beta": ([30], "secret")}
# What ansible-core prints when it loads a strategy from outside ansible.builtin.
THIRD_PARTY_STRATEGY = "Use of strategy plugins not included in ansible.builtin are deprecated"
CALLBACKS = ("record_strategy",)


def recap(run):
    return run.stdout.split("PLAY RECAP")[1]


def assert_mitogen_ran(run, record_path):
    """Every play that ran a task ran under mitogen_linear, per the record_strategy callback: mitogen's wrappers
    were around the action and connection loaders (its action mixin, mitogen_local for ansible's local
    connection) and its connection multiplexer (the classic worker model) was up."""
    with open(str(record_path) + ".strategy") as handle:
        plays = [json.loads(line) for line in handle if line.strip()]
    assert plays, run.output[-3000:]
    for play in plays:
        assert play["strategy"] == "mitogen_linear", play
        assert play["action_loader"] == play["connection_loader"] == "ansible_mitogen.strategy", play
        assert play["mitogen_worker_model"] == "ClassicWorkerModel", play
    assert THIRD_PARTY_STRATEGY in run.output


def test_rotate_keys_under_mitogen_completes_is_idempotent_and_leaks_nothing(vault, transit_mount, tmp_path):
    rotation = Rotation(vault, transit_mount, tmp_path, KEYS, rotate_older_than="{{ age | default('30d') }}")
    env = mitogen_env()
    # The Vault modules through mitogen's own module runner, as for a task on another host (on the controller
    # the collection otherwise runs them inside the worker process, under either strategy).
    first = rotation.run("-e", "age=0s", "-e", "keyops_lifecycle_in_process=false", "-vvv", env=env,
                         callbacks=CALLBACKS, expect_rc=0)
    assert_mitogen_ran(first, tmp_path / "run-1.jsonl")
    assert "in the worker process" not in first.output and "AnsiballZ_" not in first.output
    rotation.check_complete()
    report = rotation.report()
    assert report["fast-alpha"]["rotated"] is True and report["fast-beta"]["rotated"] is True
    assert report["fast-alpha"]["consumers"][0]["census_after"] == {"3": 100}
    assert report["fast-beta"]["consumers"][0]["census_after"] == {"2": 30}
    assert "changed=0" not in recap(first)

    # Nothing in the whole -vvv output: not one seeded plaintext, not the Vault token.
    plaintexts = [value for name, (per_version, _field) in KEYS.items()
                  for value in seed.expected_plaintexts(name, per_version)]
    assert vault.token not in first.output
    assert [value for value in plaintexts if value in first.output] == []

    # The same schedule again (the modules in the worker process again): nothing is due, nothing changes,
    # every ciphertext still decrypts.
    second = rotation.run(env=env, callbacks=CALLBACKS, expect_rc=0)
    assert_mitogen_ran(second, tmp_path / "run-2.jsonl")
    assert "changed=0" in recap(second) and "failed=0" in recap(second)
    assert not [entry["task"] for entry in second.results if entry["result"].get("changed")]
    assert rotation.report()["fast-alpha"]["rotated"] is False
    rotation.check_complete()


def test_keyrepo_role_under_mitogen_ends_consistent_and_is_idempotent(tmp_path):
    nodes = KeystoneNodes(tmp_path, count=3)
    env = mitogen_env()
    # The key repository modules through mitogen's module runner, as on real keystone nodes (these nodes are
    # local directories, where the collection would otherwise run them inside the worker process).
    worker_off = ["-e", "keyops_lifecycle_in_process=false"]
    # Set-up run: every node gets the same staged and primary key, then one rotation.
    first = nodes.rotate(args=["-vvv"] + worker_off, env=env, callbacks=CALLBACKS)
    assert "in the worker process" not in first.output
    assert_mitogen_ran(first, tmp_path / "keyrepo-1.jsonl")
    # The modules ran in mitogen's interpreters: ansible's local connection (which logs every connection and
    # every AnsiballZ file it copies at -vvv) was never used.
    assert "ESTABLISH LOCAL CONNECTION" not in first.output and "AnsiballZ_" not in first.output
    assert nodes.consistent() and sorted(nodes.keys("ks0")) == [0, 1, 2]
    for node in nodes.nodes:  # no key material in the output, even at -vvv
        assert not any(material in first.output for material in nodes.keys(node).values())

    second = nodes.rotate(args=worker_off, env=env, callbacks=CALLBACKS)
    assert_mitogen_ran(second, tmp_path / "keyrepo-2.jsonl")
    assert "changed=0" not in recap(second)
    assert nodes.consistent() and sorted(nodes.keys("ks0")) == [0, 2, 3]

    # A retried job right after that rotation: nothing rotates, nothing changes on any node.
    before = {node: nodes.keys(node) for node in nodes.nodes}
    again = nodes.rotate(args=["-e", "keyrepo_min_rotation_age=3600"] + worker_off, env=env, callbacks=CALLBACKS)
    assert_mitogen_ran(again, tmp_path / "keyrepo-3.jsonl")
    assert "changed=0" in recap(again) and "failed=0" in recap(again)
    assert {node: nodes.keys(node) for node in nodes.nodes} == before


def test_execution_environment_links_the_strategies_so_the_strategy_name_alone_enables_mitogen(tmp_path, monkeypatch):
    """The image's step that puts mitogen's strategy plugins on ansible-core's default strategy path, run here
    with the default path's other half ($ANSIBLE_HOME/plugins/strategy) in place of /usr/share/ansible: then
    ANSIBLE_STRATEGY=mitogen_linear alone, no ANSIBLE_STRATEGY_PLUGINS, runs the keyrepo role under mitogen."""
    import ansible.constants  # pylint: disable=import-outside-toplevel

    default = ansible.constants.config.get_configuration_definitions()["DEFAULT_STRATEGY_PLUGIN_PATH"]["default"]
    assert "ANSIBLE_HOME ~ \"/plugins/strategy:/usr/share/ansible/plugins/strategy\"" in default
    with open(os.path.join(ROOT, "meta", "execution-environment.yml")) as handle:
        steps = yaml.safe_load(handle)["additional_build_steps"]["append_final"]
    (link,) = [step for step in steps if "/usr/share/ansible/plugins/strategy" in step]
    home = tmp_path / "ansible-home"
    subprocess.run(["/bin/sh", "-ec", link[len("RUN "):].replace("/usr/share/ansible", str(home))],
                   env=dict(os.environ, PYCMD=sys.executable), check=True)
    assert os.path.isfile(home / "plugins" / "strategy" / "mitogen_linear.py")

    monkeypatch.delenv("ANSIBLE_STRATEGY_PLUGINS", raising=False)
    nodes = KeystoneNodes(tmp_path, count=2)
    run = nodes.rotate(env={"ANSIBLE_HOME": str(home), "ANSIBLE_STRATEGY": "mitogen_linear"}, callbacks=CALLBACKS)
    assert_mitogen_ran(run, tmp_path / "keyrepo-1.jsonl")
    assert nodes.consistent() and sorted(nodes.keys("ks0")) == [0, 1, 2]
