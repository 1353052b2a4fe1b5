"""Three OpenBao nodes on loopback with raft, installed by vault_install.yml; a node crash and recovery."""

import json
import os
import signal
import time

import hvac

from lab import install as lab_install

from _ansible import ROOT, ansible_playbook

PLAYBOOK = os.path.join(ROOT, "playbooks", "vault_install.yml")


def voters(client, expected=(("node1", True), ("node2", True), ("node3", True)), timeout=60):
    """The raft configuration; autopilot promotes new nodes to voters after they are stable, so wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        servers = client.sys.read_raft_config()["data"]["config"]["servers"]
        found = sorted((s["node_id"], s["voter"]) for s in servers)
        if found == list(expected) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_three_node_raft_cluster_survives_a_killed_node(tmp_path):
    inventory, hosts = lab_install.cluster_inventory(str(tmp_path / "cluster"))
    try:
        start = time.monotonic()
        ansible_playbook(PLAYBOOK, tmp_path / "install.jsonl", inventory=inventory,
                         args=["-e", "vault_install_hosts=vault"], expect_rc=0)
        install_seconds = time.monotonic() - start
        keys = json.loads(open(hosts["node1"]["vault_keys_file"]).read())
        clients = dict((name, hvac.Client(url=lab_install.server_address(data), token=keys["root_token"]))
                       for name, data in hosts.items())
        assert all(not c.sys.is_sealed() for c in clients.values())
        assert voters(clients["node1"]) == [("node1", True), ("node2", True), ("node3", True)]
        clients["node1"].secrets.transit.create_key(name="survivor", mount_point="transit")
        ciphertext = clients["node1"].secrets.transit.encrypt_data(
            name="survivor", plaintext="aGVsbG8=", mount_point="transit")["data"]["ciphertext"]

        # node2 crashes (SIGKILL); the playbook brings it back and unseals it.
        pid_file = os.path.join(hosts["node2"]["vault_server_run_dir"], "openbao.pid")
        os.kill(int(open(pid_file).read()), signal.SIGKILL)
        time.sleep(1)
        rerun = ansible_playbook(PLAYBOOK, tmp_path / "rerun.jsonl", inventory=inventory,
                                 args=["-e", "vault_install_hosts=vault"], expect_rc=0)
        assert not clients["node2"].sys.is_sealed()
        assert voters(clients["node2"]) == [("node1", True), ("node2", True), ("node3", True)]
        # Data written before the crash is intact (asked of the active node, as a client behind a load balancer).
        leader = clients["node2"].sys.read_leader_status()["leader_address"]
        active = hvac.Client(url=leader, token=keys["root_token"])
        assert active.secrets.transit.decrypt_data(
            name="survivor", ciphertext=ciphertext, mount_point="transit")["data"]["plaintext"] == "aGVsbG8="
        assert "node2" in rerun.stdout and "unreachable=0" in rerun.stdout
        print("3-node install+init+unseal: %.1fs" % install_seconds)
    finally:
        for data in hosts.values():
            lab_install.stop_server(data)
