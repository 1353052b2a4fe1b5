"""vault_transit_keys against a fake transit engine: every key planned before anything is sent, all or nothing."""

import os
import threading

import pytest
from _module_runner import assert_not_in_result, module_kwargs, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_transit_keys


def run(vault_args, keys, check_mode=False, diff=False, **options):
    return run_module(vault_transit_keys.main, dict(vault_args, keys=keys, **options), check_mode=check_mode,
                      diff=diff)


def test_argument_spec():
    kwargs = module_kwargs(vault_transit_keys.main)
    spec = kwargs["argument_spec"]
    assert spec["keys"]["required"] is True and spec["keys"]["options"]["name"]["required"] is True
    assert spec["workers"]["default"] == 8 and spec["mount"]["default"] == "transit"
    assert spec["keys"]["options"]["oldest_version_in_use"]["aliases"] == ["in_use_min_version"]
    assert spec["keys"]["options"]["allow_data_loss"]["aliases"] == ["irreversible_ok"]
    assert ("backup_gpg_recipient", "backup_gpg_key_file") in kwargs["mutually_exclusive"]
    assert no_log_options(spec) == {"token", "secret_id"}


def test_rotates_only_the_keys_that_are_due(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", age_days=[100])
    fake_transit.add_key("payroll", age_days=[5])
    result = run(vault_args, [{"name": "kasten", "rotate_older_than": "90d"},
                              {"name": "payroll", "rotate_older_than": "90d"}], diff=True)
    assert result["changed"] is True
    kasten, payroll = result["keys"]
    assert kasten["changed"] is True and kasten["actions"] == ["rotated to version 2"]
    assert kasten["before"]["latest_version"] == 1 and kasten["key"]["latest_version"] == 2
    assert payroll["changed"] is False and payroll["actions"] == []
    assert fake_vault.writes() == [("POST", "transit/keys/kasten/rotate", {})]
    # The diff lists only what changed, by mount/name.
    assert list(result["diff"]["after"]) == ["transit/kasten"]


def test_a_second_run_is_unchanged(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", age_days=[100])
    keys = [{"name": "kasten", "rotate_older_than": "90d"}]
    assert run(vault_args, keys)["changed"] is True
    again = run(vault_args, keys)
    assert again["changed"] is False and len(fake_vault.sent("POST", "transit/keys/kasten/rotate")) == 1


def test_one_refusal_changes_nothing_and_names_every_refusal(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3)
    fake_transit.add_key("payroll", versions=3)
    result = run(vault_args, [{"name": "kasten", "rotate": True},
                              {"name": "payroll", "min_decryption_version": 3},
                              {"name": "ghost"}])
    assert result["failed"] and result["msg"].startswith("nothing was changed: ")
    assert "key payroll: refusing to raise min_decryption_version from 1 to 3" in result["msg"]
    assert "transit key ghost does not exist in mount transit" in result["msg"]
    assert fake_vault.writes() == []  # kasten's rotate was planned but not sent


def test_rotate_and_rotate_older_than_on_one_key_are_refused(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten")
    result = run(vault_args, [{"name": "kasten", "rotate": True, "rotate_older_than": "90d"}])
    assert result["failed"] and "key kasten: rotate and rotate_older_than are mutually exclusive" in result["msg"]
    assert fake_vault.writes() == []


def test_per_key_mounts(fake_transit, fake_vault, vault_args):
    hr = type(fake_transit)(fake_vault, "transit-hr")
    hr.add_key("payroll", versions=2)
    result = run(vault_args, [{"name": "payroll", "mount": "transit-hr", "min_decryption_version": 2,
                               "oldest_version_in_use": 2}])
    assert result["keys"][0]["mount"] == "transit-hr" and result["keys"][0]["changed"] is True
    assert fake_vault.writes() == [("POST", "transit-hr/keys/payroll/config", {"min_decryption_version": 2})]


def test_check_mode_predicts_and_sends_nothing(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=2)
    result = run(vault_args, [{"name": "kasten", "rotate": True}], check_mode=True)
    assert result["changed"] is True and result["keys"][0]["key"]["latest_version"] == 3
    assert fake_vault.writes() == [] and fake_transit.keys["kasten"]["latest_version"] == 2


def test_trims_back_up_each_key_into_the_directory(fake_transit, fake_vault, vault_args, tmp_path):
    for name in ("kasten", "payroll"):
        fake_transit.add_key(name, versions=3, exportable=True, allow_plaintext_backup=True,
                             min_decryption_version=2, min_encryption_version=2)
    blobs = [fake_transit.backup_blob(n) for n in ("kasten", "payroll")]
    backups = tmp_path / "backups"  # no trailing slash: the module treats it as a directory anyway
    backups.mkdir()  # a missing one races between the keys' threads: see the xfail test below
    result = run(vault_args, [{"name": "kasten", "min_available_version": 2},
                              {"name": "payroll", "min_available_version": 2}], backup_path=str(backups))
    assert result["changed"] is True
    assert sorted(os.path.dirname(e["backup"]["path"]) for e in result["keys"]) == [str(backups)] * 2
    assert all(e["irreversible"] is False for e in result["keys"])
    assert len(os.listdir(backups)) == 2 and len(fake_vault.sent(path="transit/keys/kasten/trim")) == 1
    assert_not_in_result(result, "KEY-MATERIAL", *blobs)


def test_concurrent_backups_create_the_missing_directory_once(fake_transit, vault_args, tmp_path, monkeypatch):
    for name in ("kasten", "payroll"):
        fake_transit.add_key(name, versions=3, exportable=True, allow_plaintext_backup=True,
                             min_decryption_version=2, min_encryption_version=2)
    backups = str(tmp_path / "backups")
    # Both keys' threads reach makedirs before either creates the directory - what happens by chance in about
    # half of the runs with two keys - made certain with a barrier in front of the real makedirs.
    both_checked = threading.Barrier(2, timeout=2)
    real_makedirs = os.makedirs

    def makedirs(path, *args, **kwargs):
        if os.path.abspath(path) == backups:
            try:
                both_checked.wait()
            except threading.BrokenBarrierError:
                pass  # a fix that serialises the creation keeps the second thread out: no race left to show
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)
    result = run(vault_args, [{"name": "kasten", "min_available_version": 2},
                              {"name": "payroll", "min_available_version": 2}], backup_path=backups, workers=2)
    assert not result.get("failed"), result.get("msg")
    assert len(os.listdir(backups)) == 2


def test_a_trim_without_backup_or_acknowledgement_is_refused(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3, min_decryption_version=2, min_encryption_version=2)
    result = run(vault_args, [{"name": "kasten", "min_available_version": 2}])
    assert result["failed"] and "nothing was changed" in result["msg"] and "allow_data_loss" in result["msg"]
    acknowledged = run(vault_args, [{"name": "kasten", "min_available_version": 2, "allow_data_loss": True}])
    assert acknowledged["changed"] is True and acknowledged["keys"][0]["irreversible"] is True
    assert fake_vault.writes() == [("POST", "transit/keys/kasten/trim", {"min_available_version": 2})]


def test_the_deprecated_irreversible_ok_still_acknowledges(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3, min_decryption_version=2, min_encryption_version=2)
    result = run(vault_args, [{"name": "kasten", "min_available_version": 2, "irreversible_ok": True}])
    assert result["changed"] is True and result["keys"][0]["irreversible"] is True


@pytest.mark.parametrize("workers", [0, 33])
def test_workers_out_of_range(fake_transit, fake_vault, vault_args, workers):
    result = run(vault_args, [{"name": "kasten"}], workers=workers)
    assert result["failed"] and result["msg"] == "workers must be between 1 and 32 (got %d)" % workers
    assert fake_vault.requests == []


@pytest.mark.parametrize("keys, text", [
    ([5], "keys[0] must be a dictionary with the options"),
    ([{"rotate": True}], "missing required arguments: name found in keys"),
    ([{"name": "kasten", "spin": True}], "spin"),
])
def test_malformed_key_entries_fail_cleanly(fake_transit, fake_vault, vault_args, keys, text):
    result = run(vault_args, keys)
    assert result["failed"] and text in result["msg"] and fake_vault.requests == []


def test_a_key_that_is_only_named_is_read(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=2)
    result = run(vault_args, [{"name": "kasten"}])
    assert result["changed"] is False and result["keys"][0]["key"]["latest_version"] == 2
    assert fake_vault.writes() == []
