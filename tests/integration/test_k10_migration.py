"""the K10 migration-string failure end to end: K10 upgrade on the source -> imports fail with chacha20poly1305 -> k10_migration fixes it;
and the reinstall-without-DR case, reported as what it is."""

import time

import pytest

from lab.kube_lab import EXPORT_POLICY, IMPORT_POLICY

POLICIES = ("config.kio.kasten.io", "v1alpha1", "kasten-io", "policies")
ACTIONS = ("actions.kio.kasten.io", "v1alpha1", "kasten-io", "runactions")


def receive_string(k10, which, policy, action):
    spec = k10.custom(which).get_namespaced_custom_object(*POLICIES, policy)["spec"]
    (entry,) = [a for a in spec["actions"] if a["action"] == action]
    return entry["%sParameters" % action]["receiveString"]


def source_string(k10, previous=None, timeout=10):
    """The export policy's string (K10 rewrites it after an upgrade; wait for a new one when asked)."""
    deadline = time.monotonic() + timeout
    while True:
        value = receive_string(k10, "source", EXPORT_POLICY, "export")
        if value != previous or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def run_import_directly(k10, name):
    """What K10's schedule does: a RunAction on the import policy, polled until it ends."""
    custom = k10.custom("destination")
    custom.create_namespaced_custom_object(*ACTIONS, {
        "apiVersion": "actions.kio.kasten.io/v1alpha1", "kind": "RunAction", "metadata": {"name": name},
        "spec": {"subject": {"kind": "Policy", "name": IMPORT_POLICY, "namespace": "kasten-io"}}})
    for _attempt in range(100):
        status = custom.get_namespaced_custom_object(*ACTIONS, name).get("status") or {}
        if status.get("state") in ("Complete", "Failed"):
            return status
        time.sleep(0.1)
    raise AssertionError("the action did not finish")


def migration_role(k10):
    pair = {"name": "lab", "source": {"context": "lab-source", "policy": EXPORT_POLICY},
            "destination": {"context": "lab-destination", "policy": IMPORT_POLICY}}
    return [{"name": "migrate", "ansible.builtin.include_role": {"name": "keyops.lifecycle.k10_migration"},
             "vars": {"k10_migration_pairs": [pair], "k10_migration_timeout": 30}},
            {"name": "results", "ansible.builtin.debug": {"var": "k10_migration_results"}}]


def test_stale_migration_string_after_source_upgrade(ansible, k10):
    env = {"K8S_AUTH_KUBECONFIG": k10.kubeconfig_path}
    k10.operation("source", "export", {"policy": EXPORT_POLICY})
    assert run_import_directly(k10, "before-upgrade")["state"] == "Complete"

    old = source_string(k10)
    k10.operation("source", "upgrade")
    new = source_string(k10, previous=old)
    assert new != old and receive_string(k10, "destination", IMPORT_POLICY, "import") == old
    k10.operation("source", "export", {"policy": EXPORT_POLICY})
    failed = run_import_directly(k10, "after-upgrade")
    # the K10 migration-string failure's error chain, nested as K10 reports it.
    assert failed["state"] == "Failed" and failed["error"]["message"] == "Job failed to be executed"
    root = failed["error"]["cause"]["cause"]["cause"]
    assert root["message"] == "chacha20poly1305: message authentication failed"
    assert failed["error"]["cause"]["cause"]["function"] == "kasten.io/k10/kio/crypto.(*easyAE).Open"

    task = {"name": "propagate", "keyops.lifecycle.k10_import_policy": {
        "context": "lab-destination", "name": IMPORT_POLICY,
        "source": {"context": "lab-source", "policy": EXPORT_POLICY}}}
    check = ansible([task], env=env, check=True, diff=True, verbosity=3, expect_rc=0)
    result = check.task("propagate")
    assert result["changed"] is True and result["receive_string_changed"] is True
    assert result["diff"]["before"]["importParameters.receiveString"].startswith("(hidden)")
    assert receive_string(k10, "destination", IMPORT_POLICY, "import") == old  # check mode changed nothing

    fixed = ansible(migration_role(k10), env=env, verbosity=3, expect_rc=0)
    (pair,) = fixed.task("results")["k10_migration_results"]
    assert pair["ok"] is True and pair["receive_string_changed"] is True and pair["action"]["state"] == "Complete"
    assert receive_string(k10, "destination", IMPORT_POLICY, "import") == new
    for secret in (old, new):  # migration strings never appear, even with -vvv
        assert secret not in fixed.output and secret not in check.output

    again = ansible([task], env=env, diff=True, expect_rc=0).task("propagate")
    assert again["changed"] is False and again["receive_string_changed"] is False


