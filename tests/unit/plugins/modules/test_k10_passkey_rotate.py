"""k10_passkey_rotate against an in-memory API server with K10 played by a hook: new passkey in use, old ones gone."""

import pytest
from _fake_k8s import (K8S_ARGS, TOKEN, deprecated_names, fake_k8s, isolated_warnings,  # noqa: F401  # pylint: disable=unused-import
                       k10_controller, passkey_path, seed_passkey)
from _module_runner import assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils import _k10
from ansible_collections.keyops.lifecycle.plugins.modules import k10_passkey_rotate

ARGS = dict(K8S_ARGS, passkey_prefix="vault-k10", name="k10", key_version=4)


@pytest.fixture
def k10(fake_k8s):
    """A 7.x K10 using vault-k10-v3, with an older passkey of the same key and one of another key."""
    cluster = fake_k8s.cluster()
    cluster.hooks.append(k10_controller(shape=7))
    seed_passkey(cluster, "vault-k10-v3", {"inuse": True}, version=3)
    seed_passkey(cluster, "vault-k10-v2", {"inuse": False}, version=2, path="/transit/")
    seed_passkey(cluster, "other-key", {"inuse": False}, key="elsewhere", version=1)
    return cluster


def names(cluster):
    return sorted(o["metadata"]["name"] for o in cluster.objects.values())


def test_argument_spec():
    spec = module_spec(k10_passkey_rotate.main)
    assert [n for n in ("passkey_prefix", "name", "key_version") if spec[n].get("required")] == [
        "passkey_prefix", "name", "key_version"]
    assert spec["mount"]["default"] == "transit" and spec["wait_timeout"]["default"] == 120
    assert no_log_options(spec) == {"api_key"}


def test_rotation_moves_k10_to_the_new_version_and_removes_the_older_passkeys(k10):
    result = run_module(k10_passkey_rotate.main, dict(ARGS))
    assert result["changed"] is True and result["passkey"] == "vault-k10-v4"
    assert result["actions"] == ["create passkey vault-k10-v4", "delete passkey vault-k10-v2",
                                 "delete passkey vault-k10-v3"]
    assert result["census_before"] == {"2": 1, "3": 1} and result["census_after"] == {"4": 1}
    assert result["oldest_version_in_use"] == 4 and result["rewrapped"] == 1
    assert names(k10) == ["other-key", "vault-k10-v4"]  # another key's passkey is not touched
    new = k10.get(passkey_path("vault-k10-v4"))
    assert new["status"]["inuse"] is True and new["spec"]["usenow"] is True
    assert new["metadata"]["annotations"][_k10.VERSION_ANNOTATION] == "4"
    assert_not_in_result(result, TOKEN)


def test_a_second_run_changes_nothing(k10):
    run_module(k10_passkey_rotate.main, dict(ARGS))
    writes = len(k10.writes())
    result = run_module(k10_passkey_rotate.main, dict(ARGS))
    assert result["changed"] is False and result["actions"] == [] and result["rewrapped"] == 0
    assert result["census_before"] == result["census_after"] == {"4": 1}
    assert len(k10.writes()) == writes


def test_check_mode_writes_nothing_and_reports_the_plan(k10):
    result = run_module(k10_passkey_rotate.main, dict(ARGS), check_mode=True)
    assert k10.writes() == [] and "vault-k10-v4" not in names(k10)
    assert result["changed"] is True and result["actions"][0] == "create passkey vault-k10-v4"
    assert result["census_before"] == {"2": 1, "3": 1}


def test_check_mode_census_after_is_the_census_before_as_documented(k10):
    result = run_module(k10_passkey_rotate.main, dict(ARGS), check_mode=True)
    assert result["census_after"] == result["census_before"] == {"2": 1, "3": 1}
    assert result["oldest_version_in_use"] == 2


def test_k10_refusing_the_new_passkey_keeps_the_old_ones(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.hooks.append(k10_controller(shape=8, error="vault: permission denied on transit/encrypt/k10"))
    seed_passkey(cluster, "vault-k10-v3", {"valid": True}, version=3)
    result = run_module(k10_passkey_rotate.main, dict(ARGS))
    assert result["failed"] is True
    assert result["msg"] == "K10 could not use passkey vault-k10-v4: vault: permission denied on transit/encrypt/k10"
    assert "vault-k10-v3" in names(cluster)
    assert [c[0] for c in cluster.writes()] == ["POST"]


def test_the_deprecated_option_names_still_work(k10, isolated_warnings):
    args = dict(ARGS, vault_transit_key_name="k10", vault_transit_path="transit/", timeout=30)
    del args["name"]
    result = run_module(k10_passkey_rotate.main, args)
    assert result["changed"] is True and result["census_after"] == {"4": 1}
    assert deprecated_names(result) == ["timeout", "vault_transit_key_name", "vault_transit_path"]


def test_another_mount_is_another_key(k10):
    result = run_module(k10_passkey_rotate.main, dict(ARGS, mount="transit-dr"))
    assert result["census_before"] == {} and result["actions"] == ["create passkey vault-k10-v4"]
    assert "vault-k10-v3" in names(k10) and "vault-k10-v2" in names(k10)
    assert k10.get(passkey_path("vault-k10-v4"))["spec"]["vaulttransitpath"] == "transit-dr"


def test_a_required_option_missing_fails_cleanly(fake_k8s):
    args = dict(ARGS)
    del args["key_version"]
    result = run_module(k10_passkey_rotate.main, args)
    assert result["failed"] is True and result["msg"] == "missing required arguments: key_version"
    assert fake_k8s.cluster().calls == []


def test_a_non_integer_version_fails_cleanly(fake_k8s):
    result = run_module(k10_passkey_rotate.main, dict(ARGS, key_version="latest"))
    assert result["failed"] is True and "key_version" in result["msg"] and "int" in result["msg"]
