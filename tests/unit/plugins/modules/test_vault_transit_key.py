"""vault_transit_key against a fake transit engine: create, rotate, guarded config, trims/deletes with backups,
restore - and key material never in a result."""

import base64
import json
import os
import stat

import pytest
from _module_runner import assert_not_in_result, module_kwargs, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import KEY_TYPES
from ansible_collections.keyops.lifecycle.plugins.modules import vault_transit_key

KEY = "transit/keys/kasten"


def run(vault_args, check_mode=False, diff=False, **options):
    return run_module(vault_transit_key.main, dict(vault_args, name="kasten", **options), check_mode=check_mode,
                      diff=diff)


def backupable(fake_transit, versions=3, **settings):
    return fake_transit.add_key("kasten", versions=versions, exportable=True, allow_plaintext_backup=True,
                                min_decryption_version=2, min_encryption_version=2, **settings)


def test_argument_spec():
    kwargs = module_kwargs(vault_transit_key.main)
    spec = kwargs["argument_spec"]
    assert spec["name"]["required"] is True and spec["mount"]["default"] == "transit"
    assert spec["state"]["choices"] == ["present", "absent", "restored"]
    assert spec["type"]["choices"] == list(KEY_TYPES)
    assert spec["oldest_version_in_use"]["aliases"] == ["in_use_min_version"]
    assert spec["allow_data_loss"]["default"] is False and spec["allow_data_loss"]["aliases"] == ["irreversible_ok"]
    assert spec["force"]["default"] is False
    assert ("rotate", "rotate_older_than") in kwargs["mutually_exclusive"]
    assert ("backup_gpg_recipient", "backup_gpg_key_file") in kwargs["mutually_exclusive"]
    assert ("state", "restored", ("backup_file",)) in kwargs["required_if"]
    assert no_log_options(spec) == {"token", "secret_id"}


def test_a_missing_key_is_created_with_a_diff(fake_transit, fake_vault, vault_args):
    result = run(vault_args, diff=True)
    assert result["changed"] is True and result["actions"] == ["created (aes256-gcm96)"]
    assert fake_vault.writes() == [("POST", KEY, {"type": "aes256-gcm96"})]
    assert result["key"]["latest_version"] == 1 and result["key"]["type"] == "aes256-gcm96"
    assert result["diff"]["before"] == {} and result["diff"]["after"]["latest_version"] == 1
    assert result["backup"] is None and result["irreversible"] is False


def test_check_mode_predicts_the_creation_and_sends_nothing(fake_transit, fake_vault, vault_args):
    result = run(vault_args, check_mode=True, type="ed25519")
    assert result["changed"] is True and result["actions"] == ["created (ed25519)"]
    assert result["key"]["type"] == "ed25519" and result["key"]["latest_version"] == 1
    assert fake_vault.writes() == [] and "kasten" not in fake_transit.keys


def test_an_existing_key_that_matches_is_unchanged(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=2)
    result = run(vault_args, type="aes256-gcm96", min_decryption_version=1, diff=True)
    assert result["changed"] is False and result["actions"] == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert fake_vault.writes() == []


def test_rotate_sends_one_rotate(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=2)
    result = run(vault_args, rotate=True)
    assert result["changed"] is True and result["actions"] == ["rotated to version 3"]
    assert result["key"]["latest_version"] == 3
    assert fake_vault.writes() == [("POST", KEY + "/rotate", {})]


@pytest.mark.parametrize("age_days, rotates", [(100, True), (10, False)])
def test_rotate_older_than_rotates_only_when_due(fake_transit, fake_vault, vault_args, age_days, rotates):
    fake_transit.add_key("kasten", versions=1, age_days=[age_days])
    result = run(vault_args, rotate_older_than="90d")
    assert result["changed"] is rotates
    assert [r[1] for r in fake_vault.writes()] == ([KEY + "/rotate"] if rotates else [])


def test_rotate_and_rotate_older_than_are_mutually_exclusive(fake_transit, fake_vault, vault_args):
    result = run(vault_args, rotate=True, rotate_older_than="90d")
    assert result["failed"] and "mutually exclusive: rotate|rotate_older_than" in result["msg"]
    assert fake_vault.requests == []


