"""Several "keystone nodes" (one repository each) for the keyrepo role, with keystone validators watching."""

import json
import os
import subprocess
import time

import yaml

from lab.keystone_lab import keystone_python
from _ansible import ANSIBLE_PYTHON, ROOT, ansible_playbook

RACE = os.path.join(ROOT, "lab", "keyrepo_race.py")


class KeystoneNodes:
    def __init__(self, tmp_path, count=5, max_active_keys=3, ssh_hosts=None):
        """``count`` local nodes, or the hosts of ``ssh_hosts`` (lab.sshnet.SshHosts) reached over SSH."""
        self.tmp_path = tmp_path
        self.nodes = [h["name"] for h in ssh_hosts.hosts] if ssh_hosts else ["ks%d" % i for i in range(count)]
        self.paths = {node: str(tmp_path / "repos" / node) for node in self.nodes}
        self.inventory = tmp_path / "keystone.ini"
        if ssh_hosts:
            lines = ssh_hosts.inventory_lines("keystone", ANSIBLE_PYTHON,
                                              lambda name: {"keyrepo_path": self.paths[name]})
        else:
            lines = ["[keystone]"] + ["%s ansible_connection=local keyrepo_path=%s" % (node, self.paths[node])
                                      for node in self.nodes]
        lines += ["[keystone:vars]", "keyrepo_owner=''", "keyrepo_group=''",
                  "keyrepo_max_active_keys=%d" % max_active_keys]
        self.inventory.write_text("\n".join(lines) + "\n")
        self.playbook = tmp_path / "keyrepo.yml"
        self.playbook.write_text(yaml.safe_dump([{"name": "rotate", "hosts": "keystone", "gather_facts": False,
                                                  "roles": ["keyops.lifecycle.keyrepo"]}]))
        self.runs = 0
        self.watching = False
        self.watcher = None
        self.env = {}  # for every run (connection settings); a run's own env= adds to it

    def rotate(self, expect_rc=0, args=(), env=None, callbacks=(), **kwargs):
        """One run of the role; while the validators watch, every task boundary waits until they have validated
        (see callback_plugins/watch_barrier.py)."""
        self.runs += 1
        env = dict(self.env, **(env or {}))
        if self.watching:
            callbacks = ("watch_barrier",) + tuple(callbacks)  # before crash_at: its timer starts after the wait
            env.update(KEYOPS_WATCH_PROGRESS=str(self.progress_file), KEYOPS_WATCH_LOG=str(self.barrier_log))
        return ansible_playbook(self.playbook, self.tmp_path / ("keyrepo-%d.jsonl" % self.runs),
                                inventory=str(self.inventory), args=["-f", str(len(self.nodes))] + list(args),
                                expect_rc=expect_rc, env=env, callbacks=callbacks, **kwargs)

    def keys(self, node):
        path = self.paths[node]
        out = {}
        for name in os.listdir(path):
            if name.isdigit():
                with open(os.path.join(path, name)) as handle:
                    out[int(name)] = handle.read().strip()
        return out

    def consistent(self):
        first = self.keys(self.nodes[0])
        return all(self.keys(node) == first for node in self.nodes)

    def start_watching(self, nice=0, pause=0.02):
        """Validators on every node until :meth:`stop_watching`.  Every run of the role meanwhile waits at each task
        boundary until each node has validated (watch_barrier), so that they watched does not depend on the
        machine's load; between those they pause ``pause`` seconds between validations (~50 a second per node),
        so five of them take about a quarter of a core from the tests running beside them."""
        self.stop_file = self.tmp_path / "stop-watch"
        self.result_file = self.tmp_path / "watch.json"
        self.progress_file = self.tmp_path / "watch-progress.json"
        self.barrier_log = self.tmp_path / "watch-barriers.log"
        self.watching = True
        self.watcher = subprocess.Popen(  # pylint: disable=consider-using-with
            [keystone_python(), "-W", "ignore", RACE, "--protocol", "watch", "--node-dirs",
             ",".join(self.paths[n] for n in self.nodes), "--stop-file", str(self.stop_file),
             "--result-file", str(self.result_file), "--max-active-keys", "3", "--nice", str(nice),
             "--pause", str(pause), "--progress-file", str(self.progress_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop_watching(self):
        """The validators' counts, with ``barriers`` (task boundaries they validated at) and ``starved`` (those
        they did not reach in time)."""
        self.watching = False
        self.stop_file.write_text("stop")
        _out, err = self.watcher.communicate(timeout=120)
        assert self.watcher.returncode == 0, err
        counts = json.loads(self.result_file.read_text())
        lines = self.barrier_log.read_text().splitlines() if self.barrier_log.exists() else []
        counts["barriers"] = sum(1 for line in lines if line.startswith("ok\t"))
        counts["starved"] = [line for line in lines if not line.startswith("ok\t")]
        return counts


def wait_for_repos(nodes, timeout=60):
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(os.path.join(nodes.paths[n], "0")) for n in nodes.nodes):
        assert time.monotonic() < deadline
        time.sleep(0.1)
