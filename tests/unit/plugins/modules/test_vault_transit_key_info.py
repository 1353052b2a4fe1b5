"""vault_transit_key_info against a fake transit engine: read-only, configuration and versions, no key material."""

from _module_runner import assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_transit_key_info


def test_argument_spec():
    spec = module_spec(vault_transit_key_info.main)
    assert spec["mount"]["default"] == "transit" and not spec["name"].get("required")
    assert no_log_options(spec) == {"token", "secret_id"}


def test_one_key(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=3, min_decryption_version=2)
    result = run_module(vault_transit_key_info.main, dict(vault_args, name="kasten"))
    assert result["changed"] is False and result["exists"] is True
    key = result["key"]
    assert key["name"] == "kasten" and key["latest_version"] == 3 and key["min_decryption_version"] == 2
    assert sorted(key["versions"]) == ["2", "3"]  # Vault lists versions from min_decryption_version on
    assert key["versions"]["3"].endswith("Z")  # unix seconds became UTC ISO 8601
    assert result["keys"] == [key]
    assert fake_vault.writes() == []


def test_a_missing_key_is_not_an_error(fake_transit, vault_args):
    result = run_module(vault_transit_key_info.main, dict(vault_args, name="nope"))
    assert result["changed"] is False and result["exists"] is False
    assert result["key"] == {} and result["keys"] == []


def test_every_key_of_a_mount_sorted_by_name(fake_transit, fake_vault, vault_args):
    other = type(fake_transit)(fake_vault, "transit-hr")
    for name in ("payroll", "backups", "kasten"):
        fake_transit.add_key(name)
    other.add_key("hr-only")
    result = run_module(vault_transit_key_info.main, dict(vault_args, mount="transit"))
    assert [key["name"] for key in result["keys"]] == ["backups", "kasten", "payroll"]
    assert "key" not in result and "exists" not in result
    assert fake_vault.sent("LIST", "transit/keys") and not fake_vault.sent("LIST", "transit-hr/keys")


def test_an_empty_mount_gives_no_keys(fake_transit, vault_args):
    result = run_module(vault_transit_key_info.main, vault_args)
    assert result["changed"] is False and result["keys"] == []


def test_check_mode_reads_the_same(fake_transit, fake_vault, vault_args):
    fake_transit.add_key("kasten", versions=2)
    result = run_module(vault_transit_key_info.main, dict(vault_args, name="kasten"), check_mode=True)
    assert result["exists"] is True and result["key"]["latest_version"] == 2 and fake_vault.writes() == []


def test_no_key_material_or_token_in_the_result(fake_transit, fake_vault, vault_args):
    # Even if Vault answered with material (an exportable key's read does not, but a proxy might add it),
    # the result holds only the normalized view.
    key = fake_transit.add_key("kasten", exportable=True)
    key["export_material"] = "KEY-MATERIAL-kasten"
    result = run_module(vault_transit_key_info.main, dict(vault_args, name="kasten"))
    assert "export_material" not in result["key"]
    assert_not_in_result(result, "KEY-MATERIAL", vault_args["token"])


def test_permission_denied_on_list_names_the_capability(fake_vault, vault_args):
    fake_vault.on("LIST", "transit/keys", (403, {"errors": ["permission denied"]}))
    result = run_module(vault_transit_key_info.main, vault_args)
    assert result["failed"] and "permission denied on LIST transit/keys" in result["msg"]
    assert "'list' capability" in result["msg"]


def test_no_url_says_where_to_set_it(fake_vault, vault_args):
    result = run_module(vault_transit_key_info.main, {"token": vault_args["token"], "name": "kasten"})
    assert result["failed"] and "no Vault address" in result["msg"] and "VAULT_ADDR" in result["msg"]
    assert fake_vault.requests == []
