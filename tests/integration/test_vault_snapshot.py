"""vault_raft_snapshot against real three-node OpenBao raft clusters: save from the active node, retain, check
mode, refusals, and the restore drill (a snapshot force-restored into a freshly initialised cluster with other keys,
unsealed with the ORIGINAL keys), plus a restore on the same cluster."""

import base64
import hashlib
import json
import os
import shutil
import stat
import tarfile
import time

import hvac
import pytest

from lab import _process
from lab.openbao import OpenBaoRaftServer

from _ansible import ROOT, ansible_playbook, play, run_playbook

MODULE = "keyops.lifecycle.vault_raft_snapshot"


class RaftCluster:
    """Three OpenBao nodes with raft storage on loopback, initialised (3 shares, threshold 2) and unsealed."""

    def __init__(self, workdir, size=3):
        first = OpenBaoRaftServer(os.path.join(workdir, "node1"), node_id="node1")
        self.nodes = [first] + [OpenBaoRaftServer(os.path.join(workdir, "node%d" % index), node_id="node%d" % index,
                                                  retry_join=[first.address]) for index in range(2, size + 1)]
        self.keys = self.root_token = None

    @property
    def addresses(self):
        return [node.address for node in self.nodes]

    def start(self):
        try:
            for node in self.nodes:
                node.start()
            answer = hvac.Client(url=self.nodes[0].address).sys.initialize(secret_shares=3, secret_threshold=2)
            self.keys, self.root_token = answer["keys_base64"], answer["root_token"]
            _process.register_secret("vault_root_token", self.root_token)
            for key in self.keys:
                _process.register_secret("vault_unseal_key", key)
            for node in self.nodes:
                unseal(node.address, self.keys)
            self.leader(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def leader(self, token=None, timeout=60):
        """The address of the active node, once one of THIS cluster's nodes says is_self."""
        deadline = time.monotonic() + timeout
        while True:
            for address in self.addresses:
                try:
                    if hvac.Client(url=address, timeout=3).sys.read_leader_status().get("is_self"):
                        return address
                except Exception:  # pylint: disable=broad-except
                    pass
            if time.monotonic() > deadline:
                raise AssertionError("no active node among %s after %ss" % (self.addresses, timeout))
            time.sleep(0.5)

    def standby(self):
        leader = self.leader()
        return [address for address in self.addresses if address != leader][0]

    def client(self, address=None, token=None):
        return hvac.Client(url=address or self.leader(), token=token or self.root_token)

    def stop(self):
        for node in self.nodes:
            node.stop()


def unseal(address, keys, timeout=60):
    client = hvac.Client(url=address)
    deadline = time.monotonic() + timeout
    while not client.sys.read_seal_status()["initialized"]:
        assert time.monotonic() < deadline, "%s never joined its cluster" % address
        time.sleep(0.2)
    for key in keys[:2]:
        if not client.sys.read_seal_status()["sealed"]:
            break
        client.sys.submit_unseal_key(key)
    while client.sys.read_seal_status()["sealed"]:
        assert time.monotonic() < deadline, "%s still sealed" % address
        time.sleep(0.2)


def sealed(address):
    return hvac.Client(url=address, timeout=5).sys.read_seal_status()["sealed"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The cluster whose snapshots are taken: transit keys (one rotated) and ciphertexts of each."""
    cluster = RaftCluster(str(tmp_path_factory.mktemp("raft-source"))).start()
    try:
        client = cluster.client()
        client.sys.enable_secrets_engine("transit", path="transit")
        cluster.ciphertexts = {}
        for name in ("payroll", "kasten"):
            client.secrets.transit.create_key(name, mount_point="transit")
        client.secrets.transit.rotate_key("kasten", mount_point="transit")
        for name in ("payroll", "kasten"):
            plaintext = base64.b64encode(("snapshot-drill-%s" % name).encode()).decode()
            _process.register_secret("plaintext", plaintext)
            cluster.ciphertexts[name] = (client.secrets.transit.encrypt_data(
                name, plaintext, mount_point="transit")["data"]["ciphertext"], plaintext)
        yield cluster
    finally:
        cluster.stop()


def run(tmp_path, tasks, address, token, check=False):
    return run_playbook(tmp_path, play(tasks), env={"VAULT_ADDR": address, "VAULT_TOKEN": token}, check=check)


def task(name, **options):
    return {"name": name, MODULE: options, "register": "out", "ignore_errors": True}


def snapshot_files(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".snap"))


def test_save_from_the_active_node_retain_check_mode_and_refusals(source, tmp_path, vault):
    snaps = tmp_path / "snaps"
    limited = source.client().auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    _process.register_secret("vault_token", limited)
    standby = source.standby()
    tasks = [
        task("from the leader", path=str(snaps) + "/", retain=2, url=source.leader()),
        task("through a standby", path=str(snaps), retain=2, url=standby),
        task("standby refused", path=str(snaps), url=standby, follow_leader=False),
        task("third, retain 2", path=str(snaps), retain=2),
        dict(task("check mode", path=str(snaps), retain=1), check_mode=True),
        task("one file", path=str(tmp_path / "single" / "one.snap")),
        dict(task("no token", path=str(snaps)), environment={"VAULT_TOKEN": ""}),
        task("permission denied", path=str(snaps), token=limited),
        task("not raft storage", path=str(snaps), url=vault.address, token=vault.token),
        task("restore a missing file", state="restored", path=str(tmp_path / "nothing.snap")),
    ]
    result = run(tmp_path, tasks, standby, source.root_token)
    assert result.rc == 0, result.output[-4000:]
    leader = source.leader()
    first, second = result.task("from the leader"), result.task("through a standby")
    assert [result.status(name) for name in ("from the leader", "through a standby", "third, retain 2", "check mode",
                                             "one file")] == ["ok"] * 5
    assert set(result.status(name) for name in ("standby refused", "no token", "permission denied",
                                                "not raft storage", "restore a missing file")) == {"failed"}
    for saved in (first, second):
        assert saved["node"] == leader and saved["changed"] and saved["version"] == "2.7.2"
    assert "is a standby; the active node is %s" % leader in result.task("standby refused")["msg"]
    third = result.task("third, retain 2")
    assert third["removed"] == [first["path"]]
    files = snapshot_files(snaps)
    assert [os.path.join(str(snaps), name) for name in files] == sorted([second["path"], third["path"]])
    assert sorted(os.listdir(snaps)) == sorted(files + [name + ".json" for name in files])

    planned = result.task("check mode")
    assert planned["changed"] and planned["sha256"] is None and not os.path.exists(planned["path"])
    assert sorted(planned["removed"]) == sorted([second["path"], third["path"]])
    assert snapshot_files(snaps) == files  # nothing written, nothing removed

    assert stat.S_IMODE(os.stat(snaps).st_mode) == 0o700
    for saved in (second, third, result.task("one file")):
        path = saved["path"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path + ".json").st_mode) == 0o600
        sidecar = json.loads(open(path + ".json").read())
        assert sidecar["sha256"] == saved["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
        assert sidecar["size"] == os.path.getsize(path) == saved["size"]
        assert sidecar["node"] == leader and sidecar["version"] == "2.7.2" and sidecar["storage_type"] == "raft"
        assert sidecar["cluster_id"] == hvac.Client(url=leader).sys.read_seal_status()["cluster_id"]
        assert sidecar["raft_index"] > 0 and sidecar["raft_term"] > 0
        with tarfile.open(path, "r:gz") as archive:
            assert {"meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"} <= set(archive.getnames())
            meta = json.loads(archive.extractfile("meta.json").read())
        assert meta["Index"] == sidecar["raft_index"]
    assert result.task("one file")["path"] == str(tmp_path / "single" / "one.snap")

    assert "no Vault token" in result.task("no token")["msg"]
    denied = result.task("permission denied")["msg"]
    assert "'read' capability on path 'sys/storage/raft/snapshot'" in denied, denied
    assert "not raft" in result.task("not raft storage")["msg"]
    assert "does not exist" in result.task("restore a missing file")["msg"]
    assert source.root_token not in result.output and limited not in result.output

    # The daily job: playbooks/vault_snapshot.yml with the connection from VAULT_*, pointed at a standby.
    daily = tmp_path / "daily"
    inventory = tmp_path / "hosts"
    inventory.write_text("localhost ansible_connection=local\n")
    job = ansible_playbook(os.path.join(ROOT, "playbooks", "vault_snapshot.yml"), tmp_path / "daily.jsonl",
                           env={"VAULT_ADDR": standby, "VAULT_TOKEN": source.root_token},
                           args=["-e", "vault_snapshot_dir=%s" % daily, "-e", "vault_snapshot_retain=1"], inventory=str(inventory),
                           expect_rc=0)
    taken = job.task("Snapshot from the active node, keep the newest ones")
    assert taken["node"] == leader and snapshot_files(daily) == [os.path.basename(taken["path"])]
    assert source.root_token not in job.output


def test_restore_drill_into_a_fresh_cluster_and_on_the_same_cluster(source, tmp_path_factory, tmp_path):
    snaps = tmp_path / "snaps"
    leader = source.leader()
    first = run(tmp_path, [task("snapshot", path=str(snaps))], leader, source.root_token)
    saved = first.task("snapshot")
    assert first.status("snapshot") == "ok", saved
    source_client = source.client()
    source_client.secrets.transit.create_key("after-snapshot", mount_point="transit")
    tampered = tmp_path / "tampered"
    tampered.mkdir(mode=0o700)
    bad = tampered / os.path.basename(saved["path"])
    shutil.copy(saved["path"] + ".json", str(bad) + ".json")
    data = bytearray(open(saved["path"], "rb").read())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))

    fresh = RaftCluster(str(tmp_path_factory.mktemp("raft-fresh"))).start()
    try:
        fresh_leader = fresh.leader()
        fresh_id = hvac.Client(url=fresh_leader).sys.read_seal_status()["cluster_id"]
        tasks = [
            task("tampered", state="restored", path=str(bad), force=True),
            task("no force", state="restored", path=str(snaps)),
            task("force restore through a standby", state="restored", path=str(snaps), force=True,
                 url=fresh.standby()),
        ]
        start = time.monotonic()
        result = run(tmp_path, tasks, fresh_leader, fresh.root_token)
        assert result.rc == 0, result.output[-4000:]
        refused = result.task("tampered")
        assert result.status("tampered") == "failed" and "does not match its sidecar" in refused["msg"], refused
        assert sorted(os.listdir(tampered)) == [bad.name, bad.name + ".json"]  # not even a pre-restore snapshot
        no_force = result.task("no force")
        assert result.status("no force") == "failed" and "force: true" in no_force["msg"] and "ORIGINAL" in no_force["msg"]
        restored = result.task("force restore through a standby")
        assert result.status("force restore through a standby") == "ok", restored
        assert restored["sealed"] is True and restored["force"] is True and restored["node"] == fresh_leader
        assert "ORIGINAL unseal keys" in restored["msg"] and "is_self" in restored["msg"]
        assert restored["target_cluster_id"] == fresh_id and restored["snapshot_cluster_id"] == saved["cluster_id"]
        backup = restored["backup"]
        assert os.path.basename(backup).startswith("vault-pre-restore-") and os.path.exists(backup + ".json")
        assert json.loads(open(backup + ".json").read())["cluster_id"] == fresh_id

        # Every node of the fresh cluster seals; only the ORIGINAL keys open it.  Standbys apply a restore on a
        # best-effort basis: one that has not sealed a minute later missed it, and gets what the module's message
        # tells the operator to do - restart its service, then unseal it with the ORIGINAL keys.
        deadline = time.monotonic() + 60
        while not all(sealed(address) for address in fresh.addresses) and time.monotonic() < deadline:
            time.sleep(0.5)
        missed = [node for node in fresh.nodes if not sealed(node.address)]
        assert fresh_leader not in [node.address for node in missed], "the node that took the restore did not seal"
        for node in missed:
            print("%s missed the restore: restarting it" % node.address)
            node.stop()
            node.start()
        assert all(sealed(address) for address in fresh.addresses)
        for address in fresh.addresses:
            unseal(address, source.keys)
        new_leader = fresh.leader(timeout=90)  # is_self on one of the NEW nodes (not the source's leader)
        print("force restore to a new leader: %.1fs" % (time.monotonic() - start))
        assert new_leader in fresh.addresses
        restored_client = hvac.Client(url=new_leader, token=source.root_token)
        assert restored_client.auth.token.lookup_self()["data"]["id"] == source.root_token
        assert hvac.Client(url=new_leader).sys.read_seal_status()["cluster_id"] == saved["cluster_id"]
        keys = restored_client.secrets.transit.list_keys(mount_point="transit")["data"]["keys"]
        assert sorted(keys) == ["kasten", "payroll"], keys
        for name, (ciphertext, plaintext) in source.ciphertexts.items():
            assert restored_client.secrets.transit.decrypt_data(
                name, ciphertext, mount_point="transit")["data"]["plaintext"] == plaintext
        with pytest.raises(hvac.exceptions.Forbidden):
            hvac.Client(url=new_leader, token=fresh.root_token).auth.token.lookup_self()
    finally:
        fresh.stop()

    # The same cluster: the key created after the snapshot is gone, everything stays unsealed.
    second = run(tmp_path, [task("same cluster", state="restored", path=saved["path"])], source.standby(),
                 source.root_token)
    again = second.task("same cluster")
    assert second.status("same cluster") == "ok", again
    assert again["sealed"] is False and again["force"] is False and "restored data" in again["msg"]
    assert os.path.exists(again["backup"])
    client = source.client()
    assert sorted(client.secrets.transit.list_keys(mount_point="transit")["data"]["keys"]) == ["kasten", "payroll"]
    assert not any(sealed(address) for address in source.addresses)
