"""The pure decisions of _snapshot: names, retention, what a snapshot must contain, which node, refusals."""

import datetime
import gzip
import hashlib
import io
import json
import tarfile

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _snapshot
from ansible_collections.keyops.lifecycle.plugins.module_utils._snapshot import SnapshotError

WHEN = datetime.datetime(2027, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def snapshot_bytes(members=("meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"), meta=None, bad_sum=False,
                   truncate=0):
    meta_bytes = json.dumps(meta or {"Version": 1, "ID": "bolt-snapshot", "Index": 36, "Term": 3}).encode()
    state = b"\x00bolt" * 1000
    sums = "%s  meta.json\n%s  state.bin\n" % (hashlib.sha256(meta_bytes).hexdigest(),
                                               hashlib.sha256(b"x" if bad_sum else state).hexdigest())
    content = {"meta.json": meta_bytes, "state.bin": state, "SHA256SUMS": sums.encode(), "SHA256SUMS.sealed": b"s" * 185}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name in members:
            info = tarfile.TarInfo(name)
            info.size = len(content[name])
            archive.addfile(info, io.BytesIO(content[name]))
    data = gzip.compress(raw.getvalue(), mtime=0)  # deterministic: test ids must match on every xdist worker
    return data[:-truncate] if truncate else data


def test_names_sort_by_timestamp_and_collisions_get_a_sequence():
    first = _snapshot.snapshot_name("vault", WHEN)
    assert first == "vault-20270102T030405Z.snap"
    second = _snapshot.snapshot_name("vault", WHEN, [first])
    assert second == "vault-20270102T030405Z-2.snap"
    later = _snapshot.snapshot_name("vault", WHEN + datetime.timedelta(days=1))
    names = [first, later, second, "other-20300101T000000Z.snap", "vault-20300101T000000Z.snap.json", "notes.txt",
             _snapshot.backup_name("vault", WHEN + datetime.timedelta(days=9))]
    assert _snapshot.snapshots_newest_first(names, "vault") == [later, second, first]
    assert _snapshot.snapshot_name("vault", WHEN, [second + ".json"]) == "vault-20270102T030405Z-3.snap"


def test_a_new_name_in_the_same_second_sorts_newest_even_after_retention_freed_a_lower_one():
    # retention removed "<stamp>.snap"; "<stamp>-2" and "-3" remain: the next one is "-4", not "<stamp>.snap"
    remaining = ["vault-20270102T030405Z-2.snap", "vault-20270102T030405Z-3.snap"]
    name = _snapshot.snapshot_name("vault", WHEN, remaining)
    assert name == "vault-20270102T030405Z-4.snap"
    keep, remove = _snapshot.retention_plan(remaining + [name], "vault", 1)
    assert keep == [name] and sorted(remove) == remaining


def test_retention_keeps_the_newest_and_ignores_other_files():
    names = ["vault-2027010%dT000000Z.snap" % day for day in range(1, 6)] + ["vault-pre-restore-20270109T000000Z.snap"]
    keep, remove = _snapshot.retention_plan(names, "vault", 2)
    assert keep == ["vault-20270105T000000Z.snap", "vault-20270104T000000Z.snap"]
    assert remove == ["vault-20270103T000000Z.snap", "vault-20270102T000000Z.snap", "vault-20270101T000000Z.snap"]
    assert _snapshot.retention_plan(names, "vault", None)[1] == []


@pytest.mark.parametrize("path, exists, is_dir, expected", [
    ("/b/snaps", True, True, ("/b/snaps", "vault-20270102T030405Z.snap", True)),
    ("/b/new/", False, False, ("/b/new", "vault-20270102T030405Z.snap", True)),
    ("/b/new", False, False, ("/b/new", "vault-20270102T030405Z.snap", True)),
    ("/b/one.snap", False, False, ("/b", "one.snap", False)),
    ("/b/one.snap", True, False, ("/b", "one.snap", False)),
])
def test_destination(path, exists, is_dir, expected):
    assert _snapshot.destination(path, "vault", WHEN, exists, is_dir, []) == expected


def test_destination_refuses_an_existing_other_file():
    with pytest.raises(SnapshotError, match="not a directory or a .snap file"):
        _snapshot.destination("/etc/passwd", "vault", WHEN, True, False, [])


@pytest.mark.parametrize("prefix", ["", "../x", "a/b", "-x", None])
def test_prefix_must_be_a_plain_name(prefix):
    with pytest.raises(SnapshotError, match="prefix"):
        _snapshot.validate_prefix(prefix)


def test_a_complete_snapshot_gives_its_raft_index_and_term():
    meta = _snapshot.inspect_snapshot(io.BytesIO(snapshot_bytes()))
    assert meta["raft_index"] == 36 and meta["raft_term"] == 3


@pytest.mark.parametrize("data, message", [
    (snapshot_bytes(members=("meta.json", "state.bin", "SHA256SUMS")), "SHA256SUMS.sealed missing"),
    (snapshot_bytes(bad_sum=True), "state.bin does not match"),
    (snapshot_bytes(truncate=30), "not a complete raft snapshot"),
    (snapshot_bytes(truncate=4), "not a complete raft snapshot"),
    (b'{"errors":["permission denied"]}', "not a complete raft snapshot"),
    (b"", "not a complete raft snapshot"),
    (gzip.compress(b"not a tar at all" * 100, mtime=0), "not a complete raft snapshot"),
], ids=["no-sealed-sums", "bad-sum", "truncated-30", "truncated-4", "json-error", "empty", "not-a-tar"])
def test_incomplete_or_corrupt_snapshots_are_refused(data, message):
    with pytest.raises(SnapshotError, match=message):
        _snapshot.inspect_snapshot(io.BytesIO(data))


def test_checksum_against_the_sidecar():
    _snapshot.check_checksum("/s", {"sha256": "AB"}, "ab", 1, True)
    with pytest.raises(SnapshotError, match="does not match its sidecar.*nothing was sent"):
        _snapshot.check_checksum("/s", {"sha256": "cd"}, "ab", 1, True)
    with pytest.raises(SnapshotError, match="no sidecar.*verify_checksum: false"):
        _snapshot.check_checksum("/s", None, "ab", 1, True)
    _snapshot.check_checksum("/s", None, "ab", 1, False)


def test_sidecar_holds_no_content_only_facts():
    document = _snapshot.sidecar_document("ab", 10, {"version": "2.7.2", "cluster_id": "c1", "cluster_name": "n",
                                                     "storage_type": "raft"},
                                          {"raft_index": 5, "raft_term": 2}, "http://n1:8200", WHEN, "f.snap")
    assert document["created"] == "2027-01-02T03:04:05Z" and document["raft_index"] == 5
    assert set(document) == {"format", "file", "sha256", "size", "version", "cluster_id", "cluster_name",
                             "storage_type", "raft_index", "raft_term", "node", "created"}


def test_active_node_choice():
    url = "http://n2:8200"
    assert _snapshot.pick_active({"ha_enabled": True, "is_self": True}, url, False, "saved") == url
    standby = {"ha_enabled": True, "is_self": False, "leader_address": "http://n1:8200/"}
    assert _snapshot.pick_active(standby, url, True, "saved") == "http://n1:8200"
    with pytest.raises(SnapshotError, match="standby; the active node is http://n1:8200.*follow_leader"):
        _snapshot.pick_active(standby, url, False, "saved")
    with pytest.raises(SnapshotError, match="names no active node"):
        _snapshot.pick_active({"ha_enabled": True, "is_self": False, "leader_address": ""}, url, True, "restored")


def test_a_snapshot_of_another_cluster_needs_force():
    sidecar = {"cluster_id": "a", "cluster_name": "A"}
    refusal = _snapshot.cross_cluster_refusal(sidecar, {"cluster_id": "b", "cluster_name": "B"}, False)
    assert "seals every node" in refusal and "ORIGINAL unseal keys" in refusal and "force: true" in refusal
    assert _snapshot.cross_cluster_refusal(sidecar, {"cluster_id": "b"}, True) is None
    assert _snapshot.cross_cluster_refusal(sidecar, {"cluster_id": "a"}, False) is None
    assert _snapshot.cross_cluster_refusal(None, {"cluster_id": "b"}, False) is None
    assert "snapshot-force" in _snapshot.explain_restore_refusal(
        400, "could not verify hash file, possibly the snapshot is using a different set of unseal keys", "p")
    assert _snapshot.explain_restore_refusal(403, "permission denied", "p") is None


def test_restore_messages_tell_what_to_do_next():
    sealed = _snapshot.restore_message(True, True, True, "http://n1")
    assert "ORIGINAL unseal keys" in sealed and "is_self" in sealed and "forward" in sealed
    assert "restart its service" in sealed  # a standby that missed the restore
    assert "did not answer" in _snapshot.restore_message(False, False, False, "http://n1")
    assert "restored data" in _snapshot.restore_message(False, False, True, "http://n1")


def test_restore_source_and_sidecar(tmp_path):
    with pytest.raises(SnapshotError, match="does not exist"):
        _snapshot.resolve_restore_source(str(tmp_path / "missing.snap"), "vault")
    with pytest.raises(SnapshotError, match="no snapshot vault-<timestamp>.snap"):
        _snapshot.resolve_restore_source(str(tmp_path), "vault")
    for name in ("vault-20270101T000000Z.snap", "vault-20270102T000000Z.snap", "vault-pre-restore-20270109T000000Z.snap"):
        (tmp_path / name).write_bytes(b"x")
    assert _snapshot.resolve_restore_source(str(tmp_path), "vault").endswith("vault-20270102T000000Z.snap")
    assert _snapshot.read_sidecar(str(tmp_path / "vault-20270102T000000Z.snap")) is None
    (tmp_path / "vault-20270102T000000Z.snap.json").write_text("[1]")
    with pytest.raises(SnapshotError, match="not a JSON object"):
        _snapshot.read_sidecar(str(tmp_path / "vault-20270102T000000Z.snap"))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_waiting_after_a_restore(monkeypatch):
    answers = []

    def probe(_active, _path, _timeout):
        return answers.pop(0)

    monkeypatch.setattr(_snapshot, "_probe", probe)
    clock = FakeClock()
    # same keys: unsealed, then the authenticated request answers
    answers[:] = [(200, {"sealed": False}), (200, {})]
    assert _snapshot.wait_after_restore(None, False, 30, clock, clock.sleep) == (True, False)
    # other keys: not answering, then unsealed, then sealed
    answers[:] = [(None, None), (200, {"sealed": False}), (200, {"sealed": True})]
    assert _snapshot.wait_after_restore(None, True, 30, clock, clock.sleep) == (True, True)
    # our token vanished with the restore: wait for the seal instead
    answers[:] = [(200, {"sealed": False}), (403, {}), (200, {"sealed": True})]
    assert _snapshot.wait_after_restore(None, False, 30, clock, clock.sleep) == (True, True)
    # never answers: gives up at the deadline
    answers[:] = [(None, None)] * 100
    assert _snapshot.wait_after_restore(None, True, 5, clock, clock.sleep) == (False, False)
