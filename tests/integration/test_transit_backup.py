"""Backups before trim/delete and their restore, through real ansible-playbook runs against real OpenBao."""

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from lab import _process, seed, transit_data

from test_vault_transit_key import key_task, read_key


def register_backup(blob):
    """The backup and every raw key in it are secrets: the secret scan looks for them in every output."""
    _process.register_secret("transit_backup", blob)
    for version in json.loads(base64.b64decode(blob))["policy"]["keys"].values():
        for field in ("key", "hmac_key"):
            if version.get(field):
                _process.register_secret("transit_key_material", version[field])


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def backupable_key_with_old_ciphertext(ansible, vault_client, mount, name="k"):
    """A key at version 3 that allows backups, and a ciphertext of version 1."""
    ansible([key_task(mount, name=name, exportable=True, allow_plaintext_backup=True)], expect_rc=0)
    client = transit_data.client(vault_client.url, vault_client.token)
    ciphertext = transit_data.encrypt_many(client, mount, name, ["backup-me"])[0]
    ansible([key_task(mount, name=name, rotate=True)] * 2, expect_rc=0)
    return client, ciphertext


def decrypts(client, mount, ciphertext, name="k"):
    return transit_data.decrypt_many(client, mount, name, [ciphertext]) == ["backup-me"]


TRIM = dict(min_decryption_version=3, force=True, min_encryption_version=3, min_available_version=3)


def test_backup_trim_restore_round_trip(ansible, vault_client, transit_mount, tmp_path):
    client, ct1 = backupable_key_with_old_ciphertext(ansible, vault_client, transit_mount)
    backups = tmp_path / "backups"
    run = ansible([key_task(transit_mount, backup_path=str(backups) + "/", **TRIM)], verbosity=3, expect_rc=0)
    result = run.task("key")
    backup = result["backup"]
    assert result["irreversible"] is False
    assert result["actions"][1:] == ["backed up versions 1-3 before the trim", "trimmed versions below 3"]
    assert (backup["first_version"], backup["last_version"], backup["encrypted"]) == (1, 3, False)
    assert os.path.dirname(backup["path"]) == str(backups)
    assert os.path.basename(backup["path"]).startswith("%s.k.v1-v3." % transit_mount)
    assert mode(backup["path"]) == 0o600 and mode(str(backups)) == 0o700
    content = open(backup["path"], "rb").read()
    assert hashlib.sha256(content).hexdigest() == backup["sha256"]
    blob = content.decode()
    register_backup(blob)
    assert blob not in run.output and "backup-me" not in run.output
    assert read_key(vault_client, transit_mount)["min_available_version"] == 3
    assert not decrypts(client, transit_mount, ct1)

    # Over the live key: refused without force, then rolled back to the backup with it.
    refused = ansible([key_task(transit_mount, state="restored", backup_file=backup["path"])])
    assert refused.rc != 0 and "needs force: true" in refused.task("key")["msg"]
    check = ansible([key_task(transit_mount, state="restored", backup_file=backup["path"], force=True)], check=True,
                    expect_rc=0)
    assert check.task("key")["changed"] is True and read_key(vault_client, transit_mount)["min_available_version"] == 3
    restored = ansible([key_task(transit_mount, state="restored", backup_file=backup["path"], force=True)],
                       verbosity=3, expect_rc=0)
    assert restored.task("key")["changed"] is True and blob not in restored.output
    assert restored.task("key")["key"]["min_available_version"] == 0
    # The backup was taken right before the trim, after min_decryption_version went to 3: restored with it.
    # Version 1 exists again, so lowering the minimum (always allowed) makes its ciphertext decrypt.
    assert restored.task("key")["key"]["min_decryption_version"] == 3 and not decrypts(client, transit_mount, ct1)
    again = ansible([key_task(transit_mount, state="restored", backup_file=backup["path"], force=True)], expect_rc=0)
    assert again.task("key")["changed"] is False
    ansible([key_task(transit_mount, min_decryption_version=1)], expect_rc=0)
    assert decrypts(client, transit_mount, ct1)

    # A backup older than the key's latest version would delete the newer version: refused unless allowed.
    ansible([key_task(transit_mount, rotate=True)], expect_rc=0)
    ct4 = transit_data.encrypt_many(client, transit_mount, "k", ["backup-me"])[0]
    older = ansible([key_task(transit_mount, state="restored", backup_file=backup["path"], force=True)])
    assert older.rc != 0 and "deletes versions 4-4" in older.task("key")["msg"]
    assert decrypts(client, transit_mount, ct4)


