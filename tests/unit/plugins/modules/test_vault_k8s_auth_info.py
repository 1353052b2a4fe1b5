"""vault_k8s_auth_info against a fake Vault: which kubernetes auth mounts depend on the reviewer-JWT fallback."""

import base64
import json
import time

from _module_runner import MASK, assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_k8s_auth_info

GREEN = "https://green.example.com:6443"
BLUE = "https://blue.example.com:6443"


def jwt(**claims):
    def part(document):
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
    return "%s.%s.c2ln" % (part({"alg": "RS256"}), part(claims))


def mounts(fake_vault, configs):
    """sys/auth with a kubernetes mount per entry of ``configs`` (plus token and approle), and their configs."""
    table = {"token/": {"type": "token"}, "approle/": {"type": "approle"}}
    for mount, config in configs.items():
        table[mount + "/"] = {"type": "kubernetes"}
        fake_vault.on("GET", "auth/%s/config" % mount, {"data": config})
    fake_vault.on("GET", "sys/auth", {"data": table})
    fake_vault.on("GET", "sys/health", {"version": "2.1.0", "sealed": False})


def test_argument_spec():
    spec = module_spec(vault_k8s_auth_info.main)
    assert spec["expiry_warning"]["default"] == 604800
    assert no_log_options(spec) == {"token", "secret_id", "token_reviewer_jwts"}
    assert spec["token_reviewer_jwts"]["aliases"] == ["reviewer_jwts"]


def test_every_kubernetes_mount_is_assessed(fake_vault, vault_args):
    mounts(fake_vault, {
        "kubernetes-green": {"kubernetes_host": GREEN, "disable_local_ca_jwt": False, "token_reviewer_jwt_set": False},
        "kubernetes-blue": {"kubernetes_host": BLUE, "disable_local_ca_jwt": False, "token_reviewer_jwt_set": False},
        "kubernetes-safe": {"kubernetes_host": GREEN, "disable_local_ca_jwt": True, "kubernetes_ca_cert": "CA"},
    })
    result = run_module(vault_k8s_auth_info.main, dict(vault_args, vault_cluster_host=BLUE))
    assert result["changed"] is False and result["server_version"] == "2.1.0"
    by_mount = dict((entry["mount"], entry) for entry in result["mounts"])
    assert sorted(by_mount) == ["kubernetes-blue", "kubernetes-green", "kubernetes-safe"]  # not token/approle
    assert by_mount["kubernetes-green"]["status"] == "at risk"
    assert by_mount["kubernetes-green"]["fix"] == {"disable_local_ca_jwt": True}
    assert "Vault runs in %s" % BLUE in by_mount["kubernetes-green"]["reasons"][0]
    assert by_mount["kubernetes-blue"]["status"] == "ok"  # Vault runs in that very cluster
    assert by_mount["kubernetes-safe"]["status"] == "ok" and by_mount["kubernetes-safe"]["reasons"] == []
    assert fake_vault.writes() == []


def test_only_the_named_mounts(fake_vault, vault_args):
    mounts(fake_vault, {"kubernetes-green": {"kubernetes_host": GREEN}, "kubernetes-blue": {"kubernetes_host": BLUE}})
    result = run_module(vault_k8s_auth_info.main, dict(vault_args, mounts=["/kubernetes-blue/"]))
    assert [entry["mount"] for entry in result["mounts"]] == ["kubernetes-blue"]
    assert fake_vault.sent("GET", "auth/kubernetes-green/config") == []


def test_a_mount_that_is_not_kubernetes_auth_is_named(fake_vault, vault_args):
    mounts(fake_vault, {"kubernetes-green": {"kubernetes_host": GREEN}})
    result = run_module(vault_k8s_auth_info.main, dict(vault_args, mounts=["approle", "nope"]))
    assert result["failed"] and result["msg"] == "not kubernetes auth mounts: approle, nope (found: kubernetes-green)"


def test_a_reviewer_jwt_close_to_expiry_is_flagged_and_never_returned(fake_vault, vault_args):
    mounts(fake_vault, {"kubernetes-green": {"kubernetes_host": GREEN, "token_reviewer_jwt_set": True}})
    reviewer = jwt(sub="system:serviceaccount:vault:reviewer", exp=int(time.time()) + 3600)
    result = run_module(vault_k8s_auth_info.main, dict(vault_args, token_reviewer_jwts={"kubernetes-green": reviewer}))
    entry = result["mounts"][0]
    assert entry["status"] == "at risk" and "the token_reviewer_jwt expires in" in entry["reasons"][0]
    assert result["invocation"]["module_args"]["token_reviewer_jwts"] == {"kubernetes-green": MASK}
    assert_not_in_result(result, reviewer, vault_args["token"])


def test_a_reviewer_jwt_far_from_expiry_is_ok(fake_vault, vault_args):
    mounts(fake_vault, {"kubernetes-green": {"kubernetes_host": GREEN, "token_reviewer_jwt_set": True}})
    reviewer = jwt(exp=int(time.time()) + 365 * 86400)
    result = run_module(vault_k8s_auth_info.main, dict(vault_args, token_reviewer_jwts={"kubernetes-green": reviewer}))
    assert result["mounts"][0]["status"] == "ok"


def test_a_reviewer_value_that_is_not_a_jwt_is_explained_without_echoing_it(fake_vault, vault_args):
    mounts(fake_vault, {"kubernetes-green": {"kubernetes_host": GREEN, "token_reviewer_jwt_set": True}})
    result = run_module(vault_k8s_auth_info.main,
                        dict(vault_args, token_reviewer_jwts={"kubernetes-green": "opaque-s3cret"}))
    assert result["failed"] and result["msg"] == "a reviewer JWT given in token_reviewer_jwts is not a JWT"
    assert_not_in_result(result, "opaque-s3cret")


def test_the_deprecated_reviewer_jwts_alias_still_works_masked(fake_vault, vault_args):
    mounts(fake_vault, {"kubernetes-green": {"kubernetes_host": GREEN, "token_reviewer_jwt_set": True}})
    reviewer = jwt(exp=int(time.time()) + 60)
    result = run_module(vault_k8s_auth_info.main, dict(vault_args, reviewer_jwts={"kubernetes-green": reviewer}))
    assert result["mounts"][0]["status"] == "at risk"
    assert any("reviewer_jwts" in json.dumps(d) for d in result.get("deprecations", []))
    assert_not_in_result(result, reviewer)


def test_no_kubernetes_mounts_at_all(fake_vault, vault_args):
    mounts(fake_vault, {})
    result = run_module(vault_k8s_auth_info.main, vault_args, check_mode=True)
    assert result["changed"] is False and result["mounts"] == []