def test_a_bad_duration_names_the_option_and_the_format(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten")
    result = run(vault_args, rotate_older_than="soon")
    assert result["failed"] and "`rotate_older_than` must be a duration like 90d" in result["msg"]
    assert fake_vault.writes() == []


def test_raising_min_decryption_version_needs_proof(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3)
    result = run(vault_args, min_decryption_version=3)
    assert result["failed"] and "refusing to raise min_decryption_version from 1 to 3" in result["msg"]
    assert "oldest_version_in_use" in result["msg"] and fake_vault.writes() == []


def test_consumers_still_on_an_older_version_block_the_raise(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3)
    result = run(vault_args, min_decryption_version=3, oldest_version_in_use=2)
    assert result["failed"] and "consumers still use key version 2" in result["msg"]
    assert "at most 2 is safe now" in result["msg"] and fake_vault.writes() == []


def test_min_decryption_version_raised_as_far_as_consumers_allow(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3)
    result = run(vault_args, min_decryption_version=3, oldest_version_in_use=3, diff=True)
    assert result["changed"] is True and result["actions"] == ["configured: min_decryption_version 1 -> 3"]
    assert fake_vault.writes() == [("POST", KEY + "/config", {"min_decryption_version": 3})]
    assert sorted(result["diff"]["before"]["versions"]) == ["1", "2", "3"]
    assert sorted(result["diff"]["after"]["versions"]) == ["3"]


def test_the_deprecated_alias_still_works_and_warns(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3)
    result = run(vault_args, min_decryption_version=2, in_use_min_version=2)
    assert result["changed"] is True
    # ansible-core 2.19 reports deprecations as DeprecationSummary events.
    assert any("in_use_min_version" in json.dumps(d) and d.get("version") == "2.0.0"
               for d in result.get("deprecations", []))


def test_min_decryption_version_above_the_latest_is_refused(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=2)
    result = run(vault_args, min_decryption_version=5, force=True)
    assert result["failed"] and result["msg"] == "min_decryption_version 5 is above the latest key version 2"


def test_a_type_change_is_refused(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten")
    result = run(vault_args, type="rsa-2048")
    assert result["failed"] and "is of type aes256-gcm96, not rsa-2048" in result["msg"]
    assert "Create a new key" in result["msg"] and fake_vault.writes() == []


def test_one_way_options_cannot_be_turned_off(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", exportable=True)
    result = run(vault_args, exportable=False)
    assert result["failed"] and "`exportable` cannot be turned off once enabled" in result["msg"]


def test_hmac_needs_a_key_size(fake_transit, fake_vault, vault_args):
    result = run(vault_args, type="hmac")
    assert result["failed"] and result["msg"] == "type hmac needs key_size (bytes, 32 to 512)"
    assert fake_vault.writes() == []


def test_a_type_outside_the_choices_lists_them(fake_transit, fake_vault, vault_args):
    result = run(vault_args, type="aes512")
    assert result["failed"] and "value of type must be one of: aes128-gcm96" in result["msg"]


def test_a_trim_without_a_possible_backup_needs_allow_data_loss(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3, min_decryption_version=2, min_encryption_version=2)
    result = run(vault_args, min_available_version=2)
    assert result["failed"] and "refusing to trim transit key 'kasten'" in result["msg"]
    assert "allow_data_loss: true" in result["msg"] and fake_vault.writes() == []


def test_an_acknowledged_trim_is_reported_irreversible(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3, min_decryption_version=2, min_encryption_version=2)
    result = run(vault_args, min_available_version=2, allow_data_loss=True)
    assert result["changed"] is True and result["irreversible"] is True and result["backup"] is None
    assert "deprecations" not in result
    assert fake_vault.writes() == [("POST", KEY + "/trim", {"min_available_version": 2})]
    assert result["key"]["min_available_version"] == 2


def test_the_deprecated_irreversible_ok_still_acknowledges_and_warns(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3, min_decryption_version=2, min_encryption_version=2)
    result = run(vault_args, min_available_version=2, irreversible_ok=True)
    assert result["changed"] is True and result["irreversible"] is True
    assert any("irreversible_ok" in json.dumps(d) for d in result.get("deprecations", []))


def test_a_backupable_key_is_backed_up_0600_before_the_trim(fake_transit, fake_vault, vault_args, tmp_path):
    backupable(fake_transit)
    blob = fake_transit.backup_blob("kasten")
    result = run(vault_args, min_available_version=2, backup_path=str(tmp_path / "backups") + "/")
    assert result["changed"] is True and result["irreversible"] is False
    assert [r[:2] for r in fake_vault.requests if r[1] != KEY] == [("GET", "transit/backup/kasten"),
                                                                   ("POST", KEY + "/trim")]
    backup = result["backup"]
    assert backup["first_version"] == 1 and backup["last_version"] == 3 and backup["encrypted"] is False
    assert os.path.basename(backup["path"]).startswith("transit.kasten.v1-v3.")
    with open(backup["path"]) as handle:
        assert handle.read() == blob  # the blob exactly as Vault gave it: `bao write .../restore` takes it
    assert stat.S_IMODE(os.stat(backup["path"]).st_mode) == 0o600
    assert_not_in_result(result, blob, "KEY-MATERIAL")


def test_check_mode_predicts_the_backup_and_writes_nothing(fake_transit, fake_vault, vault_args, tmp_path):
    backupable(fake_transit)
    result = run(vault_args, check_mode=True, min_available_version=2, backup_path=str(tmp_path) + "/")
    assert result["changed"] is True and result["backup"]["sha256"] is None
    assert result["backup"]["path"].startswith(str(tmp_path)) and os.listdir(tmp_path) == []
    assert result["actions"][0] == "backed up versions 1-3 before the trim"
    assert fake_vault.writes() == [] and fake_vault.sent("GET", "transit/backup/kasten") == []


def test_check_mode_of_create_and_trim_with_backup_predicts_instead_of_crashing(fake_transit, vault_args, tmp_path):
    result = run(vault_args, check_mode=True, exportable=True, allow_plaintext_backup=True, min_encryption_version=1,
                 min_available_version=1, backup_path=str(tmp_path) + "/")
    assert result["changed"] is True and result["backup"]["sha256"] is None


def test_deleting_needs_deletion_allowed_confirmed(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten")
    result = run(vault_args, state="absent", allow_data_loss=True)
    assert result["failed"] and "its deletion_allowed is false" in result["msg"]
    assert "set deletion_allowed: true" in result["msg"] and fake_vault.writes() == []


def test_delete_with_confirmation(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten")
    result = run(vault_args, state="absent", deletion_allowed=True, allow_data_loss=True, diff=True)
    assert result["changed"] is True and result["key"] == {} and result["irreversible"] is True
    assert fake_vault.writes() == [("POST", KEY + "/config", {"deletion_allowed": True}), ("DELETE", KEY, None)]
    assert result["diff"]["after"] == {} and "kasten" not in fake_transit.keys


def test_absent_when_missing_is_unchanged(fake_transit, fake_vault, vault_args):
    result = run(vault_args, state="absent")
    assert result["changed"] is False and fake_vault.writes() == []


def write_backup(tmp_path, fake_transit, **settings):
    key = backupable(fake_transit, **settings)
    path = tmp_path / "kasten.transit-backup"
    path.write_text(fake_transit.backup_blob("kasten"))
    return key, path


def test_restore_creates_a_missing_key_from_the_backup(fake_transit, fake_vault, vault_args, tmp_path):
    _key, path = write_backup(tmp_path, fake_transit)
    del fake_transit.keys["kasten"]
    result = run(vault_args, state="restored", backup_file=str(path))
    assert result["changed"] is True and result["actions"] == ["restored from backup (versions 1-3)"]
    assert result["key"]["latest_version"] == 3
    restore = fake_vault.sent("POST", "transit/restore/kasten")
    assert len(restore) == 1 and restore[0][2]["force"] is False
    assert_not_in_result(result, path.read_text(), "KEY-MATERIAL")


def test_restore_is_unchanged_when_the_key_holds_the_backup(fake_transit, fake_vault, vault_args, tmp_path):
    _key, path = write_backup(tmp_path, fake_transit)
    result = run(vault_args, state="restored", backup_file=str(path))
    assert result["changed"] is False and fake_vault.writes() == []


def test_restore_over_a_changed_key_needs_force(fake_transit, fake_vault, vault_args, tmp_path):
    key, path = write_backup(tmp_path, fake_transit)
    key["min_decryption_version"] = 3
    result = run(vault_args, state="restored", backup_file=str(path))
    assert result["failed"] and "restoring the backup over it needs force: true" in result["msg"]
    assert fake_vault.writes() == []


def test_restore_of_an_older_backup_needs_allow_older_backup(fake_transit, fake_vault, vault_args, tmp_path):
    key, path = write_backup(tmp_path, fake_transit)
    key["latest_version"] = 5
    result = run(vault_args, state="restored", backup_file=str(path), force=True)
    assert result["failed"] and "deletes versions 4-5" in result["msg"] and "allow_older_backup" in result["msg"]
    assert fake_vault.writes() == []


def test_check_mode_restore_sends_nothing(fake_transit, fake_vault, vault_args, tmp_path):
    _key, path = write_backup(tmp_path, fake_transit)
    del fake_transit.keys["kasten"]
    result = run(vault_args, check_mode=True, diff=True, state="restored", backup_file=str(path))
    assert result["changed"] is True and result["key"]["latest_version"] == 3
    assert result["diff"]["before"] == {} and fake_vault.writes() == []


def test_restored_needs_backup_file(fake_transit, fake_vault, vault_args):
    result = run(vault_args, state="restored")
    assert result["failed"] and "state is restored but all of the following are missing: backup_file" in result["msg"]


def test_a_file_that_is_not_a_backup_is_refused(fake_transit, fake_vault, vault_args, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a backup")
    result = run(vault_args, state="restored", backup_file=str(path))
    assert result["failed"] and "is not a transit key backup" in result["msg"] and ".gpg" in result["msg"]
    assert fake_vault.writes() == []


def test_a_backup_of_a_key_that_forbids_backups_explains_the_flags(fake_transit, fake_vault, vault_args, tmp_path):
    # Backed up flags on the key, but Vault refuses: the 500 is explained, not retried, and nothing is trimmed.
    fake_transit.add_key("kasten", versions=3, exportable=True, allow_plaintext_backup=True, min_decryption_version=2,
                         min_encryption_version=2)
    fake_vault.on("GET", "transit/backup/kasten", (500, {"errors": ["plaintext backup is disallowed on the policy"]}))
    result = run(vault_args, min_available_version=2, backup_path=str(tmp_path) + "/")
    assert result["failed"] and "the key must be exportable and allow plaintext backups" in result["msg"]
    assert fake_vault.sent("POST", KEY + "/trim") == [] and fake_vault.sleeps == []


def test_a_missing_mount_says_how_to_enable_it(fake_vault, vault_args):
    fake_vault.on("GET", "kv/keys/kasten", (404, {"errors": ['no handler for route "kv/keys/kasten". route entry '
                                                             'not found.']}))
    result = run(vault_args, mount="kv")
    assert result["failed"] and "nothing is mounted at 'kv/'" in result["msg"] and "vault_mount" in result["msg"]


def test_a_sealed_vault_is_explained_and_hides_the_token(fake_vault, vault_args):
    fake_vault.on("GET", KEY, (503, {"errors": ["Vault is sealed"]}))
    result = run(vault_args, rotate=True)
    assert result["failed"] and "is sealed" in result["msg"] and "vault_unseal" in result["msg"]
    assert_not_in_result(result, vault_args["token"])


def test_the_backup_blob_format_of_the_fake_matches_what_the_module_reads(fake_transit):
    # Guards the fake itself: a blob the module could not read would make the backup tests meaningless.
    backupable(fake_transit)
    policy = json.loads(base64.b64decode(fake_transit.backup_blob("kasten")))["policy"]
    assert policy["latest_version"] == 3 and policy["name"] == "kasten"
