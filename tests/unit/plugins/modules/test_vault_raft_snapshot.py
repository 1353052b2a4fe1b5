"""vault_raft_snapshot against a fake raft cluster: saved from the active node only, checked, retained; restores
verified against the sidecar before anything is sent."""

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile

import pytest
from _module_runner import assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_raft_snapshot

SNAPSHOT = "sys/storage/raft/snapshot"
STATE = b"barrier-encrypted-storage-" * 40
LEADER = "http://vault-0.test:8200"


def snapshot_bytes(index=42, term=3, corrupt_sums=False):
    """A raft snapshot as Vault streams it: a gzipped tar of meta.json, state.bin and their sums."""
    meta = json.dumps({"Index": index, "Term": term, "ID": "3-42-1700000000", "Version": 1}).encode()
    sums = "".join("%s  %s\n" % (hashlib.sha256(b"x" if corrupt_sums else data).hexdigest(), name)
                   for name, data in (("meta.json", meta), ("state.bin", STATE))).encode()
    members = (("meta.json", meta), ("state.bin", STATE), ("SHA256SUMS", sums), ("SHA256SUMS.sealed", b"sealed-sums"))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def seal_status(**overrides):
    return dict({"sealed": False, "initialized": True, "storage_type": "raft", "version": "2.1.0",
                 "cluster_id": "cluster-a", "cluster_name": "prod"}, **overrides)


@pytest.fixture
def cluster(fake_vault):
    """An active node answering leader, seal-status and the snapshot."""
    fake_vault.on("GET", "sys/leader", {"ha_enabled": True, "is_self": True,
                                        "leader_address": "http://vault.test:8200"})
    fake_vault.on("GET", "sys/seal-status", seal_status())
    fake_vault.on("GET", SNAPSHOT, snapshot_bytes())
    return fake_vault


def saved(tmp_path, vault_args, check_mode=False, **options):
    return run_module(vault_raft_snapshot.main, dict(vault_args, path=str(tmp_path / "snapshots") + "/", **options),
                      check_mode=check_mode)


def test_argument_spec():
    spec = module_spec(vault_raft_snapshot.main)
    assert spec["state"]["choices"] == ["saved", "restored"] and spec["state"]["default"] == "saved"
    assert spec["path"]["required"] is True and spec["prefix"]["default"] == "vault"
    assert spec["follow_leader"]["default"] is True and spec["verify_checksum"]["default"] is True
    assert spec["force"]["default"] is False and spec["backup_current"]["default"] is True
    assert no_log_options(spec) == {"token", "secret_id"}


def test_save_streams_a_checked_snapshot_and_its_sidecar(cluster, vault_args, tmp_path):
    result = saved(tmp_path, vault_args)
    assert result["changed"] is True and result["node"] == "http://vault.test:8200"
    path = result["path"]
    assert os.path.dirname(path) == str(tmp_path / "snapshots") and os.path.basename(path).startswith("vault-")
    with open(path, "rb") as handle:
        content = handle.read()
    assert content == snapshot_bytes()
    assert result["sha256"] == hashlib.sha256(content).hexdigest() and result["size"] == len(content)
    assert result["raft_index"] == 42 and result["raft_term"] == 3 and result["cluster_id"] == "cluster-a"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(result["sidecar"]) as handle:
        sidecar = json.load(handle)
    assert sidecar["sha256"] == result["sha256"] and sidecar["node"] == "http://vault.test:8200"
    assert cluster.writes() == []  # saving only reads
    assert_not_in_result(result, "barrier-encrypted-storage", vault_args["token"])


def test_check_mode_plans_the_file_and_writes_nothing(cluster, vault_args, tmp_path):
    result = saved(tmp_path, vault_args, check_mode=True)
    assert result["changed"] is True and result["sha256"] is None and result["raft_index"] is None
    assert result["path"].endswith(".snap") and not os.path.exists(tmp_path / "snapshots")
    assert cluster.sent("GET", SNAPSHOT) == []


