"""vault_k8s_auth against a fake Vault: enable the mount, write its config only when it differs, never show
the reviewer JWT."""

import pytest
from _module_runner import MASK, assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_k8s_auth

HOST = "https://green.example.com:6443"
CA = "-----BEGIN CERTIFICATE-----\nMIIBgreen\n-----END CERTIFICATE-----"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXZpZXdlciJ9.c2lnbmF0dXJl"


class K8sAuthMount:
    """sys/auth and auth/<mount>/config as Vault keeps them (the reviewer JWT stored, only its presence read)."""

    def __init__(self, fake_vault, mount="kubernetes-green", config=None, kind="kubernetes"):
        self.mount, self.config = mount, config
        self.table = {"token/": {"type": "token"}}
        if config is not None or kind != "kubernetes":
            self.table[mount + "/"] = {"type": kind}
        fake_vault.on("GET", "sys/auth", lambda _b: {"data": self.table})
        fake_vault.on("POST", "sys/auth/" + mount, self.enable)
        fake_vault.on("GET", "auth/%s/config" % mount, self.read)
        fake_vault.on("POST", "auth/%s/config" % mount, self.write)

    def enable(self, body):
        self.table[self.mount + "/"] = {"type": body["type"]}
        return 204, None

    def read(self, _body):
        if self.config is None:
            return 404, {"errors": []}
        data = dict((k, v) for k, v in self.config.items() if k != "token_reviewer_jwt")
        data["token_reviewer_jwt_set"] = bool(self.config.get("token_reviewer_jwt"))
        return {"data": data}

    def write(self, body):
        previous = (self.config or {}).get("token_reviewer_jwt")
        self.config = dict(body)
        self.config.setdefault("token_reviewer_jwt", previous)
        return 204, None


def args(vault_args, **options):
    return dict(vault_args, mount="kubernetes-green", kubernetes_host=HOST, kubernetes_ca_cert=CA,
                disable_local_ca_jwt=True, **options)


def test_argument_spec():
    spec = module_spec(vault_k8s_auth.main)
    assert spec["mount"]["default"] == "kubernetes" and spec["update_token_reviewer_jwt"]["default"] is False
    assert no_log_options(spec) == {"token", "secret_id", "token_reviewer_jwt"}


def test_enables_the_mount_and_writes_the_config(fake_vault, vault_args):
    mount = K8sAuthMount(fake_vault)
    result = run_module(vault_k8s_auth.main, args(vault_args), diff=True)
    assert result["changed"] is True
    assert result["actions"] == ["enable kubernetes auth at kubernetes-green", "write auth/kubernetes-green/config"]
    assert [r[:2] for r in fake_vault.writes()] == [("POST", "sys/auth/kubernetes-green"),
                                                    ("POST", "auth/kubernetes-green/config")]
    assert mount.config["kubernetes_host"] == HOST and mount.config["disable_local_ca_jwt"] is True
    assert result["config"]["kubernetes_ca_cert"] == CA and result["diff"]["before"] == {}


def test_a_matching_config_is_unchanged(fake_vault, vault_args):
    K8sAuthMount(fake_vault, config={"kubernetes_host": HOST, "kubernetes_ca_cert": CA + "\n",
                                     "disable_local_ca_jwt": True, "issuer": "", "disable_iss_validation": True})
    result = run_module(vault_k8s_auth.main, args(vault_args), diff=True)
    assert result["changed"] is False and result["actions"] == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert fake_vault.writes() == []


def test_check_mode_reports_the_actions_and_sends_nothing(fake_vault, vault_args):
    mount = K8sAuthMount(fake_vault)
    result = run_module(vault_k8s_auth.main, args(vault_args), check_mode=True)
    assert result["changed"] is True and len(result["actions"]) == 2
    assert result["config"]["kubernetes_host"] == HOST
    assert fake_vault.writes() == [] and mount.config is None


def test_the_reviewer_jwt_is_written_once_and_never_shown(fake_vault, vault_args):
    mount = K8sAuthMount(fake_vault)
    result = run_module(vault_k8s_auth.main, args(vault_args, token_reviewer_jwt=JWT), diff=True)
    assert result["changed"] is True and mount.config["token_reviewer_jwt"] == JWT
    assert result["config"]["token_reviewer_jwt_set"] is True
    assert result["invocation"]["module_args"]["token_reviewer_jwt"] == MASK
    assert_not_in_result(result, JWT, vault_args["token"])
    # A second run: Vault says a JWT is set, so the given one is not sent again unless asked to.
    again = run_module(vault_k8s_auth.main, args(vault_args, token_reviewer_jwt=JWT))
    assert again["changed"] is False and len(fake_vault.sent("POST", "auth/kubernetes-green/config")) == 1
    forced = run_module(vault_k8s_auth.main, args(vault_args, token_reviewer_jwt=JWT, update_token_reviewer_jwt=True))
    assert forced["changed"] is True and fake_vault.sent("POST", "auth/kubernetes-green/config")[-1][2][
        "token_reviewer_jwt"] == JWT
    assert_not_in_result(forced, JWT)


def test_a_mount_of_another_type_is_refused(fake_vault, vault_args):
    K8sAuthMount(fake_vault, kind="approle")
    result = run_module(vault_k8s_auth.main, args(vault_args))
    assert result["failed"] and result["msg"] == "auth mount 'kubernetes-green' is a approle mount, not kubernetes"
    assert fake_vault.writes() == []


@pytest.mark.parametrize("options, text", [
    ({"kubernetes_host": None}, "kubernetes_host is required"),
    ({"kubernetes_ca_cert": None}, "kubernetes_ca_cert must be given when disable_local_ca_jwt is true"),
])
def test_incomplete_config_is_explained(fake_vault, vault_args, options, text):
    K8sAuthMount(fake_vault)
    params = args(vault_args)
    params.update(options)
    result = run_module(vault_k8s_auth.main, dict((k, v) for k, v in params.items() if v is not None))
    assert result["failed"] and text in result["msg"] and fake_vault.writes() == []
