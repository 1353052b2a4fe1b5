"""Rolling upgrade of a three-node raft cluster from OpenBao 2.6.1 to the current wheel (2.7.x), with a way back.

One cluster goes through what an operator meets: the preflight finds a Kubernetes auth mount that would break
and stops the job before any restart; with the fix the upgrade runs (snapshot from the leader first, autopilot
between nodes, report); a downgrade is then refused with no node restarted.  "No node restarted" is proved
from the servers' process start times.
"""

import hashlib
import json
import os
import time

import hvac

from lab import install as lab_install
from lab.openbao import bao_binary, versioned_binary
from lab.tls import make_ca_and_server_cert

from _ansible import ROOT, ansible_playbook

INSTALL = os.path.join(ROOT, "playbooks", "vault_install.yml")
UPGRADE = os.path.join(ROOT, "playbooks", "vault_upgrade.yml")


def versions(hosts):
    out = {}
    for name, data in hosts.items():
        out[name] = hvac.Client(url=lab_install.server_address(data)).sys.read_seal_status()["version"]
    return out


def started(hosts):
    """Each server's pid and process start time (clock ticks since boot): a restart changes both."""
    out = {}
    for name, data in hosts.items():
        with open(os.path.join(data["vault_server_run_dir"], "openbao.pid")) as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/stat" % pid) as handle:
            out[name] = (pid, int(handle.read().rsplit(")", 1)[1].split()[19]))
    return out


def process_start_epoch(pid):
    """When a process started, in epoch seconds (from /proc: boot time + start ticks)."""
    with open("/proc/stat") as handle:
        boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
    with open("/proc/%d/stat" % pid) as handle:
        ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def upgrade(tmp_path, inventory, binary, name, *extra, expect_rc=None):
    return ansible_playbook(UPGRADE, tmp_path / ("%s.jsonl" % name), inventory=inventory, expect_rc=expect_rc,
                            args=["-e", "vault_install_hosts=vault", "-e", "vault_server_binary_src=%s" % binary,
                                  "-e", "vault_upgrade_snapshot_dir=%s" % (tmp_path / "snapshots"),
                                  "-e", "vault_upgrade_report_dir=%s" % (tmp_path / "reports")] + list(extra))


