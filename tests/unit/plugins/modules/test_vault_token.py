"""vault_token against a fake Vault: a token lands in a 0600 file, is reused while valid, never returned unasked."""

import os
import stat

from _module_runner import assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_token

NEW_TOKEN = "hvs.new-token-from-create"
EXISTING_TOKEN = "hvs.token-already-in-the-file"
CREATED = {"auth": {"client_token": NEW_TOKEN, "accessor": "acc-new", "policies": ["default", "kasten"]}}


def lookup_answers(valid_tokens):
    """auth/token/lookup as Vault answers it: the token's data, or 403 'bad token'."""
    def answer(body):
        if body["token"] in valid_tokens:
            return {"data": dict({"accessor": "acc-existing", "orphan": True, "display_name": "token-kasten"},
                                 **valid_tokens[body["token"]])}
        return 403, {"errors": ["bad token"]}
    return answer


def test_argument_spec():
    spec = module_spec(vault_token.main)
    assert spec["policies"]["default"] == [] and spec["orphan"]["default"] is False
    assert spec["return_token"]["default"] is False
    assert no_log_options(spec) == {"token", "secret_id"}


def test_neither_token_file_nor_return_token_is_refused(fake_vault, vault_args):
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"]))
    assert result["failed"] and "set token_file" in result["msg"] and "return_token: true" in result["msg"]
    assert fake_vault.requests == []


def test_a_new_token_is_written_0600_and_kept_out_of_the_result(fake_vault, vault_args, tmp_path):
    fake_vault.on("POST", "auth/token/create-orphan", CREATED)
    token_file = tmp_path / "secrets" / "kasten-token"
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"], orphan=True, period="768h",
                                               display_name="kasten", token_file=str(token_file)))
    assert result["changed"] is True and result["accessor"] == "acc-new"
    assert result["policies"] == ["default", "kasten"] and result["token_file"] == str(token_file)
    assert fake_vault.writes() == [("POST", "auth/token/create-orphan",
                                    {"policies": ["kasten"], "period": "768h", "display_name": "kasten"})]
    assert token_file.read_text() == NEW_TOKEN + "\n"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert "token" not in result
    assert_not_in_result(result, NEW_TOKEN, vault_args["token"])


def test_a_valid_token_in_the_file_is_reused(fake_vault, vault_args, tmp_path):
    token_file = tmp_path / "kasten-token"
    token_file.write_text(EXISTING_TOKEN + "\n")
    fake_vault.on("POST", "auth/token/lookup", lookup_answers({EXISTING_TOKEN: {"policies": ["default", "kasten"]}}))
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"], orphan=True, display_name="kasten",
                                               token_file=str(token_file)))
    assert result["changed"] is False and result["accessor"] == "acc-existing"
    assert [r[1] for r in fake_vault.writes()] == ["auth/token/lookup"]  # looked up, nothing created
    assert token_file.read_text() == EXISTING_TOKEN + "\n"
    assert_not_in_result(result, EXISTING_TOKEN)


def test_a_token_lacking_a_policy_is_replaced(fake_vault, vault_args, tmp_path):
    token_file = tmp_path / "kasten-token"
    token_file.write_text(EXISTING_TOKEN)
    fake_vault.on("POST", "auth/token/lookup", lookup_answers({EXISTING_TOKEN: {"policies": ["default"]}}))
    fake_vault.on("POST", "auth/token/create", CREATED)
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"], token_file=str(token_file)))
    assert result["changed"] is True and token_file.read_text() == NEW_TOKEN + "\n"
    assert_not_in_result(result, NEW_TOKEN, EXISTING_TOKEN)


def test_a_revoked_token_in_the_file_is_replaced(fake_vault, vault_args, tmp_path):
    token_file = tmp_path / "kasten-token"
    token_file.write_text(EXISTING_TOKEN)
    fake_vault.on("POST", "auth/token/lookup", lookup_answers({}))
    fake_vault.on("POST", "auth/token/create", CREATED)
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"], token_file=str(token_file)))
    assert result["changed"] is True and token_file.read_text() == NEW_TOKEN + "\n"


def test_check_mode_creates_nothing(fake_vault, vault_args, tmp_path):
    token_file = tmp_path / "kasten-token"
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"], token_file=str(token_file)),
                        check_mode=True)
    assert result["changed"] is True and result["accessor"] is None and result["policies"] == ["kasten"]
    assert fake_vault.writes() == [] and not token_file.exists()


def test_check_mode_with_a_valid_token_is_unchanged(fake_vault, vault_args, tmp_path):
    token_file = tmp_path / "kasten-token"
    token_file.write_text(EXISTING_TOKEN)
    fake_vault.on("POST", "auth/token/lookup", lookup_answers({EXISTING_TOKEN: {"policies": ["default", "kasten"]}}))
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"], token_file=str(token_file)),
                        check_mode=True)
    assert result["changed"] is False


def test_return_token_returns_only_the_new_token(fake_vault, vault_args):
    fake_vault.on("POST", "auth/token/create", CREATED)
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"], return_token=True))
    assert result["changed"] is True and result["token"] == NEW_TOKEN and "token_file" not in result
    assert_not_in_result(result, vault_args["token"])


def test_an_unwritable_token_file_revokes_the_new_token(fake_vault, vault_args, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    fake_vault.on("POST", "auth/token/create", CREATED).on("POST", "auth/token/revoke-accessor", (204, None))
    result = run_module(vault_token.main, dict(vault_args, policies=["kasten"], token_file=str(blocker / "token")))
    assert result["failed"] and "cannot write token_file" in result["msg"] and "was revoked" in result["msg"]
    assert fake_vault.sent("POST", "auth/token/revoke-accessor") == [
        ("POST", "auth/token/revoke-accessor", {"accessor": "acc-new"})]
    assert_not_in_result(result, NEW_TOKEN)


def test_an_answer_without_a_token_is_an_error(fake_vault, vault_args):
    fake_vault.on("POST", "auth/token/create", {"auth": None})
    result = run_module(vault_token.main, dict(vault_args, return_token=True))
    assert result["failed"] and result["msg"] == "Vault created no token on POST auth/token/create"


def test_permission_denied_on_create_names_the_capability(fake_vault, vault_args):
    fake_vault.on("POST", "auth/token/create", (403, {"errors": ["permission denied"]}))
    result = run_module(vault_token.main, dict(vault_args, return_token=True))
    assert result["failed"] and "permission denied on POST auth/token/create" in result["msg"]
    assert "'update' capability" in result["msg"]
    assert_not_in_result(result, vault_args["token"])
