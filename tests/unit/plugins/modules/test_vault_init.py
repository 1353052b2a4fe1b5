"""vault_init against a fake Vault: initialise once, keys only in the 0600 file (never in the result)."""

import json
import os
import stat

import pytest
from _module_runner import assert_not_in_result, module_kwargs, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_init

UNSEAL_KEYS_B64 = ["a2V5LW9uZQ==", "a2V5LXR3bw==", "a2V5LXRocmVl"]
UNSEAL_KEYS_HEX = ["6b65792d6f6e65", "6b65792d74776f", "6b65792d7468726565"]
ROOT_TOKEN = "s.root-token-never-in-a-result"
INIT_ANSWER = {"keys": UNSEAL_KEYS_HEX, "keys_base64": UNSEAL_KEYS_B64, "root_token": ROOT_TOKEN}


@pytest.fixture
def uninitialised(fake_vault):
    fake_vault.on("GET", "sys/init", {"initialized": False})
    fake_vault.on("PUT", "sys/init", INIT_ANSWER)
    return fake_vault


def url_only():
    # sys/init is unauthenticated: no token is needed at all.
    return {"url": "http://vault.test:8200", "retries": 0}


def test_argument_spec():
    kwargs = module_kwargs(vault_init.main)
    spec = kwargs["argument_spec"]
    assert spec["secret_shares"]["default"] == 5 and spec["secret_threshold"]["default"] == 3
    assert spec["overwrite_keys_file"]["default"] is False
    assert ("recovery_shares", "recovery_threshold") in kwargs["required_together"]
    # The module's own options carry no secret; the connection's token and secret_id are masked.
    assert no_log_options(module_spec(vault_init.main)) == {"token", "secret_id"}


def test_initialised_server_is_left_alone(fake_vault, tmp_path):
    fake_vault.on("GET", "sys/init", {"initialized": True})
    keys_file = tmp_path / "init.json"
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(keys_file)))
    assert result["changed"] is False and result["initialized"] is True and "keys_file" not in result
    assert fake_vault.writes() == [] and not keys_file.exists()


def test_init_writes_the_keys_file_0600_and_keeps_keys_out_of_the_result(uninitialised, tmp_path):
    keys_file = tmp_path / "secrets" / "init.json"
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(keys_file), secret_shares=3,
                                              secret_threshold=2))
    assert result["changed"] is True and result["initialized"] is True
    assert result["keys_file"] == str(keys_file)
    assert uninitialised.writes() == [("PUT", "sys/init", {"secret_shares": 3, "secret_threshold": 2})]
    document = json.loads(keys_file.read_text())
    assert document["unseal_keys_b64"] == UNSEAL_KEYS_B64 and document["root_token"] == ROOT_TOKEN
    assert document["unseal_shares"] == 3 and document["unseal_threshold"] == 2
    assert stat.S_IMODE(os.stat(keys_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys_file.parent).st_mode) == 0o700
    assert_not_in_result(result, ROOT_TOKEN, *(UNSEAL_KEYS_B64 + UNSEAL_KEYS_HEX))


def test_recovery_keys_for_auto_unseal(fake_vault, tmp_path):
    fake_vault.on("GET", "sys/init", {"initialized": False})
    fake_vault.on("PUT", "sys/init", {"recovery_keys_base64": ["cmVj"], "recovery_keys": ["726563"],
                                      "root_token": ROOT_TOKEN})
    keys_file = tmp_path / "init.json"
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(keys_file), recovery_shares=1,
                                              recovery_threshold=1))
    assert result["changed"] is True
    assert fake_vault.writes() == [("PUT", "sys/init", {"recovery_shares": 1, "recovery_threshold": 1})]
    document = json.loads(keys_file.read_text())
    assert document["recovery_keys_b64"] == ["cmVj"] and document["unseal_shares"] == 0
    assert_not_in_result(result, ROOT_TOKEN, "cmVj")


def test_recovery_shares_need_a_threshold(fake_vault, tmp_path):
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(tmp_path / "k"), recovery_shares=3))
    assert result["failed"] and "recovery_shares" in result["msg"] and "recovery_threshold" in result["msg"]
    assert fake_vault.requests == []


