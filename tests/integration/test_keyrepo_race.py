"""the keystone rsync race measured: 0 false rejections with the keyrepo protocol, and what rsync --delete does.

Validators use keystone's own key loader (re-read on every validation) in keystone's own venv.
"""

import json
import os
import subprocess

import pytest

from lab.keystone_lab import keystone_python

from _ansible import kill_what_is_left
from keyrepo_helpers import RACE, KeystoneNodes


RESULTS = os.path.join(os.path.dirname(RACE), "..", "build", "test-results")
ROLE_TASKS = 13  # task starts in one run of the keyrepo role (checked below)


def assert_watched(counts, boundaries):
    """The validators validated every node at each of at least ``boundaries`` task boundaries (the runs waited
    for them there) and rejected no valid token: a watcher starved of CPU fails the test instead of passing it."""
    assert counts["starved"] == [], counts["starved"]
    assert counts["barriers"] >= boundaries, counts
    assert counts["false_rejections"] == 0 and counts["issue_failures"] == 0, counts


def race(tmp_path, protocol, rotations, **extra):
    argv = [keystone_python(), "-W", "ignore", RACE, "--protocol", protocol, "--nodes", "5", "--rotations",
            str(rotations), "--workdir", str(tmp_path / protocol)]
    for key, value in extra.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "keyrepo-race-%s.json" % protocol), "w") as handle:
        json.dump(result, handle)
    return result


# settle_seconds=0.05: make test runs it on its own (marker race), see pytest.ini
@pytest.mark.race
def test_our_protocol_has_no_false_rejections_over_1000_rotations(tmp_path):
    ours = race(tmp_path, "ours", 1000, settle_seconds=0.05)
    assert ours["rotations"] == 1000 and ours["validations"] > 10000
    assert ours["false_rejections"] == 0 and ours["issue_failures"] == 0 and ours["consistent"] is True
    assert ours["primary_index"] == 1001


# settle_seconds=0.05: make test runs it on its own (marker race), see pytest.ini
@pytest.mark.race
def test_merged_promote_and_purge_has_no_false_rejections_and_the_harness_sees_a_wrong_one(tmp_path):
    """The role's merged pass (max_active_keys 3: promote and purge in one step per node), nodes one after the
    other in a random order so that promoted-and-purged nodes and not-yet-promoted ones coexist on every
    rotation: 0 false rejections.  The control purges one key more in that step (the previous primary, still
    used by the nodes not promoted yet): the validators must reject tokens, or they could not tell."""
    merged = race(tmp_path, "ours-merged", 200, max_active_keys=3, settle_seconds=0.05)
    assert merged["rotations"] == 200 and merged["validations"] > 2000, merged
    assert merged["false_rejections"] == 0 and merged["issue_failures"] == 0 and merged["consistent"] is True
    assert merged["primary_index"] == 201
    unsafe = race(tmp_path, "unsafe-merged", 20, max_active_keys=3, settle_seconds=0.05)
    assert unsafe["false_rejections"] > 0, unsafe


def test_rsync_baseline_rejects_valid_tokens(tmp_path):
    """keystone's rotation on one node + rsync -a --delete to the others: the false 401s of the keystone rsync race."""
    baseline = race(tmp_path, "baseline", 40, stop_after_rejections=1)
    assert baseline["false_rejections"] > 0, baseline


@pytest.mark.compat
def test_role_rotations_with_validators_running(tmp_path):
    nodes = KeystoneNodes(tmp_path)
    nodes.rotate()  # set-up run: every node gets the same staged and primary key, then one rotation
    nodes.start_watching()
    try:
        for _round in range(3):
            run = nodes.rotate()
            assert "changed=0" not in run.stdout.split("PLAY RECAP")[1]
    finally:
        counts = nodes.stop_watching()
    assert_watched(counts, 3 * (ROLE_TASKS + 1))
    assert nodes.consistent() and sorted(nodes.keys("ks0")) == [0, 4, 5]


PROMOTE = "(c) Promote the staged key on every node (and purge what exceeds max_active_keys)"
PURGE = "(d) Purge what exceeds max_active_keys on every node (unless purged with the promotion)"


def test_role_merged_pass_keeps_the_key_unpromoted_nodes_still_use(tmp_path):
    """forks 1: the nodes promote (and purge, max_active_keys 3) one after the other, so for seconds some have
    purged while the others still issue tokens with the previous primary.  Validators on every node would reject
    those tokens wherever that key was purged: this fails if the merged pass removed a key still in use."""
    nodes = KeystoneNodes(tmp_path, count=4)
    nodes.rotate()
    nodes.start_watching()
    try:
        for _round in range(3):
            run = nodes.rotate(args=["-f", "1"])
            promoted = [r for r in run.results if r["task"] == PROMOTE]
            assert len(promoted) == 4 and all(r["result"]["actions"][-1].startswith("remove") for r in promoted)
            assert run.status(PURGE) == "skipped"  # purged in the promotion, no separate pass
    finally:
        counts = nodes.stop_watching()
    assert_watched(counts, 3 * (ROLE_TASKS + 1))
    assert nodes.consistent() and len(nodes.keys("ks0")) == 3


def test_role_with_two_keys_purges_after_every_node_promoted(tmp_path):
    """max_active_keys 2 leaves no room for the previous primary: promotion and purge stay separate passes."""
    nodes = KeystoneNodes(tmp_path, count=2, max_active_keys=2)
    nodes.rotate()
    run = nodes.rotate()
    assert [r["result"]["actions"] for r in run.results if r["task"] == PROMOTE] == [["link 0 -> 3", "write 0"]] * 2
    assert [r["result"]["actions"] for r in run.results if r["task"] == PURGE] == [["remove 2"]] * 2
    assert nodes.consistent() and sorted(nodes.keys("ks0")) == [0, 3]


