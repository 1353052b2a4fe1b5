"""Several "keystone nodes" (one repository each) for the keyrepo role, with keystone validators watching."""

import json
import os
import subprocess
import sys
import time

import yaml

from lab.keystone_lab import keystone_python
from _ansible import ROOT, ansible_playbook

RACE = os.path.join(ROOT, "lab", "keyrepo_race.py")


class KeystoneNodes:
    def __init__(self, tmp_path, count=5, max_active_keys=3, ssh_hosts=None):
        """``count`` local nodes, or the hosts of ``ssh_hosts`` (lab.sshnet.SshHosts) reached over SSH."""
        self.tmp_path = tmp_path
        self.nodes = [h["name"] for h in ssh_hosts.hosts] if ssh_hosts else ["ks%d" % i for i in range(count)]
        self.paths = {node: str(tmp_path / "repos" / node) for node in self.nodes}
        self.inventory = tmp_path / "keystone.ini"
        if ssh_hosts:
            lines = ssh_hosts.inventory_lines("keystone", sys.executable,
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
        self.watcher = None
        self.env = {}  # for every run (connection settings); a run's own env= adds to it

    def rotate(self, expect_rc=0, args=(), env=None, **kwargs):
        self.runs += 1
        return ansible_playbook(self.playbook, self.tmp_path / ("keyrepo-%d.jsonl" % self.runs),
                                inventory=str(self.inventory), args=["-f", str(len(self.nodes))] + list(args),
                                expect_rc=expect_rc, env=dict(self.env, **(env or {})), **kwargs)

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

    def start_watching(self, nice=19, pause=0.005):
        """Validators on every node until :meth:`stop_watching`.  ``nice``, ``pause``: by default their priority is
        lowered and each pauses 5 ms between validations (~200 a second per node), since they would otherwise take a
        core from the tests running beside them."""
        self.stop_file = self.tmp_path / "stop-watch"
        self.result_file = self.tmp_path / "watch.json"
        self.watcher = subprocess.Popen(  # pylint: disable=consider-using-with
            [keystone_python(), "-W", "ignore", RACE, "--protocol", "watch", "--node-dirs",
             ",".join(self.paths[n] for n in self.nodes), "--stop-file", str(self.stop_file),
             "--result-file", str(self.result_file), "--max-active-keys", "3", "--nice", str(nice),
             "--pause", str(pause)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop_watching(self):
        self.stop_file.write_text("stop")
        _out, err = self.watcher.communicate(timeout=120)
        assert self.watcher.returncode == 0, err
        return json.loads(self.result_file.read_text())


def wait_for_repos(nodes, timeout=60):
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(os.path.join(nodes.paths[n], "0")) for n in nodes.nodes):
        assert time.monotonic() < deadline
        time.sleep(0.1)