@pytest.mark.parametrize("options, text", [
    ({"secret_shares": 3, "secret_threshold": 4}, "secret_threshold must be between 1 and secret_shares (3); got 4"),
    ({"secret_threshold": 0}, "secret_threshold must be between 1 and secret_shares (5); got 0"),
    ({"recovery_shares": 1, "recovery_threshold": 2}, "recovery_threshold must be between 1 and recovery_shares"),
    ({"secret_shares": 2, "secret_threshold": 1, "pgp_keys": ["a"]}, "1 given for 2 shares; give one per share"),
])
def test_impossible_shares_fail_before_init(uninitialised, tmp_path, options, text):
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(tmp_path / "k"), **options))
    assert result["failed"] and text in result["msg"]
    assert uninitialised.writes() == [] and not (tmp_path / "k").exists()


def test_nowhere_to_keep_the_keys_is_refused(uninitialised):
    result = run_module(vault_init.main, url_only())
    assert result["failed"] and "nowhere to keep the unseal keys" in result["msg"] and "keys_file" in result["msg"]
    assert uninitialised.writes() == []


def test_an_existing_keys_file_is_not_overwritten(uninitialised, tmp_path):
    keys_file = tmp_path / "init.json"
    keys_file.write_text("another server's keys")
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(keys_file)))
    assert result["failed"] and "already exists" in result["msg"] and "overwrite_keys_file" in result["msg"]
    assert uninitialised.writes() == [] and keys_file.read_text() == "another server's keys"


def test_overwrite_keys_file_replaces_it(uninitialised, tmp_path):
    keys_file = tmp_path / "init.json"
    keys_file.write_text("stale")
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(keys_file), overwrite_keys_file=True))
    assert result["changed"] is True and json.loads(keys_file.read_text())["root_token"] == ROOT_TOKEN


def test_unwritable_keys_file_fails_before_init(uninitialised, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(blocker / "init.json")))
    assert result["failed"] and "cannot prepare keys_file" in result["msg"] and "not initialised" in result["msg"]
    assert uninitialised.writes() == []


def test_a_refused_init_leaves_no_file_behind(fake_vault, tmp_path):
    fake_vault.on("GET", "sys/init", {"initialized": False})
    fake_vault.on("PUT", "sys/init", (400, {"errors": ["invalid seal configuration"]}))
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(tmp_path / "init.json")))
    assert result["failed"] and "invalid seal configuration" in result["msg"]
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary twin


def test_check_mode_predicts_and_sends_nothing(uninitialised, tmp_path):
    keys_file = tmp_path / "init.json"
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(keys_file)), check_mode=True)
    assert result["changed"] is True and result["initialized"] is True
    assert uninitialised.writes() == [] and not keys_file.exists()


def test_check_mode_still_refuses_impossible_shares(uninitialised, tmp_path):
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(tmp_path / "k"), secret_threshold=9),
                        check_mode=True)
    assert result["failed"] and "secret_threshold" in result["msg"]


def test_check_mode_predicts_the_existing_keys_file_refusal(uninitialised, tmp_path):
    keys_file = tmp_path / "init.json"
    keys_file.write_text("another server's keys")
    result = run_module(vault_init.main, dict(url_only(), keys_file=str(keys_file)), check_mode=True)
    assert result.get("failed") and "already exists" in result["msg"]


def test_pgp_keys_return_only_the_encrypted_shares(uninitialised):
    pgp = ["cGdwLWE=", "cGdwLWI=", "cGdwLWM="]
    uninitialised.on("PUT", "sys/init", {"keys": ["encrypted-hex"] * 3,
                                         "keys_base64": ["ZW5jLTE=", "ZW5jLTI=", "ZW5jLTM="],
                                         "root_token": "d3JhcHBlZC1yb290"})
    result = run_module(vault_init.main, dict(url_only(), secret_shares=3, secret_threshold=2, pgp_keys=pgp,
                                              root_token_pgp_key="cGdwLXJvb3Q="))
    assert result["changed"] is True and "keys_file" not in result
    assert result["keys_pgp"] == ["ZW5jLTE=", "ZW5jLTI=", "ZW5jLTM="]
    assert result["root_token_pgp"] == "d3JhcHBlZC1yb290"
    assert uninitialised.writes()[0][2] == {"secret_shares": 3, "secret_threshold": 2, "pgp_keys": pgp,
                                            "root_token_pgp_key": "cGdwLXJvb3Q="}


def test_bad_url_is_explained(fake_vault):
    result = run_module(vault_init.main, {"url": "vault.test:8200", "keys_file": "/nonexistent/k"})
    assert result["failed"] and "must start with http:// or https://" in result["msg"]
    assert fake_vault.requests == []