def test_role_over_real_ssh_between_separate_hosts(tmp_path):
    """Three hosts, each its own network namespace and sshd: the role's transfers and barriers over real SSH."""

    from lab import sshnet

    reason = sshnet.available()
    if reason:
        pytest.skip(reason)
    with sshnet.SshHosts(str(tmp_path / "ssh"), 3) as hosts:
        nodes = KeystoneNodes(tmp_path, ssh_hosts=hosts)
        nodes.rotate()
        assert "ansible_connection=local" not in nodes.inventory.read_text()
        os.unlink(os.path.join(nodes.paths["ssh2"], "2"))  # ssh2 missed the last primary
        second = nodes.rotate()
        # the key really travelled: slurped from the reference over SSH, then synced to ssh2
        synced = [r for r in second.results if r["task"].endswith("Add the missing keys (never removing one)")
                  and r["result"].get("changed")]
        assert [r["host"] for r in synced] == ["ssh2"] and synced[0]["result"]["actions"] == ["write 2"]
        nodes.start_watching()
        try:
            third = nodes.rotate()
        finally:
            counts = nodes.stop_watching()
        assert_watched(counts, ROLE_TASKS + 1)
        assert nodes.consistent() and sorted(nodes.keys(nodes.nodes[0])) == [0, 3, 4]
        assert "changed=0" not in third.stdout.split("PLAY RECAP")[1]


def test_reconcile_adds_keys_and_never_removes(tmp_path):
    nodes = KeystoneNodes(tmp_path)
    nodes.rotate()
    loud = nodes.rotate(args=["-vvv"])  # keys 0, 2, 3 everywhere
    for node in nodes.nodes:  # no key material in any output, even at -vvv
        assert not any(material in loud.output for material in nodes.keys(node).values())
    os.unlink(os.path.join(nodes.paths["ks3"], "3"))  # a node that missed a promotion's key
    for name in os.listdir(nodes.paths["ks4"]):
        os.unlink(os.path.join(nodes.paths["ks4"], name))  # and a brand-new node
    run = nodes.rotate()
    sync_task = "Add the missing keys (never removing one)"
    synced = {r["host"]: r["result"] for r in run.results
              if r["task"].endswith(sync_task) and r["status"] != "skipped"}
    assert set(synced) == {"ks3", "ks4"}
    assert nodes.consistent() and sorted(nodes.keys("ks0")) == [0, 3, 4]


def test_diverged_repositories_are_refused(tmp_path):
    nodes = KeystoneNodes(tmp_path, count=2)
    nodes.rotate()
    with open(os.path.join(nodes.paths["ks1"], "2"), "w") as handle:
        import base64
        handle.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
    run = nodes.rotate(expect_rc=2)
    assert "key 2 differs between" in run.output and "diverged" in run.output


def crash_and_resume(nodes, **crash):
    """Crash a run as ``crash`` says (controller and modules), re-run; returns each node's primary index right
    after the crash."""
    run = nodes.rotate(callbacks=("crash_at",), expect_rc=None, **crash)
    assert run.killed, "not interrupted:\n" + run.output
    kill_what_is_left(nodes.tmp_path / ("keyrepo-%d.jsonl" % nodes.runs))
    primaries = dict((node, max(nodes.keys(node))) for node in nodes.nodes)
    nodes.rotate()
    assert nodes.consistent()
    return primaries


def test_role_crash_at_every_phase_then_rerun(tmp_path):
    """SIGKILL of the controller at every task boundary of the role, and once inside the promotion,
    each followed by a re-run, with keystone validators running the whole time."""
    nodes = KeystoneNodes(tmp_path, count=3)
    log = tmp_path / "tasks.log"
    nodes.rotate(callbacks=("crash_at",), env={"KEYOPS_CRASH_TASK_LOG": str(log)})
    assert len(log.read_text().splitlines()) == ROLE_TASKS, log.read_text()
    nodes.start_watching()
    try:
        for boundary in range(2, ROLE_TASKS + 1):
            crash_and_resume(nodes, env={"KEYOPS_CRASH_AT_TASK": str(boundary)})
        # inside the promotion: the module pauses (settle_seconds) between the link and the new 0
        promote_start = [i for i, name in enumerate(log.read_text().splitlines(), 1) if "(c) Promote" in name][0]
        crash_and_resume(nodes, env={"KEYOPS_CRASH_AT_TASK": str(promote_start),
                                     "KEYOPS_CRASH_AFTER_SECONDS": "0.9"})
        # forks 1 and a short pause: inside the merged pass, when some nodes have promoted and purged and the
        # others have not promoted yet (or are between the link and the new 0)
        mixed = [crash_and_resume(nodes, args=["-f", "1", "-e", "keyrepo_settle_seconds=0.5"],
                                  env={"KEYOPS_CRASH_AT_TASK": str(promote_start),
                                       "KEYOPS_CRASH_AFTER_SECONDS": seconds})
                 for seconds in ("1.0", "1.5", "2.0")]
    finally:
        counts = nodes.stop_watching()
    # every crashed run passed the boundaries before its crash, every re-run all of them
    assert_watched(counts, (ROLE_TASKS + 3) * (ROLE_TASKS + 1))
    assert nodes.consistent()
    assert len(nodes.keys("ks0")) == 3
    # at least one of those crashes left nodes at different primaries (the timing depends on the machine's load)
    assert any(len(set(primaries.values())) > 1 for primaries in mixed), mixed
