"""P4: rotate + distribute a keystone fernet repository to 20 nodes over SSH - the keyrepo role vs rsync.

20 separate SSH hosts (lab/sshnet.py: a network namespace and an sshd each, on one bridge). Both sides are
whole ansible-playbook runs over the same inventory with the same connection settings: real SSH, one
ControlMaster per host kept for the run (ControlPersist), pipelining on, forks 20, every run starting cold
(fresh control sockets, as a scheduled job does), with the linear strategy and with mitogen's.

* baseline, as kolla-ansible (``fernet-rotate.sh`` + ``fernet-push.sh``) and openstack-ansible
  (``keystone-fernet-rotate.sh``) do it: on the first node ``keystone-manage fernet_rotate`` (keystone's own
  code, from build/keystone-venv), then from that node ``rsync -az --delete -e ssh`` to every other node, one
  after the other - two tasks on node 1, the copies going node to node over SSH;
* ours: the keyops.lifecycle.keyrepo role over all 20 hosts.

Keystone validators (keystone's own key loader, lab/keyrepo_race.py ``watch``) watch all 20 repositories
during every run and count false rejections.  Each strategy: 3 alternated pairs (benchmarks/conftest.py
``alternated_pairs``), the ratio is the median of the per-pair ratios.  Target: <= 1.5x, 0 false rejections.

``test_p4_profile_over_ssh`` prints a per-task profile (ansible.posix.profile_tasks) of one run of each side
(without validators), and of a baseline pushing to all nodes at once (``&``/``wait``; no project does it - for
comparison only), into build/p4-profile-*.txt.
"""

import base64
import os
import shutil
import tempfile
import time

import pytest
import yaml

from lab import sshnet
from lab.keystone_lab import KeystoneConfig, keystone_manage

from _ansible import ansible_playbook
from conftest import ROOT, STRATEGIES, alternated_pairs, record, strategy_env
from keyrepo_helpers import KeystoneNodes

NODES = 20
PAIRS = 3
TARGET = 1.5


@pytest.fixture(scope="module")
def ssh_hosts(tmp_path_factory):
    reason = sshnet.available()
    if reason:
        pytest.skip(reason)
    with sshnet.SshHosts(str(tmp_path_factory.mktemp("p4-ssh")), NODES) as hosts:
        yield hosts


class Lab:
    """The 20 nodes, keystone's config on node 1, and one run of either side over SSH."""

    def __init__(self, tmp_path, hosts):
        self.tmp_path, self.hosts = tmp_path, hosts
        self.nodes = KeystoneNodes(tmp_path, ssh_hosts=hosts)
        self.first = self.nodes.nodes[0]
        self.conf = KeystoneConfig(str(tmp_path / "ks"))
        # keystone-manage rotates the first node's repository in place
        receipts = tmp_path / "receipts"
        with open(self.conf.path, "w") as handle:
            handle.write("[fernet_tokens]\nkey_repository = %s\nmax_active_keys = 3\n[fernet_receipts]\n"
                         "key_repository = %s\n" % (self.nodes.paths[self.first], receipts))
        # keystone-manage fernet_rotate rotates the receipt repository too: give it one
        os.makedirs(str(receipts), mode=0o700, exist_ok=True)
        for index in (0, 1):
            with open(str(receipts / str(index)), "w") as handle:
                handle.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
        self.baseline = self.baseline_playbook()
        self.baseline_parallel = self.baseline_playbook(parallel=True)
        self.runs = 0
        self.counts = {}

    def baseline_playbook(self, parallel=False):
        """kolla-ansible's and openstack-ansible's push, one node after the other; ``parallel``: all at once (no
        project does that - a stronger baseline, for comparison only)."""
        source = self.nodes.paths[self.first]
        push = ["set -o errexit"]
        for node in self.nodes.nodes[1:]:
            push.append("rsync -az --delete -e '%s' %s/ root@%s:%s/" % (
                self.hosts.ssh_command(), source, self.hosts.address(node), self.nodes.paths[node]))
            if parallel:
                push[-1] += " & pids=\"$pids $!\""
        if parallel:
            push.append("for pid in $pids; do wait $pid; done")
        plays = [{"name": "keystone-manage fernet_rotate on the first node, then rsync --delete to the others",
                  "hosts": self.first, "gather_facts": False, "tasks": [
                      {"name": "keystone-manage fernet_rotate", "ansible.builtin.command": {"argv": [
                          keystone_manage(), "--config-file", self.conf.path, "fernet_rotate", "--keystone-user",
                          str(os.getuid()), "--keystone-group", str(os.getgid())]}, "changed_when": True},
                      {"name": "rsync -az --delete to every other node, %s" % (
                          "all at once" if parallel else "one after the other"),
                       "ansible.builtin.shell": {"cmd": "\n".join(push)}, "changed_when": True}]}]
        path = self.tmp_path / ("baseline-parallel.yml" if parallel else "baseline.yml")
        path.write_text(yaml.safe_dump(plays, width=10000))
        return path

    def run(self, side, strategy, watch=True, callbacks=(), env=None):
        """One cold run of ``side``; returns (seconds of the ansible-playbook run, the PlaybookRun)."""
        self.runs += 1
        control = tempfile.mkdtemp(prefix="p4cp", dir="/tmp")  # short: socket paths are limited
        run_env = dict(sshnet.SshHosts.ansible_env(control), **strategy_env(strategy))
        run_env.update(env or {})
        if watch:
            self.nodes.start_watching(nice=0, pause=0)  # validators at full speed, as measured
        try:
            start = time.perf_counter()
            if side == "ours":
                result = self.nodes.rotate(env=run_env, callbacks=callbacks)
            else:
                playbook = self.baseline_parallel if side == "baseline-parallel" else self.baseline
                result = ansible_playbook(playbook, self.tmp_path / ("baseline-%d.jsonl" % self.runs),
                                          inventory=str(self.nodes.inventory), args=["-f", str(NODES)],
                                          env=run_env, callbacks=callbacks, expect_rc=0)
            seconds = time.perf_counter() - start
            if watch:
                time.sleep(0.5)  # let the validators see the settled state too
        finally:
            try:
                if watch:
                    counts = self.nodes.stop_watching()
                    (self.tmp_path / "stop-watch").unlink()
            finally:
                sshnet.SshHosts.close_masters(control)
                shutil.rmtree(control, ignore_errors=True)
        if watch:
            for key in ("false_rejections", "validations", "issue_failures"):
                self.counts.setdefault(side, {}).setdefault(key, []).append(counts[key])
            # which keys the rejected tokens were made with and what the node held (short hashes, never keys)
            self.counts[side].setdefault("rejection_samples", []).extend(counts.get("rejection_samples", [])[:3])
        assert self.nodes.consistent(), "%s left the nodes inconsistent" % side
        return seconds, result


