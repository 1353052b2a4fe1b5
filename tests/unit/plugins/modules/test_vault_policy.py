"""vault_policy against a fake Vault: write only when the text differs, diff of the HCL, built-ins kept."""

import pytest
from _module_runner import assert_not_in_result, module_kwargs, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_policy

POLICY = 'path "transit/encrypt/kasten" {\n  capabilities = ["update"]\n}'
PATH = "sys/policies/acl/kasten"


def test_argument_spec():
    spec = module_spec(vault_policy.main)
    assert spec["name"]["required"] is True
    assert spec["state"]["choices"] == ["present", "absent"] and spec["state"]["default"] == "present"
    assert no_log_options(spec) == {"token", "secret_id"}
    assert ("state", "present", ("policy",)) in module_kwargs(vault_policy.main)["required_if"]


def test_present_without_policy_text_fails_before_any_request(fake_vault, vault_args):
    result = run_module(vault_policy.main, dict(vault_args, name="kasten"))
    assert result["failed"] and "policy" in result["msg"] and "state is present" in result["msg"]
    assert fake_vault.requests == []


def test_blank_policy_text_fails_with_a_hint(fake_vault, vault_args):
    result = run_module(vault_policy.main, dict(vault_args, name="kasten", policy="  \n "))
    assert result["failed"] and result["msg"] == "policy is empty: give the HCL text"
    assert fake_vault.writes() == []


def test_new_policy_is_written_with_a_diff(fake_vault, vault_args):
    fake_vault.on("PUT", PATH, (204, None))
    result = run_module(vault_policy.main, dict(vault_args, name="kasten", policy=POLICY + "   \n\n"), diff=True)
    assert result["changed"] is True and result["policy"] == POLICY
    assert result["diff"] == {"before": "", "after": POLICY + "\n",
                              "before_header": "policy kasten", "after_header": "policy kasten"}
    # Trailing whitespace is dropped before writing, so a re-run compares equal.
    assert fake_vault.writes() == [("PUT", PATH, {"policy": POLICY + "\n"})]


def test_check_mode_reports_the_change_and_writes_nothing(fake_vault, vault_args):
    fake_vault.on("GET", PATH, {"data": {"policy": 'path "x" {}'}})
    result = run_module(vault_policy.main, dict(vault_args, name="kasten", policy=POLICY), check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["diff"]["before"] == 'path "x" {}\n' and result["diff"]["after"] == POLICY + "\n"
    assert fake_vault.writes() == []


def test_same_text_up_to_trailing_whitespace_is_unchanged(fake_vault, vault_args):
    fake_vault.on("GET", PATH, {"data": {"policy": POLICY.replace("\n", "  \n") + "\n\n"}})
    result = run_module(vault_policy.main, dict(vault_args, name="kasten", policy=POLICY))
    assert result["changed"] is False and "diff" not in result
    assert fake_vault.writes() == []


def test_absent_deletes_an_existing_policy(fake_vault, vault_args):
    fake_vault.on("GET", PATH, {"data": {"policy": POLICY}}).on("DELETE", PATH, (204, None))
    result = run_module(vault_policy.main, dict(vault_args, name="kasten", state="absent"), diff=True)
    assert result["changed"] is True and result["policy"] == ""
    assert result["diff"]["before"] == POLICY + "\n" and result["diff"]["after"] == ""
    assert fake_vault.writes() == [("DELETE", PATH, None)]


def test_absent_when_missing_is_unchanged(fake_vault, vault_args):
    result = run_module(vault_policy.main, dict(vault_args, name="kasten", state="absent"))
    assert result["changed"] is False and fake_vault.writes() == []


@pytest.mark.parametrize("name", ["root", "default"])
def test_builtin_policies_cannot_be_deleted(fake_vault, vault_args, name):
    fake_vault.on("GET", "sys/policies/acl/" + name, {"data": {"policy": 'path "*" {}'}})
    result = run_module(vault_policy.main, dict(vault_args, name=name, state="absent"))
    assert result["failed"] and result["msg"] == "the built-in %r policy cannot be deleted" % name
    assert fake_vault.writes() == []


def test_permission_denied_names_path_and_capability_and_hides_the_token(fake_vault, vault_args):
    fake_vault.on("GET", PATH, (403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}))
    result = run_module(vault_policy.main, dict(vault_args, name="kasten", policy=POLICY))
    assert result["failed"] and "permission denied" in result["msg"] and PATH in result["msg"]
    assert "'read' capability" in result["msg"]
    assert_not_in_result(result, vault_args["token"])


def test_missing_token_says_how_to_give_one(fake_vault):
    result = run_module(vault_policy.main, {"url": "http://vault.test:8200", "name": "kasten", "policy": POLICY})
    assert result["failed"] and "no Vault token" in result["msg"] and "VAULT_TOKEN" in result["msg"]
    assert fake_vault.requests == []
