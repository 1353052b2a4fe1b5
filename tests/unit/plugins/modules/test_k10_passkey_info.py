"""k10_passkey_info against an in-memory API server: both K10 status shapes, one passkey or all, read-only."""

import pytest
from _fake_k8s import K8S_ARGS, PASSKEYS, TOKEN, fake_k8s, passkey_path, seed_passkey  # noqa: F401  # pylint: disable=unused-import
from _module_runner import assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import k10_passkey_info


def test_argument_spec():
    spec = module_spec(k10_passkey_info.main)
    assert spec["name"] == {"type": "str"}
    assert no_log_options(spec) == {"api_key"}


def test_7x_shape_names_the_passkey_in_use(fake_k8s):
    cluster = fake_k8s.cluster()
    seed_passkey(cluster, "vault-k10-v2", {"inuse": True}, version=2)
    seed_passkey(cluster, "vault-k10-v1", {"inuse": False}, version=1)
    seed_passkey(cluster, "broken", {"inuse": False, "error": "vault: denied"})
    result = run_module(k10_passkey_info.main, dict(K8S_ARGS))
    assert result["changed"] is False and result["in_use"] == "vault-k10-v2"
    assert result["valid"] == ["vault-k10-v1", "vault-k10-v2"]
    by_name = dict((p["name"], p) for p in result["passkeys"])
    assert by_name["vault-k10-v2"]["shape"] == 7 and by_name["vault-k10-v2"]["transit_key_version"] == 2
    assert by_name["broken"]["error"] == "vault: denied" and by_name["broken"]["valid"] is False
    assert by_name["vault-k10-v1"]["vault_transit_key_name"] == "k10"
    assert by_name["vault-k10-v1"]["vault_transit_path"] == "transit"
    assert cluster.sent() == [("GET", PASSKEYS, None)]
    assert_not_in_result(result, TOKEN)


def test_8x_shape_has_no_single_passkey_in_use(fake_k8s):
    cluster = fake_k8s.cluster()
    seed_passkey(cluster, "a", {"valid": True, "keytype": "vault"})
    seed_passkey(cluster, "b", {"valid": True}, spec={"passphrase": {"name": "s", "namespace": "kasten-io"}})
    seed_passkey(cluster, "new")  # K10 has not written a status yet
    result = run_module(k10_passkey_info.main, dict(K8S_ARGS))
    assert result["in_use"] is None and result["valid"] == ["a", "b"]
    by_name = dict((p["name"], p) for p in result["passkeys"])
    assert by_name["b"]["keytype"] == "passphrase" and by_name["b"]["shape"] == 8
    assert by_name["new"]["shape"] is None and by_name["new"]["valid"] is False


def test_one_passkey_by_name_and_a_missing_one(fake_k8s):
    cluster = fake_k8s.cluster()
    seed_passkey(cluster, "a", {"valid": True})
    seed_passkey(cluster, "b", {"valid": True})
    result = run_module(k10_passkey_info.main, dict(K8S_ARGS, name="b"))
    assert [p["name"] for p in result["passkeys"]] == ["b"]
    assert cluster.sent() == [("GET", passkey_path("b"), None)]
    missing = run_module(k10_passkey_info.main, dict(K8S_ARGS, name="nope"))
    assert not missing.get("failed") and missing["changed"] is False
    assert missing["passkeys"] == [] and missing["in_use"] is None and missing["valid"] == []


@pytest.mark.parametrize("check_mode", [False, True])
def test_read_only_in_any_mode(fake_k8s, check_mode):
    cluster = fake_k8s.cluster()
    seed_passkey(cluster, "a", {"inuse": True})
    result = run_module(k10_passkey_info.main, dict(K8S_ARGS), check_mode=check_mode)
    assert result["changed"] is False and result["in_use"] == "a" and cluster.writes() == []


def test_forbidden_is_explained(fake_k8s):
    fake_k8s.cluster().fail("GET", PASSKEYS, 403, "Forbidden", "passkeys is forbidden: User cannot list")
    result = run_module(k10_passkey_info.main, dict(K8S_ARGS))
    assert result["failed"] is True
    assert result["msg"].startswith("not allowed to read passkeys.vault.kio.kasten.io (403 Forbidden)")


def test_expired_token_is_explained_without_the_token(fake_k8s):
    fake_k8s.cluster().fail("GET", PASSKEYS, 401, "Unauthorized", "Unauthorized")
    result = run_module(k10_passkey_info.main, dict(K8S_ARGS))
    assert result["failed"] is True and "rejected the credentials (401 Unauthorized)" in result["msg"]
    assert_not_in_result(result, TOKEN)
