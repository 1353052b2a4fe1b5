"""vault_k8s_auth_role against a fake Vault: write the role only when it differs, TTLs compared in seconds."""

import pytest
from _module_runner import module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_k8s_auth_role

ROLE = "auth/kubernetes-green/role/apps"


class RoleStore:
    """auth/<mount>/role/<name> as Vault keeps it (TTLs read back in seconds)."""

    def __init__(self, fake_vault, role=None):
        self.role = role
        fake_vault.on("GET", ROLE, lambda _b: {"data": self.role} if self.role else (404, {"errors": []}))
        fake_vault.on("POST", ROLE, self.write)
        fake_vault.on("DELETE", ROLE, self.delete)

    def write(self, body):
        self.role = dict(body)
        return 204, None

    def delete(self, _body):
        self.role = None
        return 204, None


def args(vault_args, **options):
    return dict(vault_args, mount="kubernetes-green", name="apps", **options)


WANTED = dict(bound_service_account_names=["app"], bound_service_account_namespaces=["payments"],
              token_policies=["payments-read"], token_ttl="1h")


def test_argument_spec():
    spec = module_spec(vault_k8s_auth_role.main)
    assert spec["name"]["required"] is True and spec["state"]["choices"] == ["present", "absent"]
    assert no_log_options(spec) == {"token", "secret_id"}
    # token_* options are not secrets despite their names.
    assert all(spec[name].get("no_log") is False for name in ("token_policies", "token_ttl", "token_max_ttl"))


def test_a_new_role_is_written_with_a_diff(fake_vault, vault_args):
    store = RoleStore(fake_vault)
    result = run_module(vault_k8s_auth_role.main, args(vault_args, **WANTED), diff=True)
    assert result["changed"] is True
    assert store.role == {"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["payments"],
                          "token_policies": ["payments-read"], "token_ttl": 3600, "token_max_ttl": 0, "audience": ""}
    assert result["role"]["token_ttl"] == 3600 and result["diff"]["before"] == {}


def test_the_same_role_is_unchanged(fake_vault, vault_args):
    RoleStore(fake_vault, {"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["payments"],
                           "token_policies": ["payments-read"], "token_ttl": 3600, "token_max_ttl": 0})
    result = run_module(vault_k8s_auth_role.main, args(vault_args, **{**WANTED, "token_ttl": "60m"}), diff=True)
    assert result["changed"] is False and fake_vault.writes() == []
    assert result["diff"]["before"] == result["diff"]["after"]


def test_list_order_does_not_matter(fake_vault, vault_args):
    RoleStore(fake_vault, {"bound_service_account_names": ["b", "a"], "bound_service_account_namespaces": ["ns"]})
    result = run_module(vault_k8s_auth_role.main, args(vault_args, bound_service_account_names=["a", "b"],
                                                       bound_service_account_namespaces=["ns"]))
    assert result["changed"] is False


def test_check_mode_reports_and_writes_nothing(fake_vault, vault_args):
    store = RoleStore(fake_vault, {"bound_service_account_names": ["old"], "bound_service_account_namespaces": ["ns"]})
    result = run_module(vault_k8s_auth_role.main, args(vault_args, **WANTED), check_mode=True, diff=True)
    assert result["changed"] is True and result["diff"]["before"]["bound_service_account_names"] == ["old"]
    assert result["diff"]["after"]["bound_service_account_names"] == ["app"]
    assert fake_vault.writes() == [] and store.role["bound_service_account_names"] == ["old"]


def test_absent_deletes_and_is_then_unchanged(fake_vault, vault_args):
    store = RoleStore(fake_vault, {"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["ns"]})
    result = run_module(vault_k8s_auth_role.main, args(vault_args, state="absent"), diff=True)
    assert result["changed"] is True and result["role"] == {} and result["diff"]["after"] == {}
    assert store.role is None and fake_vault.sent("DELETE", ROLE)
    again = run_module(vault_k8s_auth_role.main, args(vault_args, state="absent"))
    assert again["changed"] is False and len(fake_vault.sent("DELETE", ROLE)) == 1


def test_check_mode_absent_deletes_nothing(fake_vault, vault_args):
    store = RoleStore(fake_vault, {"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["ns"]})
    result = run_module(vault_k8s_auth_role.main, args(vault_args, state="absent"), check_mode=True)
    assert result["changed"] is True and store.role is not None and fake_vault.writes() == []


@pytest.mark.parametrize("options, text", [
    ({"bound_service_account_names": ["app"]}, "bound_service_account_names and bound_service_account_namespaces "
                                               "are required"),
    (dict(WANTED, token_ttl="an hour"), "`token_ttl` must be a duration like 90d"),
])
def test_incomplete_or_bad_roles_are_explained(fake_vault, vault_args, options, text):
    RoleStore(fake_vault)
    result = run_module(vault_k8s_auth_role.main, args(vault_args, **options))
    assert result["failed"] and text in result["msg"] and fake_vault.writes() == []
