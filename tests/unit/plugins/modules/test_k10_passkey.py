"""k10_passkey against an in-memory API server with K10 played by a hook: create, wait, replace, safe delete."""

import pytest
from _fake_k8s import (K8S_ARGS, PASSKEYS, TOKEN, deprecated_names, fake_k8s, isolated_warnings,  # noqa: F401  # pylint: disable=unused-import
                       k10_controller, passkey_path, seed_passkey)
from _module_runner import assert_not_in_result, module_kwargs, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils import _k10
from ansible_collections.keyops.lifecycle.plugins.modules import k10_passkey

NAME = "vault-k10-v1"
VAULT_SPEC = {"vaulttransitkeyname": "k10", "vaulttransitpath": "transit"}


def args(**kwargs):
    return dict(K8S_ARGS, name=NAME, **kwargs)


def vault_args(**kwargs):
    return args(vault_transit_key_name="k10", **kwargs)


@pytest.fixture
def k10(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.hooks.append(k10_controller(shape=8))
    return cluster


@pytest.fixture
def k10_7(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.hooks.append(k10_controller(shape=7))
    return cluster


def names(cluster):
    return sorted(o["metadata"]["name"] for o in cluster.objects.values())


def test_argument_spec():
    kwargs = module_kwargs(k10_passkey.main)
    spec = kwargs["argument_spec"]
    assert spec["name"]["required"] is True
    assert spec["state"]["choices"] == ["present", "absent"] and spec["state"]["default"] == "present"
    assert spec["vault_transit_path"]["default"] == "transit" and spec["replace"]["default"] is False
    assert spec["wait_timeout"]["default"] == 120 and spec["wait_timeout"]["aliases"] == ["timeout"]
    assert spec["passphrase_secret"]["options"]["name"]["required"] is True
    assert ("vault_transit_key_name", "aws_cmk_key_id", "passphrase_secret") in kwargs["mutually_exclusive"]
    assert no_log_options(spec) == {"api_key"}  # a passkey spec only names keys and Secrets


def test_create_waits_until_k10_takes_it_and_records_the_version(k10):
    result = run_module(k10_passkey.main, vault_args(transit_key_version=3, usenow=True), diff=True)
    assert result["changed"] is True and result["actions"] == ["create passkey %s" % NAME]
    [(method, path, body)] = k10.writes()
    assert (method, path) == ("POST", PASSKEYS)
    assert body["spec"] == dict(VAULT_SPEC, usenow=True)
    assert body["metadata"]["annotations"] == {_k10.VERSION_ANNOTATION: "3",
                                               _k10.MANAGED_ANNOTATION: "keyops.lifecycle"}
    assert result["passkey"]["valid"] is True and result["passkey"]["shape"] == 8
    assert result["passkey"]["transit_key_version"] == 3 and result["passkey"]["keytype"] == "vault"
    assert result["diff"] == {"before": {}, "after": {"name": NAME, "spec": dict(VAULT_SPEC, usenow=True),
                                                      "transit_key_version": "3"}}
    assert_not_in_result(result, TOKEN)


def test_same_spec_changes_nothing(k10):
    seed_passkey(k10, NAME, {"valid": True})
    result = run_module(k10_passkey.main, vault_args(vault_transit_path="/transit/"))
    assert result["changed"] is False and result["actions"] == [] and k10.writes() == []
    assert result["passkey"]["name"] == NAME and result["passkey"]["valid"] is True


def test_check_mode_reports_the_create_and_writes_nothing(k10):
    result = run_module(k10_passkey.main, vault_args(), check_mode=True, diff=True)
    assert result["changed"] is True and result["actions"] == ["create passkey %s" % NAME]
    assert k10.writes() == [] and names(k10) == []
    assert result["diff"]["after"] == {"name": NAME, "spec": VAULT_SPEC}


def test_passphrase_and_aws_sources(k10):
    result = run_module(k10_passkey.main, args(passphrase_secret={"name": "k10-passphrase"}))
    assert result["changed"] is True
    assert k10.get(passkey_path(NAME))["spec"] == {"passphrase": {"name": "k10-passphrase", "namespace": "kasten-io"}}
    result = run_module(k10_passkey.main, dict(args(aws_cmk_key_id="arn:aws:kms:x"), name="aws"))
    assert k10.get(passkey_path("aws"))["spec"] == {"awscmkkeyid": "arn:aws:kms:x"}


def test_no_key_source_fails_before_any_request(k10):
    result = run_module(k10_passkey.main, args())
    assert result["failed"] is True
    assert result["msg"] == ("state=present needs exactly one of vault_transit_key_name, aws_cmk_key_id or "
                             "passphrase_secret (got none)")
    assert k10.calls == []


def test_two_key_sources_are_mutually_exclusive(k10):
    result = run_module(k10_passkey.main, vault_args(aws_cmk_key_id="arn:aws:kms:x"))
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
    assert "vault_transit_key_name" in result["msg"] and k10.calls == []


def test_malformed_passphrase_secret_is_named(k10):
    result = run_module(k10_passkey.main, args(passphrase_secret=["k10-passphrase"]))
    assert result["failed"] is True
    assert result["msg"] == ("Invalid module arguments: passphrase_secret must be a dictionary with the options "
                             "name, namespace, not list.")


def test_a_different_spec_is_refused_with_the_way_out(k10):
    seed_passkey(k10, NAME, {"valid": True}, key="old-key")
    result = run_module(k10_passkey.main, vault_args())
    assert result["failed"] is True
    assert "exists with a different spec (vaulttransitkeyname)" in result["msg"]
    assert "replace: true" in result["msg"] and k10.writes() == []


def test_replace_keeps_a_usable_passkey_at_every_step(k10_7):
    seed_passkey(k10_7, NAME, {"inuse": True}, key="old-key")
    seed_passkey(k10_7, "other", {"inuse": False}, key="elsewhere")
    stand_in = _k10.replacement_name(NAME)
    seen = []
    k10_7.hooks.append(lambda cluster, method, path, stored: seen.append(
        sorted(o["metadata"]["name"] for o in cluster.objects.values() if (o.get("status") or {}).get("inuse"))))
    result = run_module(k10_passkey.main, vault_args(replace=True))
    assert result["changed"] is True
    assert result["actions"] == ["create passkey %s" % stand_in, "delete passkey %s" % NAME,
                                 "create passkey %s" % NAME, "delete passkey %s" % stand_in]
    assert all(seen), "a moment without a passkey in use: %s" % seen
    assert names(k10_7) == sorted([NAME, "other"])
    assert k10_7.get(passkey_path(NAME))["spec"] == dict(VAULT_SPEC, usenow=True)
    assert k10_7.get(passkey_path(NAME))["status"]["inuse"] is True


def test_replace_after_a_crash_completes_with_the_stand_in(k10):
    # A run died after deleting the old passkey: only the stand-in is left.
    seed_passkey(k10, _k10.replacement_name(NAME), {"valid": True})
    result = run_module(k10_passkey.main, vault_args(replace=True))
    assert result["actions"] == ["create passkey %s" % NAME, "delete passkey %s" % _k10.replacement_name(NAME)]
    assert names(k10) == [NAME]


def test_a_passkey_k10_never_took_is_recreated(k10):
    seed_passkey(k10, NAME, {"valid": False, "error": "vault: permission denied"})
    seed_passkey(k10, "other", {"valid": True}, key="elsewhere")
    result = run_module(k10_passkey.main, vault_args())
    assert result["actions"] == ["delete passkey %s" % NAME, "create passkey %s" % NAME]
    assert result["passkey"]["valid"] is True and result["passkey"]["error"] is None


def test_k10_refusing_the_passkey_fails_with_its_reason(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.hooks.append(k10_controller(error="vault: permission denied on transit/encrypt/k10"))
    result = run_module(k10_passkey.main, vault_args())
    assert result["failed"] is True
    assert result["msg"] == "K10 could not use passkey %s: vault: permission denied on transit/encrypt/k10" % NAME
    assert result["actions"] == ["create passkey %s" % NAME] and result["passkey"]["valid"] is False


def test_a_stuck_k10_times_out_with_the_status(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.hooks.append(k10_controller(take=False))
    result = run_module(k10_passkey.main, vault_args(wait_timeout=0))
    assert result["failed"] is True
    assert result["msg"] == "passkey %s was not valid within 0s (status: none yet)" % NAME
    result = run_module(k10_passkey.main, dict(vault_args(wait_timeout=0, usenow=True), name="second"))
    assert result["msg"] == "passkey second was not in use within 0s (status: none yet)"


def test_the_deprecated_timeout_alias_still_works(fake_k8s, isolated_warnings):
    fake_k8s.cluster().hooks.append(k10_controller(take=False))
    result = run_module(k10_passkey.main, vault_args(timeout=0))
    assert result["failed"] is True and result["msg"].endswith("was not valid within 0s (status: none yet)")
    assert deprecated_names(result) == ["timeout"]


def test_wait_false_returns_at_once(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.hooks.append(k10_controller(take=False))
    result = run_module(k10_passkey.main, vault_args(wait=False))
    assert result["changed"] is True and result["passkey"]["valid"] is False


def test_absent_deletes_an_idle_passkey(k10_7):
    seed_passkey(k10_7, "in-use", {"inuse": True})
    seed_passkey(k10_7, NAME, {"inuse": False}, version=1)
    result = run_module(k10_passkey.main, args(state="absent"), diff=True)
    assert result["changed"] is True and result["actions"] == ["delete passkey %s" % NAME]
    assert names(k10_7) == ["in-use"] and result["passkey"] == {}
    assert result["diff"] == {"before": {"name": NAME, "spec": VAULT_SPEC, "transit_key_version": "1"},
                              "after": {}}
    again = run_module(k10_passkey.main, args(state="absent"))
    assert again["changed"] is False and again["actions"] == []


@pytest.mark.parametrize("others,status,text", [
    ([("idle", {"inuse": False})], {"inuse": True}, "is the one K10 uses now"),
    ([("broken", {"valid": False, "error": "e"})], {"valid": True}, "is the last valid passkey"),
])
def test_absent_refuses_to_leave_k10_without_a_key(fake_k8s, others, status, text):
    cluster = fake_k8s.cluster()
    seed_passkey(cluster, NAME, status)
    for name, other in others:
        seed_passkey(cluster, name, other)
    result = run_module(k10_passkey.main, args(state="absent"))
    assert result["failed"] is True and text in result["msg"]
    assert cluster.writes() == [] and NAME in names(cluster)


def test_check_mode_of_a_refused_delete_does_not_predict_success(fake_k8s):
    cluster = fake_k8s.cluster()
    seed_passkey(cluster, NAME, {"inuse": True})
    seed_passkey(cluster, "idle", {"inuse": False})
    result = run_module(k10_passkey.main, args(state="absent"), check_mode=True)
    assert cluster.writes() == []
    assert result.get("failed") is True and "is the one K10 uses now" in result["msg"]


def test_missing_crd_on_delete_is_explained(fake_k8s):
    cluster = fake_k8s.cluster()
    seed_passkey(cluster, NAME, {"valid": True})
    cluster.fail("GET", PASSKEYS, 404, "NotFound", "the server could not find the requested resource")
    result = run_module(k10_passkey.main, args(state="absent"))
    assert result["failed"] is True
    assert result["msg"] == ("passkeys.vault.kio.kasten.io not found (404): the server could not find the "
                             "requested resource")
