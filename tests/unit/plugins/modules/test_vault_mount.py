"""vault_mount against a fake Vault: enable, tune only what differs, refuse data loss and type changes."""

import pytest
from _module_runner import assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_mount


def transit_mount(**config):
    return {"type": "transit", "description": "K10 keys", "accessor": "transit_1",
            "config": dict({"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False}, **config),
            "options": None}


def mounts(fake_vault, table, base="sys/mounts"):
    # sys/mounts answers with the table both at the top level and under "data".
    fake_vault.on("GET", base, dict(table, data=table))
    return fake_vault


def test_argument_spec():
    spec = module_spec(vault_mount.main)
    assert spec["path"]["required"] is True
    assert spec["kind"]["choices"] == ["secret", "auth"] and spec["kind"]["default"] == "secret"
    assert spec["state"]["choices"] == ["present", "absent"]
    assert spec["allow_data_loss"]["default"] is False
    assert no_log_options(spec) == {"token", "secret_id"}


def test_enable_a_new_engine_with_ttls_in_seconds_and_a_diff(fake_vault, vault_args):
    mounts(fake_vault, {}).on("POST", "sys/mounts/transit", (204, None))
    result = run_module(vault_mount.main, dict(vault_args, path="/transit/", type="transit", description="K10 keys",
                                               config={"max_lease_ttl": "1h30m"}), diff=True)
    expected = {"type": "transit", "description": "K10 keys", "config": {"max_lease_ttl": 5400}, "options": {}}
    assert result["changed"] is True and result["mount"] == expected
    assert result["diff"] == {"before": {}, "after": expected}
    assert fake_vault.writes() == [("POST", "sys/mounts/transit", {"type": "transit", "config": {"max_lease_ttl": 5400},
                                                                   "options": {}, "description": "K10 keys"})]


def test_matching_mount_is_unchanged(fake_vault, vault_args):
    mounts(fake_vault, {"transit/": transit_mount(max_lease_ttl=3600)})
    result = run_module(vault_mount.main, dict(vault_args, path="transit", type="transit", description="K10 keys",
                                               config={"max_lease_ttl": "1h"}))
    assert result["changed"] is False and result["mount"]["config"]["max_lease_ttl"] == 3600
    assert fake_vault.writes() == []


def test_options_compare_as_text(fake_vault, vault_args):
    # Vault reports kv's version option as the string "2"; the task gives the number 2.
    mounts(fake_vault, {"secret/": {"type": "kv", "description": "", "config": {}, "options": {"version": "2"}}})
    result = run_module(vault_mount.main, dict(vault_args, path="secret", type="kv", options={"version": 2}))
    assert result["changed"] is False and fake_vault.writes() == []


def test_only_the_differences_are_tuned(fake_vault, vault_args):
    mounts(fake_vault, {"transit/": transit_mount(max_lease_ttl=3600)})
    fake_vault.on("POST", "sys/mounts/transit/tune", (204, None))
    result = run_module(vault_mount.main, dict(vault_args, path="transit", type="transit", description="K10 keys",
                                               config={"max_lease_ttl": "2h", "default_lease_ttl": 0}), diff=True)
    assert result["changed"] is True
    assert fake_vault.writes() == [("POST", "sys/mounts/transit/tune", {"max_lease_ttl": 7200})]
    assert result["diff"]["before"]["config"]["max_lease_ttl"] == 3600
    assert result["diff"]["after"]["config"]["max_lease_ttl"] == 7200


def test_check_mode_predicts_the_tune_and_sends_nothing(fake_vault, vault_args):
    mounts(fake_vault, {"transit/": transit_mount()})
    result = run_module(vault_mount.main, dict(vault_args, path="transit", type="transit", description="new"),
                        check_mode=True, diff=True)
    assert result["changed"] is True and result["mount"]["description"] == "new"
    assert result["diff"]["before"]["description"] == "K10 keys"
    assert fake_vault.writes() == []


def test_auth_methods_live_under_sys_auth(fake_vault, vault_args):
    mounts(fake_vault, {}, base="sys/auth").on("POST", "sys/auth/kubernetes-green", (204, None))
    result = run_module(vault_mount.main, dict(vault_args, path="kubernetes-green", kind="auth", type="kubernetes"))
    assert result["changed"] is True
    assert [r[:2] for r in fake_vault.writes()] == [("POST", "sys/auth/kubernetes-green")]


def test_changing_the_type_is_refused(fake_vault, vault_args):
    mounts(fake_vault, {"transit/": transit_mount()})
    result = run_module(vault_mount.main, dict(vault_args, path="transit", type="kv"))
    assert result["failed"] and "'transit' is a transit mount, not kv" in result["msg"]
    assert "allow_data_loss" in result["msg"] and fake_vault.writes() == []


def test_present_without_type_names_the_option(fake_vault, vault_args):
    mounts(fake_vault, {})
    result = run_module(vault_mount.main, dict(vault_args, path="transit"))
    assert result["failed"] and result["msg"].startswith("type is required with state=present")
    assert fake_vault.writes() == []


def test_a_bad_duration_is_explained(fake_vault, vault_args):
    mounts(fake_vault, {})
    result = run_module(vault_mount.main, dict(vault_args, path="transit", type="transit",
                                               config={"default_lease_ttl": "one hour"}))
    assert result["failed"] and "`config.default_lease_ttl` must be a duration like 90d" in result["msg"]
    assert fake_vault.writes() == []


def test_disabling_a_secrets_engine_needs_allow_data_loss(fake_vault, vault_args):
    mounts(fake_vault, {"transit/": transit_mount()})
    result = run_module(vault_mount.main, dict(vault_args, path="transit", state="absent"))
    assert result["failed"] and "refusing to disable the transit secrets engine" in result["msg"]
    assert "allow_data_loss: true" in result["msg"] and fake_vault.writes() == []


def test_disabling_with_allow_data_loss(fake_vault, vault_args):
    mounts(fake_vault, {"transit/": transit_mount()}).on("DELETE", "sys/mounts/transit", (204, None))
    result = run_module(vault_mount.main, dict(vault_args, path="transit", state="absent", allow_data_loss=True),
                        diff=True)
    assert result["changed"] is True and result["mount"] == {} and result["diff"]["after"] == {}
    assert fake_vault.writes() == [("DELETE", "sys/mounts/transit", None)]


def test_an_auth_method_is_disabled_without_allow_data_loss(fake_vault, vault_args):
    mounts(fake_vault, {"kubernetes/": {"type": "kubernetes", "config": {}}}, base="sys/auth")
    fake_vault.on("DELETE", "sys/auth/kubernetes", (204, None))
    result = run_module(vault_mount.main, dict(vault_args, path="kubernetes", kind="auth", state="absent"))
    assert result["changed"] is True and fake_vault.writes() == [("DELETE", "sys/auth/kubernetes", None)]


def test_absent_when_missing_is_unchanged(fake_vault, vault_args):
    mounts(fake_vault, {})
    result = run_module(vault_mount.main, dict(vault_args, path="transit", state="absent"))
    assert result["changed"] is False and result["mount"] == {} and fake_vault.writes() == []


@pytest.mark.parametrize("kind", ["engine", "Secret"])
def test_kind_outside_its_choices(fake_vault, vault_args, kind):
    result = run_module(vault_mount.main, dict(vault_args, path="transit", type="transit", kind=kind))
    assert result["failed"] and "value of kind must be one of: secret, auth" in result["msg"]
    assert fake_vault.requests == []


def test_a_vault_refusal_hides_the_token(fake_vault, vault_args):
    fake_vault.on("GET", "sys/mounts", (403, {"errors": ["permission denied"]}))
    result = run_module(vault_mount.main, dict(vault_args, path="transit", type="transit"))
    assert result["failed"] and "permission denied on GET sys/mounts" in result["msg"]
    assert_not_in_result(result, vault_args["token"])