def median(values):
    return sorted(values)[len(values) // 2]


@pytest.mark.bench
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_p4_keyrepo_vs_rsync_over_ssh(tmp_path, ssh_hosts, strategy):
    lab = Lab(tmp_path, ssh_hosts)
    lab.run("ours", strategy, watch=False)  # same starting point for both: 20 identical repositories
    baseline, ours, ratio = alternated_pairs(lambda: lab.run("baseline", strategy)[0],
                                             lambda: lab.run("ours", strategy)[0], pairs=PAIRS)
    record("P4 keyrepo rotate+distribute to %d nodes over SSH (%s)" % (NODES, strategy),
           strategy=strategy, baseline_seconds=baseline, ours_seconds=ours,
           baseline_median_seconds=median(baseline), ours_median_seconds=median(ours),
           ratio_median_of_pairs=ratio, target_ratio=TARGET,
           pair_ratios=[round(o / b, 2) for o, b in zip(ours, baseline)],
           ours_false_rejections=lab.counts["ours"]["false_rejections"],
           baseline_false_rejections=lab.counts["baseline"]["false_rejections"],
           ours_validations=lab.counts["ours"]["validations"],
           baseline_validations=lab.counts["baseline"]["validations"],
           ours_issue_failures=lab.counts["ours"]["issue_failures"],
           baseline_issue_failures=lab.counts["baseline"]["issue_failures"], pairs=PAIRS,
           ours_rejection_samples=lab.counts["ours"]["rejection_samples"],
           baseline_rejection_samples=lab.counts["baseline"]["rejection_samples"][:3])
    assert sum(lab.counts["ours"]["false_rejections"]) == 0
    assert sum(lab.counts["ours"]["issue_failures"]) == 0


def profile_lines(output):
    """profile_tasks' summary (execution order): ``task name ---- 1.23s`` lines after the recap."""
    lines = output.split("PLAY RECAP", 1)[-1].splitlines()
    return [line.strip() for line in lines if line.rstrip().endswith("s") and " -" in line]


@pytest.mark.bench
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_p4_profile_over_ssh(tmp_path, ssh_hosts, strategy):
    lab = Lab(tmp_path, ssh_hosts)
    lab.run("ours", strategy, watch=False)
    env = {"PROFILE_TASKS_SORT_ORDER": "none", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "100"}
    out_dir = os.path.join(ROOT, "build")
    for side in ("baseline", "ours", "baseline-parallel"):
        seconds, run = lab.run(side, strategy, watch=False, callbacks=("ansible.posix.profile_tasks",), env=env)
        text = "%s, %s, whole run %.2f s\n%s\n" % (side, strategy, seconds, "\n".join(profile_lines(run.stdout)))
        with open(os.path.join(out_dir, "p4-profile-%s-%s.txt" % (side, strategy)), "w") as handle:
            handle.write(text)
        print("\n" + text)