def test_rolling_upgrade_261_to_current_with_preflight_snapshot_and_downgrade_refusal(tmp_path):
    old = versioned_binary("2.6.1")
    inventory, hosts = lab_install.cluster_inventory(str(tmp_path / "cluster"), vault_server_binary_src=old)
    try:
        ansible_playbook(INSTALL, tmp_path / "install.jsonl", inventory=inventory,
                         args=["-e", "vault_install_hosts=vault"], expect_rc=0)
        assert set(versions(hosts).values()) == {"2.6.1"}
        keys = json.loads(open(hosts["node1"]["vault_keys_file"]).read())
        leader = hvac.Client(url=lab_install.server_address(hosts["node1"]), token=keys["root_token"])
        leader.secrets.transit.create_key(name="before-upgrade", mount_point="transit")
        ciphertext = leader.secrets.transit.encrypt_data(name="before-upgrade", plaintext="c2VjcmV0",
                                                         mount_point="transit")["data"]["ciphertext"]
        # Kubernetes auth for another cluster with no reviewer JWT: Vault would review logins with its own
        # service-account token - the break the preflight exists to find.
        leader.sys.enable_auth_method("kubernetes", path="kubernetes")
        ca_path = make_ca_and_server_cert(str(tmp_path / "k8s-ca"))["ca"]
        leader.write("auth/kubernetes/config", kubernetes_host="https://127.0.0.1:6443",
                     kubernetes_ca_cert=open(ca_path).read())

        # (a) the preflight stops the job before any restart
        before = started(hosts)
        refused = upgrade(tmp_path, inventory, bao_binary(), "preflight-refused")
        assert refused.rc != 0 and "kubernetes auth kubernetes is at risk" in refused.output, refused.output
        assert started(hosts) == before, "a node was restarted although the preflight failed"
        assert not (tmp_path / "snapshots").exists() or not list((tmp_path / "snapshots").glob("*.snap"))

        # with the fix (disable_local_ca_jwt) the upgrade runs
        start = time.monotonic()
        run = upgrade(tmp_path, inventory, bao_binary(), "upgrade", "-e", "vault_upgrade_preflight_fix=true",
                      expect_rc=0)
        upgrade_seconds = time.monotonic() - start
        assert set(versions(hosts).values()) == {"2.7.2"}, versions(hosts)
        assert leader.read("auth/kubernetes/config")["data"]["disable_local_ca_jwt"] is True

        # (b) a verified snapshot from the leader, written before the first restart
        snapshot = run.task("(b) Snapshot the raft storage from the leader, verified, before anything restarts")
        path = snapshot["path"]
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == snapshot["sha256"]
        assert snapshot["version"] == "2.6.1"
        first_restart = min(process_start_epoch(pid) for pid, _ticks in started(hosts).values())
        assert os.stat(path).st_mtime <= first_restart, "the snapshot was written after a node restarted"

        # standbys first, the old leader last; autopilot ready before and after every node
        order = [e["host"] for e in run.results if e["task"] == "Replace the binary and restart the server"]
        assert order[-1] == "node1" and sorted(order) == ["node1", "node2", "node3"], order
        verdicts = [(e["host"], e["result"]["ansible_facts"]["vault_upgrade_autopilot_verdict"])
                    for e in run.results if e["task"] == "Raft autopilot - the verdict"]
        assert len(verdicts) >= 7 and all(v["ok"] for _host, v in verdicts), verdicts
        assert sum("is a healthy voter at 2.7.2" in v["reason"] for _host, v in verdicts) == 3, verdicts
        waited = [e["host"] for e in run.results if e["task"] == "Ask each node who leads until one does"]
        assert sorted(waited) == ["node1", "node2", "node3"], waited

        # (e) versions before/after per node, in the output and the report
        report = json.loads((tmp_path / "reports" / "upgrade-report.json").read_text())
        assert [(n["host"], n["version_before"], n["version_after"]) for n in report["nodes"]] == [
            ("node1", "2.6.1", "2.7.2"), ("node2", "2.6.1", "2.7.2"), ("node3", "2.6.1", "2.7.2")]
        assert report["complete"] is True and report["snapshot"]["sha256"] == snapshot["sha256"]
        assert "| node2 | 2.6.1 | 2.7.2 | yes |" in run.output
        assert keys["root_token"] not in run.output

        active_address = hvac.Client(url=lab_install.server_address(hosts["node2"])).sys.read_leader_status()[
            "leader_address"]
        active = hvac.Client(url=active_address, token=keys["root_token"])
        assert active.secrets.transit.decrypt_data(name="before-upgrade", ciphertext=ciphertext,
                                                   mount_point="transit")["data"]["plaintext"] == "c2VjcmV0"
        assert all(not hvac.Client(url=lab_install.server_address(d)).sys.is_sealed() for d in hosts.values())

        # (c) a downgrade is refused, nothing restarted
        before = started(hosts)
        downgrade = upgrade(tmp_path, inventory, old, "downgrade", "-e", "vault_upgrade_skip_preflight=true")
        assert downgrade.rc != 0 and "downgrade from 2.7.2 to 2.6.1" in downgrade.output, downgrade.output
        assert "No node was restarted" in downgrade.output
        assert started(hosts) == before
        assert set(versions(hosts).values()) == {"2.7.2"}

        # a re-run with nothing to do restarts nothing (every node already at the target)
        again = upgrade(tmp_path, inventory, bao_binary(), "again", "-e", "vault_upgrade_skip_preflight=true",
                        expect_rc=0)
        assert started(hosts) == before
        assert "WARNING: vault_upgrade_skip_preflight is set" in again.output
        print("rolling upgrade of 3 nodes: %.1fs" % upgrade_seconds)
    finally:
        for data in hosts.values():
            lab_install.stop_server(data)
