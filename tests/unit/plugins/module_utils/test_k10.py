"""K10 decisions: passkey shapes, safe deletes, spec changes, migration-string patches, failure cases."""

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _k10
from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import K8sModuleError


def passkey(name, status=None, spec=None, version=None):
    meta = {"name": name}
    if version is not None:
        meta["annotations"] = {_k10.VERSION_ANNOTATION: str(version)}
    return {"metadata": meta, "spec": spec or {"vaulttransitkeyname": "k10", "vaulttransitpath": "transit"},
            "status": status}


def test_spec_from_options():
    assert _k10.passkey_spec({"vault_transit_key_name": "k", "vault_transit_path": "/transit/", "usenow": True}) == {
        "vaulttransitkeyname": "k", "vaulttransitpath": "/transit/", "usenow": True}
    assert _k10.passkey_spec({"passphrase_secret": {"name": "s", "namespace": None}}) == {
        "passphrase": {"name": "s", "namespace": "kasten-io"}}
    with pytest.raises(K8sModuleError, match="exactly one of"):
        _k10.passkey_spec({})


def test_spec_differences_normalise_paths_and_usenow():
    current = {"vaulttransitkeyname": "k", "vaulttransitpath": "/transit", "usenow": True}
    assert _k10.spec_differences(current, {"vaulttransitkeyname": "k", "vaulttransitpath": "transit"}) == []
    assert _k10.spec_differences({"vaulttransitkeyname": "k"}, {"vaulttransitkeyname": "k", "usenow": True}) == [
        "usenow"]
    assert _k10.spec_differences(current, {"awscmkkeyid": "a"}) == ["awscmkkeyid", "vaulttransitkeyname",
                                                                    "vaulttransitpath"]


def test_shapes_validity_and_readiness():
    v7_in_use, v7_idle = passkey("a", {"inuse": True}), passkey("b", {"inuse": False})
    v7_broken = passkey("c", {"inuse": True, "error": "vault: denied"})
    v8_valid, v8_invalid = passkey("d", {"valid": True}), passkey("e", {"valid": False, "error": "x"})
    assert [_k10.shape(p) for p in (v7_in_use, v8_valid, passkey("f"))] == [7, 8, None]
    assert [_k10.is_valid(p) for p in (v7_in_use, v7_idle, v7_broken, v8_valid, v8_invalid, passkey("f"))] == [
        True, True, False, True, False, False]
    assert _k10.ready(v7_in_use, usenow=True) and not _k10.ready(v7_idle, usenow=True)
    assert _k10.ready(v7_idle, usenow=False) and _k10.ready(v8_valid, usenow=True)
    assert _k10.failed(v8_invalid) == "x" and _k10.failed(v8_valid) is None


def test_delete_refusals():
    in_use = passkey("a", {"inuse": True})
    assert "the one K10 uses now" in _k10.delete_refusal("a", [in_use, passkey("b", {"inuse": False})])
    assert _k10.delete_refusal("b", [in_use, passkey("b", {"inuse": False})]) is None
    last = [passkey("x", {"valid": True}), passkey("y", {"valid": False, "error": "e"})]
    assert "last valid passkey" in _k10.delete_refusal("x", last)
    assert _k10.delete_refusal("y", last) is None  # an invalid one can always go
    assert _k10.delete_refusal("missing", last) is None


def test_vault_passkey_census():
    passkeys = [passkey("k-v3", {"inuse": True}, version=3), passkey("k-v2", {"inuse": False}, version=2),
                passkey("broken", {"inuse": False, "error": "e"}, version=1),
                passkey("other", {"inuse": False}, spec={"vaulttransitkeyname": "other"}, version=1)]
    assert _k10.vault_passkey_census(passkeys, "k10", "/transit") == ({"3": 1, "2": 1}, 2, None)
    census, oldest, error = _k10.vault_passkey_census(passkeys + [passkey("old", {"inuse": False})], "k10", "transit")
    assert oldest is None and "record no keyops.io/transit-key-version" in error
    assert _k10.vault_passkey_census([], "k10", "transit") == ({}, None, None)


def policy(actions, rv="7"):
    return {"metadata": {"name": "p", "namespace": "kasten-io", "resourceVersion": rv}, "spec": {"actions": actions}}


def test_receive_string_reading_and_patch():
    export = policy([{"action": "backup"}, {"action": "export", "exportParameters": {"receiveString": "S"}}])
    assert _k10.export_receive_string(export) == "S"
    with pytest.raises(K8sModuleError, match="no exportParameters.receiveString yet"):
        _k10.export_receive_string(policy([{"action": "export"}]))
    with pytest.raises(K8sModuleError, match="no export action"):
        _k10.export_receive_string(policy([{"action": "import"}]))
    importing = policy([{"action": "import", "importParameters": {"receiveString": "old", "profile": {}}},
                        {"action": "restore"}])
    assert _k10.receive_string_patch(importing, "new") == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "add", "path": "/spec/actions/0/importParameters/receiveString", "value": "new"}]
    bare = policy([{"action": "restore"}, {"action": "import"}])
    assert _k10.receive_string_patch(bare, "new")[1] == {
        "op": "add", "path": "/spec/actions/1/importParameters", "value": {"receiveString": "new"}}


def test_failure_cases_and_error_chains():
    chain = {"message": "Job failed to be executed", "cause": {"message": "Could not Open data", "cause": {
        "message": "chacha20poly1305: message authentication failed"}}}
    flat = _k10.flatten_error(chain)
    assert flat == ("Job failed to be executed: Could not Open data: chacha20poly1305: message authentication "
                    "failed")
    assert _k10.classify_failure(flat, string_was_current=True) == "source_reinstalled"
    assert _k10.classify_failure(flat, string_was_current=False) == "stale_string"
    assert _k10.classify_failure(flat, string_was_current=None) == "authentication_failed"
    assert _k10.classify_failure("policy not found", True) == "other"


def test_migration_results():
    runs = [{"k10_migration_pair": {"destination": {"policy": "imp"}}, "receive_string_changed": True,
             "action": {"state": "Complete"}, "diagnosis": "stale"},
            {"k10_migration_pair": {"name": "b", "destination": {"policy": "x"}}, "failed": True, "msg": "boom",
             "case": "source_reinstalled"}]
    assert _k10.migration_results(runs) == [
        {"name": "imp", "ok": True, "receive_string_changed": True, "action": {"state": "Complete"}, "case": None,
         "msg": "stale"},
        {"name": "b", "ok": False, "receive_string_changed": False, "action": None, "case": "source_reinstalled",
         "msg": "boom"}]