def test_delete_with_backup_then_restore_the_missing_key(ansible, vault_client, transit_mount, tmp_path):
    client, ct1 = backupable_key_with_old_ciphertext(ansible, vault_client, transit_mount)
    target = tmp_path / "one-file.backup"
    deleted = ansible([key_task(transit_mount, state="absent", deletion_allowed=True, backup_path=str(target))],
                      expect_rc=0).task("key")
    assert deleted["backup"]["path"] == str(target) and deleted["key"] == {} and mode(str(target)) == 0o600
    register_backup(target.read_text())
    assert not decrypts(client, transit_mount, ct1)
    ansible([key_task(transit_mount, state="restored", backup_file=str(target))], expect_rc=0)
    assert decrypts(client, transit_mount, ct1)


@pytest.fixture()
def gnupg_home():
    """A throwaway GnuPG home (short path: the agent's socket lives in it) with one key without passphrase."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed (requirements/system.txt: gnupg)")
    home = tempfile.mkdtemp(prefix="kgpg-", dir="/tmp")
    env = dict(os.environ, GNUPGHOME=home)
    try:
        subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                        "keyops backup test <backup@example.invalid>", "default", "default", "never"],
                       env=env, check=True, capture_output=True)
        public = os.path.join(home, "backup-pub.asc")
        with open(public, "wb") as handle:
            handle.write(subprocess.run(["gpg", "--batch", "--armor", "--export", "backup@example.invalid"], env=env,
                                        check=True, capture_output=True).stdout)
        yield home, public
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_gpg_encrypted_backup_restores_with_the_private_key(ansible, vault_client, transit_mount, tmp_path,
                                                            gnupg_home):
    home, public = gnupg_home
    client, ct1 = backupable_key_with_old_ciphertext(ansible, vault_client, transit_mount)
    result = ansible([key_task(transit_mount, backup_path=str(tmp_path / "enc") + "/", backup_gpg_key_file=public,
                               **TRIM)], expect_rc=0).task("key")
    path = result["backup"]["path"]
    assert result["backup"]["encrypted"] is True and path.endswith(".transit-backup.gpg") and mode(path) == 0o600
    content = open(path, "rb").read()
    assert hashlib.sha256(content).hexdigest() == result["backup"]["sha256"]
    plain = subprocess.run(["gpg", "--batch", "--quiet", "--decrypt", path], env=dict(os.environ, GNUPGHOME=home),
                           check=True, capture_output=True).stdout
    register_backup(plain.decode())
    assert plain not in content  # encrypted, not wrapped
    assert not decrypts(client, transit_mount, ct1)

    without_key = ansible([key_task(transit_mount, state="restored", backup_file=path, force=True)])
    assert without_key.rc != 0 and "could not decrypt" in without_key.task("key")["msg"]
    task = dict(key_task(transit_mount, state="restored", backup_file=path, force=True),
                environment={"GNUPGHOME": home})
    assert ansible([task, key_task(transit_mount, min_decryption_version=1)], expect_rc=0).task("key")["changed"]
    assert decrypts(client, transit_mount, ct1)


def test_trim_and_delete_without_backups_need_the_acknowledgement(ansible, vault_client, transit_mount, tmp_path):
    ansible([key_task(transit_mount)] + [key_task(transit_mount, rotate=True)] * 2, expect_rc=0)
    backups = tmp_path / "backups"
    refused = ansible([key_task(transit_mount, backup_path=str(backups), **TRIM)])
    assert refused.rc != 0
    msg = refused.task("key")["msg"]
    assert "does not allow backups" in msg and "allow_data_loss: true" in msg and "allow_plaintext_backup: true" in msg
    assert read_key(vault_client, transit_mount)["min_decryption_version"] == 1  # nothing was sent
    trimmed = ansible([key_task(transit_mount, irreversible_ok=True, **TRIM)], expect_rc=0).task("key")
    assert trimmed["irreversible"] is True and trimmed["backup"] is None
    assert read_key(vault_client, transit_mount)["min_available_version"] == 3
    assert not backups.exists()

    refused = ansible([key_task(transit_mount, state="absent", deletion_allowed=True)])
    assert refused.rc != 0 and "refusing to delete transit key 'k'" in refused.task("key")["msg"]
    deleted = ansible([key_task(transit_mount, state="absent", deletion_allowed=True, irreversible_ok=True)],
                      expect_rc=0).task("key")
    assert deleted["irreversible"] is True and deleted["key"] == {}


def test_backupable_key_without_backup_path_is_refused(ansible, vault_client, transit_mount):
    backupable_key_with_old_ciphertext(ansible, vault_client, transit_mount)
    refused = ansible([key_task(transit_mount, **TRIM)])
    assert refused.rc != 0 and "the key allows backups, so give backup_path" in refused.task("key")["msg"]


def test_check_mode_writes_no_backup(ansible, vault_client, transit_mount, tmp_path):
    backupable_key_with_old_ciphertext(ansible, vault_client, transit_mount)
    before = read_key(vault_client, transit_mount)
    backups = tmp_path / "backups"
    result = ansible([key_task(transit_mount, backup_path=str(backups) + "/", **TRIM)], check=True,
                     expect_rc=0).task("key")
    assert result["changed"] is True and result["backup"]["sha256"] is None
    assert result["backup"]["path"].startswith(str(backups)) and (result["backup"]["last_version"] == 3)
    assert not backups.exists() and read_key(vault_client, transit_mount) == before


def test_rotation_role_backs_up_before_its_trim_and_refuses_an_unacknowledged_one(vault, transit_mount, tmp_path):
    from rotation_helpers import Rotation

    keys = {"gamma": ([30, 20], None), "delta": ([10], None)}
    rotation = Rotation(vault, transit_mount, tmp_path, keys, trim=("gamma", "delta"), backupable=("gamma",))
    client = rotation.client
    old = transit_data.read_ciphertexts(rotation.seeded["gamma"])[:1]
    backups = tmp_path / "backups"
    backup_dir = ["-e", "transit_rotation_backup_dir=%s" % backups]

    # delta allows no backups and is not acknowledged: step 4 refuses, nothing is trimmed.
    refused = rotation.run(*backup_dir)
    assert refused.rc != 0 and "refusing to trim delta (mount %s)" % transit_mount in refused.output
    assert "set trim_without_backup: true" in refused.output and "does not allow backups" in refused.output
    assert rotation.key("gamma")["min_available_version"] == 0 and not backups.exists()

    data = rotation.rotation_vars
    data["transit_rotation_keys"][1]["trim_without_backup"] = True
    rotation.write_vars(data)
    # Check mode: nothing written (no backup either).
    rotation.run("--check", *backup_dir, expect_rc=0)
    assert not backups.exists() and rotation.key("gamma")["latest_version"] == 3
    rotation.run(*backup_dir, expect_rc=0)
    report = rotation.report()
    gamma, delta = report["gamma"]["trim"], report["delta"]["trim"]
    assert delta == {"below": 3, "backup": None, "irreversible": True}
    assert gamma["irreversible"] is False and gamma["below"] == 4
    path = gamma["backup"]["path"]
    assert os.path.dirname(path) == str(backups) and mode(path) == 0o600 and mode(str(backups)) == 0o700
    assert (gamma["backup"]["first_version"], gamma["backup"]["last_version"]) == (1, 4)
    register_backup(open(path).read())
    markdown = (rotation.report_dir / "rotation-report.md").read_text()
    assert "| gamma | %s | 4 | `%s` (v1-v4, sha256 %s) |" % (transit_mount, path, gamma["backup"]["sha256"]) in markdown
    assert open(path).read() not in markdown

    # The trimmed versions come back from the backup (then the old ciphertext decrypts with a lowered minimum).
    expected = seed.expected_plaintexts("gamma", keys["gamma"][0])[:1]
    assert transit_data.decrypt_many(client, transit_mount, "gamma", old) != expected
    from _ansible import play, run_playbook
    restore = [{"name": "restore", "keyops.lifecycle.vault_transit_key": {
        "name": "gamma", "mount": transit_mount, "state": "restored", "backup_file": path, "force": True}},
        {"name": "lower", "keyops.lifecycle.vault_transit_key": {
            "name": "gamma", "mount": transit_mount, "min_decryption_version": 1}}]
    run_playbook(tmp_path, play(restore), env=vault.env, expect_rc=0)
    assert transit_data.decrypt_many(client, transit_mount, "gamma", old) == expected