def test_a_standby_hands_over_to_the_active_node(cluster, vault_args, tmp_path):
    cluster.on("GET", "sys/leader", {"ha_enabled": True, "is_self": False, "leader_address": LEADER})
    cluster.on("GET", "sys/leader", {"ha_enabled": True, "is_self": True, "leader_address": LEADER}, base=LEADER)
    result = saved(tmp_path, vault_args)
    assert result["changed"] is True and result["node"] == LEADER
    snapshot_from = [base for (method, path, _b), base in zip(cluster.requests, cluster.bases) if path == SNAPSHOT]
    assert snapshot_from == [LEADER]  # never the standby's own, possibly stale, snapshot


def test_follow_leader_false_refuses_a_standby(cluster, vault_args, tmp_path):
    cluster.on("GET", "sys/leader", {"ha_enabled": True, "is_self": False, "leader_address": LEADER})
    result = saved(tmp_path, vault_args, follow_leader=False)
    assert result["failed"] and "is a standby; the active node is %s" % LEADER in result["msg"]
    assert "follow_leader: true" in result["msg"] and cluster.sent("GET", SNAPSHOT) == []


def test_a_corrupt_snapshot_is_removed_and_reported(cluster, vault_args, tmp_path):
    cluster.on("GET", SNAPSHOT, snapshot_bytes(corrupt_sums=True))
    result = saved(tmp_path, vault_args)
    assert result["failed"] and "was refused and removed" in result["msg"]
    assert "does not match its SHA256SUMS entry" in result["msg"]
    assert os.listdir(tmp_path / "snapshots") == []


def test_a_truncated_stream_is_removed_and_reported(cluster, vault_args, tmp_path):
    cluster.on("GET", SNAPSHOT, snapshot_bytes()[:-20])
    result = saved(tmp_path, vault_args)
    assert result["failed"] and "not a complete raft snapshot" in result["msg"]
    assert os.listdir(tmp_path / "snapshots") == []


@pytest.mark.parametrize("status, text", [
    (seal_status(sealed=True), "is sealed: unseal it first"),
    (seal_status(storage_type="consul"), "uses 'consul' storage, not raft"),
])
def test_sealed_or_non_raft_nodes_are_refused(cluster, vault_args, tmp_path, status, text):
    cluster.on("GET", "sys/seal-status", status)
    result = saved(tmp_path, vault_args)
    assert result["failed"] and text in result["msg"] and cluster.sent("GET", SNAPSHOT) == []


def test_retain_keeps_the_newest(cluster, vault_args, tmp_path):
    directory = tmp_path / "snapshots"
    directory.mkdir()
    old = ["vault-20200101T000000Z.snap", "vault-20210101T000000Z.snap", "vault-20220101T000000Z.snap"]
    for name in old + ["unrelated.snap"]:
        (directory / name).write_bytes(b"old")
    (directory / (old[0] + ".json")).write_text("{}")
    result = saved(tmp_path, vault_args, retain=2)
    assert sorted(os.path.basename(p) for p in result["removed"]) == old[:2]
    left = sorted(os.listdir(directory))
    assert old[2] in left and "unrelated.snap" in left and os.path.basename(result["path"]) in left
    assert old[0] not in left and old[0] + ".json" not in left  # the sidecar goes with its snapshot


@pytest.mark.parametrize("options, text", [
    ({"prefix": "../x"}, "`prefix` must be a plain file name start"),
    ({"retain": 0}, "`retain` must be 1 or more"),
    ({"wait_timeout": 0}, "`wait_timeout` must be 1 or more seconds (got 0)"),
    ({"state": "taken"}, "value of state must be one of: saved, restored"),
])
def test_bad_options_are_explained(cluster, vault_args, tmp_path, options, text):
    result = saved(tmp_path, vault_args, **options)
    assert result["failed"] and text in result["msg"] and cluster.sent("GET", SNAPSHOT) == []


