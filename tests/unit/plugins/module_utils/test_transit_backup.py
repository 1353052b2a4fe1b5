"""Backups before trim/delete, and restore: the decisions, without a server."""

import base64
import datetime
import json
import os

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import plan_transit_key
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit_backup import (
    BackupSettings,
    TransitBackupError,
    backup_target,
    blob_summary,
    check_destruction,
    explain_backup_failure,
    plan_restore,
    write_backup,
)

NOW = datetime.datetime(2026, 11, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def key(latest=3, min_dec=3, min_enc=3, min_avail=0, backup=True, deletion_allowed=True):
    return {"name": "k", "type": "aes256-gcm96", "latest_version": latest, "min_decryption_version": min_dec,
            "min_encryption_version": min_enc, "min_available_version": min_avail, "deletion_allowed": deletion_allowed,
            "exportable": backup, "allow_plaintext_backup": backup, "derived": False, "auto_rotate_period": 0,
            "versions": dict((str(v), "2026-01-01T00:00:00Z") for v in range(max(1, min_dec), latest + 1))}


def blob(latest=3, min_avail=0, min_dec=1, name="k"):
    policy = {"name": name, "latest_version": latest, "min_available_version": min_avail,
              "min_decryption_version": min_dec, "keys": {"1": {"key": "c2VjcmV0"}}}
    return base64.b64encode(json.dumps({"policy": policy, "archived_keys": {"keys": []}}).encode()).decode()


def desired(**options):
    base = {"name": "k", "state": "present", "rotate": False, "force": False}
    base.update(options)
    return base


def test_a_trim_of_a_backupable_key_is_preceded_by_a_backup():
    settings = BackupSettings("/backups/")
    ops, _result = plan_transit_key(key(), desired(min_available_version=3), NOW, settings)
    assert [op[0] for op in ops] == ["backup", "trim"]
    assert ops[0][2] == "backed up versions 1-3 before the trim"


def test_without_a_backup_the_trim_needs_the_acknowledgement():
    with pytest.raises(TransitBackupError, match="does not allow backups .*allow_data_loss: true"):
        plan_transit_key(key(backup=False), desired(min_available_version=3), NOW, BackupSettings("/b/"))
    with pytest.raises(TransitBackupError, match="the key allows backups, so give backup_path"):
        plan_transit_key(key(), desired(min_available_version=3), NOW, BackupSettings())
    ops, _result = plan_transit_key(key(backup=False), desired(min_available_version=3, allow_data_loss=True), NOW)
    assert [op[0] for op in ops] == ["trim"]


def test_delete_is_guarded_the_same_way():
    with pytest.raises(TransitBackupError, match="refusing to delete transit key 'k'"):
        plan_transit_key(key(backup=False), desired(state="absent"), NOW, BackupSettings("/b/"))
    ops, _result = plan_transit_key(key(), desired(state="absent"), NOW, BackupSettings("/b/"))
    assert [op[0] for op in ops] == ["backup", "delete"]


def test_exportable_in_the_same_task_makes_the_backup_possible():
    wanted = desired(min_available_version=3, exportable=True, allow_plaintext_backup=True)
    ops, _result = plan_transit_key(key(backup=False), wanted, NOW, BackupSettings("/b/"))
    assert [op[0] for op in ops] == ["config", "backup", "trim"]


def test_check_destruction_answers():
    assert check_destruction("k", "trim", key(), BackupSettings("/b"), False) == "backup"
    assert check_destruction("k", "trim", key(backup=False), BackupSettings("/b"), True) == "irreversible"


def test_blob_summary_and_file_names(tmp_path):
    summary = blob_summary(blob(latest=5, min_avail=3, min_dec=4))
    assert summary == {"name": "k", "latest_version": 5, "first_version": 3, "min_decryption_version": 4,
                       "min_available_version": 3}
    assert blob_summary("not base64!") is None and blob_summary(base64.b64encode(b"{}").decode()) is None
    target = backup_target(str(tmp_path), "team/transit", "k", summary, NOW)
    assert target == str(tmp_path / "team_transit.k.v3-v5.20261101T120000Z.transit-backup")
    assert backup_target(str(tmp_path / "new") + "/", "t", "k", summary, NOW, encrypted=True).endswith(".gpg")
    assert backup_target(str(tmp_path / "one.bak"), "t", "k", summary, NOW) == str(tmp_path / "one.bak")


def test_write_backup_is_private(tmp_path):
    path, digest = write_backup(blob(), str(tmp_path / "d" / "e" / "k.bak"))
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(str(tmp_path / "d" / "e")).st_mode & 0o777) == "0o700"
    assert len(digest) == 64 and open(path).read() == blob()


def test_vaults_500_refusals_are_explained():
    assert "exportable: true, allow_plaintext_backup: true" in explain_backup_failure(
        500, "1 error occurred:\n\t* exporting is disallowed on the policy", "t", "k", "GET t/backup/k")
    assert "needs force: true" in explain_backup_failure(500, '* key "k" already exists', "t", "k", "POST")
    assert explain_backup_failure(500, "something else", "t", "k", "GET") is None


def test_plan_restore():
    trimmed = key(latest=3, min_dec=3, min_avail=3)
    summary = blob_summary(blob(latest=3, min_avail=0, min_dec=1))
    assert plan_restore("k", None, summary, False, False).startswith("restored from backup (versions 1-3)")
    with pytest.raises(TransitBackupError, match="needs force: true"):
        plan_restore("k", trimmed, summary, False, False)
    assert "over the existing key" in plan_restore("k", trimmed, summary, True, False)
    # Already what the backup holds: nothing to do.
    assert plan_restore("k", key(latest=3, min_dec=1, min_avail=0), summary, True, False) is None
    # An older backup over a newer key deletes versions: refused unless allowed.
    newer = key(latest=4, min_dec=1)
    with pytest.raises(TransitBackupError, match="deletes versions 4-4"):
        plan_restore("k", newer, summary, True, False)
    assert plan_restore("k", newer, summary, True, True)
