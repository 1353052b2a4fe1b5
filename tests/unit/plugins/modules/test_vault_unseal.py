"""vault_unseal against a fake Vault that counts key shares like a Shamir seal does."""

import json

import pytest
from _module_runner import MASK, assert_not_in_result, module_kwargs, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_unseal

KEYS = ["dW5zZWFsLW9uZQ==", "dW5zZWFsLXR3bw==", "dW5zZWFsLXRocmVl"]
URL = {"url": "http://vault.test:8200", "retries": 0}  # sys/unseal is unauthenticated: no token


class ShamirSeal:
    """sys/seal-status and sys/unseal of a sealed node: unsealed once ``threshold`` good shares arrived."""

    def __init__(self, threshold=2, good=tuple(KEYS), sealed=True, initialized=True):
        self.threshold, self.good, self.sealed, self.initialized = threshold, set(good), sealed, initialized
        self.progress = 0

    def status(self, _body=None):
        return {"sealed": self.sealed, "initialized": self.initialized, "t": self.threshold, "n": 3,
                "progress": self.progress, "type": "shamir", "version": "2.1.0"}

    def unseal(self, body):
        if body["key"] not in self.good:
            self.progress = 0  # Vault discards the round
            return 400, {"errors": ["failed to decrypt keys from storage: cipher: message authentication failed"]}
        self.progress += 1
        if self.progress >= self.threshold:
            self.sealed, self.progress = False, 0
        return self.status()

    def install(self, fake_vault):
        fake_vault.on("GET", "sys/seal-status", self.status).on("PUT", "sys/unseal", self.unseal)
        return self


def test_argument_spec():
    kwargs = module_kwargs(vault_unseal.main)
    assert ("keys_file", "keys") in kwargs["mutually_exclusive"]
    assert ("keys_file", "keys") in kwargs["required_one_of"]
    assert no_log_options(kwargs["argument_spec"]) == {"token", "secret_id", "keys"}


def test_unseals_with_only_as_many_keys_as_needed(fake_vault):
    seal = ShamirSeal(threshold=2).install(fake_vault)
    result = run_module(vault_unseal.main, dict(URL, keys=KEYS))
    assert result["changed"] is True and result["sealed"] is False and not seal.sealed
    assert result["keys_used"] == 2 and result["threshold"] == 2
    assert [body["key"] for _m, _p, body in fake_vault.sent("PUT", "sys/unseal")] == KEYS[:2]
    # The keys are masked in the invocation and appear nowhere else.
    assert result["invocation"]["module_args"]["keys"] == [MASK] * 3
    assert_not_in_result(result, *KEYS)


def test_an_unsealed_node_is_left_alone(fake_vault):
    ShamirSeal(sealed=False).install(fake_vault)
    result = run_module(vault_unseal.main, dict(URL, keys=KEYS))
    assert result["changed"] is False and result["sealed"] is False and result["keys_used"] == 0
    assert fake_vault.writes() == []


def test_check_mode_predicts_unsealed_and_sends_no_key(fake_vault):
    seal = ShamirSeal().install(fake_vault)
    result = run_module(vault_unseal.main, dict(URL, keys=KEYS), check_mode=True)
    assert result["changed"] is True and result["sealed"] is False and result["keys_used"] == 0
    assert fake_vault.writes() == [] and seal.sealed


def test_keys_from_the_keys_file(fake_vault, tmp_path):
    ShamirSeal(threshold=3).install(fake_vault)
    keys_file = tmp_path / "init.json"
    keys_file.write_text(json.dumps({"unseal_keys_b64": KEYS, "root_token": "s.root"}))
    result = run_module(vault_unseal.main, dict(URL, keys_file=str(keys_file)))
    assert result["changed"] is True and result["sealed"] is False and result["keys_used"] == 3
    assert_not_in_result(result, "s.root", *KEYS)


def test_wrong_keys_are_tried_in_one_clean_round_then_refused(fake_vault):
    wrong = ["d3Jvbmc=", "d3Jvbmcy"]
    seal = ShamirSeal(threshold=2).install(fake_vault)
    result = run_module(vault_unseal.main, dict(URL, keys=wrong))
    assert result["failed"] and "the unseal keys do not unseal http://vault.test:8200" in result["msg"]
    assert "another server" in result["msg"]
    # First key of each round refused (Vault resets the round): two rounds, one key each, never a reset call.
    assert [body["key"] for _m, _p, body in fake_vault.sent("PUT", "sys/unseal")] == [wrong[0], wrong[0]]
    assert fake_vault.sent("PUT", "sys/unseal/reset") == [] and seal.sealed
    assert_not_in_result(result, *wrong)


def test_too_few_keys_say_how_many_are_needed(fake_vault):
    ShamirSeal(threshold=3).install(fake_vault)
    result = run_module(vault_unseal.main, dict(URL, keys=KEYS[:2]))
    assert result["failed"] and result["msg"] == ("http://vault.test:8200 is still sealed after 2 key(s): "
                                                  "threshold is 3; give more keys")
    assert_not_in_result(result, *KEYS)


def test_an_uninitialised_node_points_at_vault_init(fake_vault):
    ShamirSeal(initialized=False).install(fake_vault)
    result = run_module(vault_unseal.main, dict(URL, keys=KEYS))
    assert result["failed"] and "is not initialised: run keyops.lifecycle.vault_init first" in result["msg"]
    assert fake_vault.writes() == []


def test_a_refused_key_is_named_by_position_not_value(fake_vault):
    ShamirSeal().install(fake_vault)
    fake_vault.on("PUT", "sys/unseal", (400, {"errors": ["'key' must be a valid hex or base64 string"]}))
    result = run_module(vault_unseal.main, dict(URL, keys=["not base64!"]))
    assert result["failed"] and result["msg"].startswith("unseal key #1 was refused by http://vault.test:8200")
    assert_not_in_result(result, "not base64!")


def test_keys_and_keys_file_are_mutually_exclusive(fake_vault, tmp_path):
    result = run_module(vault_unseal.main, dict(URL, keys=KEYS, keys_file=str(tmp_path / "k")))
    assert result["failed"] and "mutually exclusive" in result["msg"] and fake_vault.requests == []
    assert_not_in_result(result, *KEYS)


def test_one_of_keys_or_keys_file_is_required(fake_vault):
    result = run_module(vault_unseal.main, URL)
    assert result["failed"] and "keys_file" in result["msg"] and "keys" in result["msg"]
    assert fake_vault.requests == []


def test_an_empty_keys_list_is_explained(fake_vault):
    ShamirSeal().install(fake_vault)
    result = run_module(vault_unseal.main, dict(URL, keys=[]))
    assert result["failed"] and "no unseal keys" in result["msg"] and fake_vault.writes() == []


@pytest.mark.parametrize("content, text", [
    ("not json", "is not JSON"),
    (json.dumps({"root_token": "s.root"}), "holds no unseal keys"),
])
def test_a_bad_keys_file_is_explained(fake_vault, tmp_path, content, text):
    ShamirSeal().install(fake_vault)
    keys_file = tmp_path / "init.json"
    keys_file.write_text(content)
    result = run_module(vault_unseal.main, dict(URL, keys_file=str(keys_file)))
    assert result["failed"] and text in result["msg"] and str(keys_file) in result["msg"]
    assert_not_in_result(result, "s.root")


def test_a_missing_keys_file_is_explained(fake_vault, tmp_path):
    ShamirSeal().install(fake_vault)
    result = run_module(vault_unseal.main, dict(URL, keys_file=str(tmp_path / "absent.json")))
    assert result["failed"] and "cannot read keys_file" in result["msg"]