# -- restore ----------------------------------------------------------------------------------------------


def snapshot_on_disk(tmp_path, sidecar=True, cluster_id="cluster-a", sha256=None):
    path = tmp_path / "vault-20240101T000000Z.snap"
    content = snapshot_bytes()
    path.write_bytes(content)
    if sidecar:
        (tmp_path / (path.name + ".json")).write_text(json.dumps({
            "sha256": sha256 or hashlib.sha256(content).hexdigest(), "size": len(content),
            "cluster_id": cluster_id, "cluster_name": "prod"}))
    return path


def restored(vault_args, path, check_mode=False, **options):
    return run_module(vault_raft_snapshot.main, dict(vault_args, state="restored", path=str(path), **options),
                      check_mode=check_mode)


def test_check_mode_restore_verifies_and_plans_the_way_back(cluster, vault_args, tmp_path):
    path = snapshot_on_disk(tmp_path)
    result = restored(vault_args, tmp_path, check_mode=True)  # a directory: its newest snapshot
    assert result["changed"] is True and result["path"] == str(path) and result["checksum_verified"] is True
    assert os.path.basename(result["backup"]).startswith("vault-pre-restore-")
    assert cluster.writes() == [] and cluster.sent("GET", SNAPSHOT) == []


def test_a_restore_takes_a_snapshot_of_the_current_state_first(cluster, vault_args, tmp_path):
    path = snapshot_on_disk(tmp_path)
    cluster.on("POST", SNAPSHOT, (204, None))
    result = restored(vault_args, path)
    assert result["changed"] is True and result["sealed"] is False and result["answered"] is True
    assert os.path.isfile(result["backup"]) and result["force"] is False
    methods = [(m, p) for m, p, _b in cluster.requests if p == SNAPSHOT]
    assert methods == [("GET", SNAPSHOT), ("POST", SNAPSHOT)]  # the way back is saved before the restore
    assert cluster.sent("POST", SNAPSHOT)[0][2] == path.read_bytes()
    assert_not_in_result(result, "barrier-encrypted-storage")


def test_a_checksum_mismatch_sends_nothing(cluster, vault_args, tmp_path):
    path = snapshot_on_disk(tmp_path, sha256="0" * 64)
    result = restored(vault_args, path)
    assert result["failed"] and "does not match its sidecar" in result["msg"] and "nothing was sent" in result["msg"]
    assert cluster.requests == []


def test_a_snapshot_without_sidecar_needs_verify_checksum_off(cluster, vault_args, tmp_path):
    path = snapshot_on_disk(tmp_path, sidecar=False)
    result = restored(vault_args, path)
    assert result["failed"] and "has no sidecar" in result["msg"] and "verify_checksum: false" in result["msg"]
    unverified = restored(vault_args, path, check_mode=True, verify_checksum=False)
    assert unverified["changed"] is True and unverified["checksum_verified"] is False


def test_no_way_back_needs_force(cluster, vault_args, tmp_path):
    path = snapshot_on_disk(tmp_path)
    result = restored(vault_args, path, backup_current=False)
    assert result["failed"] and "keep backup_current: true" in result["msg"] and cluster.writes() == []


def test_another_clusters_snapshot_needs_force(cluster, vault_args, tmp_path):
    path = snapshot_on_disk(tmp_path, cluster_id="cluster-b")
    result = restored(vault_args, path)
    assert result["failed"] and "the snapshot comes from cluster prod (cluster-b)" in result["msg"]
    assert "set force: true" in result["msg"] and cluster.writes() == []


def test_a_missing_snapshot_file_is_named(cluster, vault_args, tmp_path):
    result = restored(vault_args, tmp_path / "absent.snap")
    assert result["failed"] and "does not exist" in result["msg"] and cluster.requests == []


def test_an_empty_directory_has_nothing_to_restore(cluster, vault_args, tmp_path):
    result = restored(vault_args, tmp_path)
    assert result["failed"] and "nothing to restore" in result["msg"]