def test_source_reinstalled_without_dr_is_reported_distinctly(ansible, k10):
    env = {"K8S_AUTH_KUBECONFIG": k10.kubeconfig_path}
    k10.operation("source", "export", {"policy": EXPORT_POLICY})  # sealed with the first primary key
    old = source_string(k10)
    k10.operation("source", "reinstall", {"no_dr": True})
    new = source_string(k10, previous=old)
    assert new != old
    run = ansible(migration_role(k10), env=env)
    assert run.rc != 0, run.output
    (pair,) = [r for r in run.results if r["task"] == "migrate" or "k10_migration_results" in r["result"].get(
        "ansible_facts", {})][-1]["result"]["ansible_facts"]["k10_migration_results"]
    assert pair["ok"] is False and pair["case"] == "source_reinstalled" and pair["receive_string_changed"] is True
    assert "reinstalled without its disaster-recovery restore" in pair["msg"]
    assert "chacha20poly1305: message authentication failed" in pair["msg"]
    # The string was still propagated: what the destination holds now is the source's current one.
    assert receive_string(k10, "destination", IMPORT_POLICY, "import") == new


def test_import_policy_errors(ansible, k10):
    env = {"K8S_AUTH_KUBECONFIG": k10.kubeconfig_path, "K8S_AUTH_CONTEXT": "lab-destination"}
    missing = ansible([{"name": "p", "keyops.lifecycle.k10_import_policy": {
        "name": "no-such-policy", "receive_string": "abc"}}], env=env)
    assert missing.rc != 0 and "import policy kasten-io/no-such-policy does not exist" in missing.task("p")["msg"]
    no_source = ansible([{"name": "p", "keyops.lifecycle.k10_import_policy": {
        "name": IMPORT_POLICY, "source": {"context": "lab-source", "policy": "nope"}}}], env=env)
    assert no_source.rc != 0 and "policy kasten-io/nope not found (404)" in no_source.task("p")["msg"]
    wrong_kind = ansible([{"name": "p", "keyops.lifecycle.k10_import_policy": {
        "name": IMPORT_POLICY, "source": {"context": "lab-destination", "policy": IMPORT_POLICY}}}], env=env)
    assert wrong_kind.rc != 0 and "has no export action" in wrong_kind.task("p")["msg"]
    neither = ansible([{"name": "p", "keyops.lifecycle.k10_import_policy": {"name": IMPORT_POLICY}}], env=env)
    assert neither.rc != 0 and "one of the following is required" in neither.task("p")["msg"]


@pytest.mark.parametrize("given", ["direct"])
def test_receive_string_given_directly(ansible, k10, given):
    env = {"K8S_AUTH_KUBECONFIG": k10.kubeconfig_path, "K8S_AUTH_CONTEXT": "lab-destination"}
    k10.operation("source", "upgrade")
    current = source_string(k10, previous=receive_string(k10, "destination", IMPORT_POLICY, "import"))
    k10.operation("source", "export", {"policy": EXPORT_POLICY})
    task = {"name": "p", "no_log": False, "keyops.lifecycle.k10_import_policy": {
        "name": IMPORT_POLICY, "receive_string": current, "run": True}}
    run = ansible([task], env=env, verbosity=3, expect_rc=0)
    assert run.task("p")["action"]["state"] == "Complete" and current not in run.output
