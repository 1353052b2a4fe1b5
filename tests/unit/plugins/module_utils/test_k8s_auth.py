"""Kubernetes auth config/role planning and the the cross-cluster Kubernetes auth break / seal assessments, without a server."""

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _k8s_auth as ka
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError

GREEN = "https://green:6443"


def config(**extra):
    base = ka.config_view({"kubernetes_host": GREEN, "kubernetes_ca_cert": "PEM"})
    base.update(extra)
    return base


def test_plan_config_idempotent_and_reviewer_jwt_handling():
    current = config()
    assert ka.plan_config(current, {"kubernetes_host": GREEN})[0] is None
    payload, after = ka.plan_config(current, {"disable_local_ca_jwt": True})
    assert payload["disable_local_ca_jwt"] is True and after["disable_local_ca_jwt"] is True
    payload, after = ka.plan_config(current, {"token_reviewer_jwt": "jwt"})
    assert payload["token_reviewer_jwt"] == "jwt" and after["token_reviewer_jwt_set"] is True
    already = config(token_reviewer_jwt_set=True)
    assert ka.plan_config(already, {"token_reviewer_jwt": "jwt"})[0] is None
    assert ka.plan_config(already, {"token_reviewer_jwt": "jwt", "update_token_reviewer_jwt": True})[0]
    removed, after = ka.plan_config(already, {"token_reviewer_jwt": ""})
    assert removed["token_reviewer_jwt"] == "" and after["token_reviewer_jwt_set"] is False


def test_plan_config_errors():
    with pytest.raises(VaultModuleError, match="kubernetes_host is required"):
        ka.plan_config(None, {})
    with pytest.raises(VaultModuleError, match="kubernetes_ca_cert must be given"):
        ka.plan_config(None, {"kubernetes_host": GREEN, "disable_local_ca_jwt": True})


def test_plan_role():
    params = {"bound_service_account_names": ["b", "a"], "bound_service_account_namespaces": ["ns"],
              "token_policies": ["p"], "token_ttl": "1h"}
    payload, after = ka.plan_role(None, params)
    assert after["bound_service_account_names"] == ["a", "b"] and after["token_ttl"] == 3600
    assert ka.plan_role(after, params)[0] is None
    with pytest.raises(VaultModuleError, match="required"):
        ka.plan_role(None, {"token_policies": ["p"]})


def test_assess_cross_cluster_login_after_an_upgrade():
    assert ka.assess(config(), vault_cluster_host="https://blue:6443")[0] == "at risk"
    status, reasons, fix = ka.assess(config(), vault_cluster_host=None)
    assert status == "at risk" and "outside any cluster" in reasons[0] and fix == {"disable_local_ca_jwt": True}
    assert ka.assess(config(), vault_cluster_host=GREEN + "/")[0] == "ok"
    assert ka.assess(config(disable_local_ca_jwt=True))[0] == "ok"
    assert ka.assess(config(token_reviewer_jwt_set=True))[0] == "ok"


def test_issuer_mismatch_and_report():
    checked = config(issuer="https://kubernetes.default.svc", disable_iss_validation=False)
    assert ka.issuer_mismatch(checked, "https://other") and ka.issuer_mismatch(checked, checked["issuer"]) is None
    entry = {"mount": "k", "config": checked, "status": "ok", "reasons": [], "fix": None}
    report = ka.preflight_report([entry], [{"item": {"mount": "k"}, "login": "failed", "error": "403",
                                            "token_issuer": "https://other"}])
    assert report[0]["status"] == "broken" and report[0]["fix"] == {"disable_iss_validation": True}


HCL = """# comment seal "transit" {
storage "raft" { path = "/d" }
seal "awskms" {
  kms_key_id = "k"
}
"""


def test_seal_storage_findings():
    assert ka.config_stanzas(HCL)[1][:2] == ("seal", "awskms")
    assert ka.seal_storage_findings(HCL, "2.6.2", "2.7.0")[0] == "broken"
    assert ka.seal_storage_findings(HCL, "2.6.2", "2.6.9")[0] == "ok"
    assert ka.seal_storage_findings(HCL, "2.7.1", "2.7.2")[0] == "ok"  # already past the removal
    with_plugin = HCL.replace('kms_key_id = "k"', 'plugin = "awskms"')
    assert ka.seal_storage_findings(with_plugin, "2.6.2", "2.7.0")[0] == "ok"
    assert ka.parse_version("v2.7.2-beta") == (2, 7, 2)


def test_reviewer_jwt_expiry():
    import base64
    import json

    def jwt(claims):
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return "e30." + body + ".sig"

    assert ka.seconds_left(jwt({"exp": 1000}), now=400) == 600
    assert ka.seconds_left(jwt({"sub": "x"})) is None
    with pytest.raises(VaultModuleError, match="not a JWT"):
        ka.seconds_left("nope")
    status, reasons, _fix = ka.assess(config(token_reviewer_jwt_set=True), None, reviewer_jwt_expires_in=3600)
    assert status == "at risk" and "expires in 3600 s" in reasons[0]
