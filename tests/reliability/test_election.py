"""A leader election in the middle of rotate_keys.yml: a real 3-node OpenBao raft cluster, the job pointed at a
standby, the leader SIGKILLed while step 2 rewraps.

During the election the standby answers every write it would forward with a 307 to the dead leader, and the
client's connection to it is refused; the connection layer waits for the election (``election_timeout``)
instead of failing, and re-sends a rotate only when nobody can have received it.
"""

import os
import threading
import time

import hvac
import pytest
import requests

from reliability_counts import count
from lab import transit_data
from lab.openbao import OpenBaoRaftServer

from rotation_helpers import Rotation

SUITE = "faults"


class Target:
    """What Rotation needs of a Vault: an address (the standby) and a token."""

    def __init__(self, address, token):
        self.address, self.token = address, token
        self.env = {"VAULT_ADDR": address, "VAULT_TOKEN": token}


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (requests.RequestException, hvac.exceptions.VaultError):
            pass
        time.sleep(0.3)
    raise AssertionError("timed out waiting for %s" % what)


@pytest.fixture()
def cluster(tmp_path):
    """node1 (leader) and two standbys joined by retry_join, all voters, transit mounted."""
    node1 = OpenBaoRaftServer(str(tmp_path / "n1"), node_id="node1")
    others = [OpenBaoRaftServer(str(tmp_path / ("n%d" % i)), node_id="node%d" % i, retry_join=[node1.address])
              for i in (2, 3)]
    nodes = [node1] + others
    try:
        for node in nodes:
            node.start()
        init = hvac.Client(url=node1.address).sys.initialize(secret_shares=1, secret_threshold=1)
        token, unseal_key = init["root_token"], init["keys"][0]
        hvac.Client(url=node1.address).sys.submit_unseal_key(unseal_key)
        _wait(lambda: requests.get(node1.address + "/v1/sys/health", timeout=2).status_code == 200, 30, "node1 active")
        for node in others:
            client = hvac.Client(url=node.address)
            _wait(lambda: not client.sys.submit_unseal_key(unseal_key)["sealed"], 60, "%s unsealed" % node.node_id)
        leader = hvac.Client(url=node1.address, token=token)

        def all_voters():
            servers = leader.sys.read_raft_config()["data"]["config"]["servers"]
            return sorted((s["node_id"], s["voter"]) for s in servers) == [
                ("node1", True), ("node2", True), ("node3", True)]

        # Autopilot promotes joined nodes to voters once they are stable (~15 s): without that, killing the
        # leader would leave no quorum.
        _wait(all_voters, 90, "three voters")
        leader.sys.enable_secrets_engine("transit", path="transit")
        leader.secrets.transit.create_key("probe", mount_point="transit")
        for node in others:  # a standby serves the mount once its copy of the raft log has it
            standby = hvac.Client(url=node.address, token=token)
            _wait(lambda: standby.secrets.transit.read_key("probe", mount_point="transit"), 30,
                  "the transit mount on %s" % node.node_id)
        yield nodes, token
    finally:
        for node in nodes:
            node.stop()


def test_rotation_pointed_at_a_standby_rides_through_a_leader_election(cluster, tmp_path):
    (node1, node2, _node3), token = cluster
    keys = {"elect-a": ([1500, 500], None), "elect-b": ([1000], None)}
    # Seeded through the leader (a standby's own reads lag its writes by ~0.1 s), then run against node2.
    seeding = Rotation(Target(node1.address, token), "transit", tmp_path, keys)
    before = dict((name, seeding.key(name)["latest_version"]) for name in keys)
    rotation = seeding
    rotation.vault = Target(node2.address, token)
    rotation.client = transit_data.client(node2.address, token)
    _wait(lambda: all(rotation.key(n)["latest_version"] == before[n] for n in keys), 10, "the keys on node2")
    consumers = os.path.dirname(rotation.seeded["elect-a"])
    killed = {}

    def kill_leader_while_rewrapping():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            twins = [n for n in os.listdir(consumers) if ".keyops-rewrap-" in n]
            if twins:
                node1.proc.kill()  # SIGKILL: no step-down, the standbys find out by the missed heartbeats
                killed["at"], killed["twin"] = time.monotonic(), twins[0]
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_leader_while_rewrapping, daemon=True)
    watcher.start()
    start = time.monotonic()
    run = rotation.run()  # the default election_timeout (30 s)
    watcher.join(1)
    assert killed, "the leader was not killed: no rewrap temporary file appeared\n" + run.output[-3000:]
    count(SUITE, "injected")
    assert run.rc == 0, run.output[-5000:]
    # Every key rotated exactly once, every consumer at the new version, every ciphertext decrypts.
    for name in keys:
        assert rotation.key(name)["latest_version"] == before[name] + 1, name
    rotation.check_complete()
    leader = requests.get(node2.address + "/v1/sys/leader", timeout=5).json()["leader_address"]
    assert leader != node1.address
    count(SUITE, "recovered")
    print("leader killed %.1fs into the job (at %s); job took %.1fs; new leader %s"
          % (killed["at"] - start, killed["twin"], time.monotonic() - start, leader))
