"""vault_k8s_auth_probe with a fake cluster and a fake Vault: a real login path, neither token ever returned."""

import base64
import json

import pytest
from _module_runner import MASK, assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import K8sModuleError
from ansible_collections.keyops.lifecycle.plugins.modules import vault_k8s_auth_probe

ISSUER = "https://green.example.com"
CLIENT_TOKEN = "hvs.probe-login-token"
LOGIN = "auth/kubernetes-green/login"
TOKEN_PATH = "/api/v1/namespaces/payments/serviceaccounts/app/token"


def service_account_jwt(**claims):
    def part(document):
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
    return "%s.%s.c2lnbmF0dXJl" % (part({"alg": "RS256"}), part(dict({"iss": ISSUER, "sub": "app"}, **claims)))


SA_JWT = service_account_jwt()


class FakeKube:
    """The TokenRequest API of the target cluster: answers from ``answers[(method, path)]`` and records requests."""

    def __init__(self, answers):
        self.answers = answers
        self.requests = []

    def request(self, method, path, body=None, query=None, content_type="application/json", what=None,
                missing_ok=False):
        self.requests.append((method, path, body))
        answer = self.answers[(method, path)]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def kube(monkeypatch):
    fake = FakeKube({("POST", TOKEN_PATH): {"status": {"token": SA_JWT,
                                                       "expirationTimestamp": "2030-01-01T00:00:00Z"}}})
    params_seen = []

    def client_for_vault_module(params):
        params_seen.append(dict(params))
        return fake

    monkeypatch.setattr(vault_k8s_auth_probe, "client_for_vault_module", client_for_vault_module)
    fake.params_seen = params_seen
    return fake


def args(vault_args, **options):
    return dict(vault_args, mount="kubernetes-green", role="apps", service_account="app",
                service_account_namespace="payments", host="https://green.example.com:6443",
                api_key="k8s-bearer-secret", **options)


def test_argument_spec():
    spec = module_spec(vault_k8s_auth_probe.main)
    assert spec["role"]["required"] is True and spec["service_account"]["required"] is True
    assert spec["service_account_namespace"]["default"] == "default" and spec["mount"]["default"] == "kubernetes"
    assert no_log_options(spec) == {"token", "secret_id", "api_key"}


def test_a_working_mount_logs_in_and_revokes_the_token(kube, fake_vault, vault_args):
    fake_vault.on("POST", LOGIN, {"auth": {"client_token": CLIENT_TOKEN, "accessor": "acc"}})
    fake_vault.on("POST", "auth/token/revoke", (204, None))
    result = run_module(vault_k8s_auth_probe.main, args(vault_args))
    assert result["changed"] is False and result["login"] == "ok" and result["error"] == ""
    assert result["token_issuer"] == ISSUER
    assert kube.requests == [("POST", TOKEN_PATH, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                                   "spec": {"expirationSeconds": 600}})]
    assert fake_vault.writes() == [("POST", LOGIN, {"role": "apps", "jwt": SA_JWT}),
                                   ("POST", "auth/token/revoke", {"token": CLIENT_TOKEN})]
    assert result["invocation"]["module_args"]["api_key"] == MASK
    assert_not_in_result(result, SA_JWT, CLIENT_TOKEN, "k8s-bearer-secret", vault_args["token"])


def test_the_kube_options_reach_the_client_under_their_kube_names(kube, fake_vault, vault_args):
    fake_vault.on("POST", LOGIN, {"auth": {}})
    run_module(vault_k8s_auth_probe.main, args(vault_args, kube_validate_certs=False))
    seen = kube.params_seen[0]
    assert seen["host"] == "https://green.example.com:6443" and seen["kube_validate_certs"] is False


def test_audiences_go_into_the_token_request(kube, fake_vault, vault_args):
    fake_vault.on("POST", LOGIN, {"auth": {}})
    run_module(vault_k8s_auth_probe.main, args(vault_args, audiences=["vault"]))
    assert kube.requests[0][2]["spec"] == {"expirationSeconds": 600, "audiences": ["vault"]}


def test_a_refused_login_is_reported_not_failed(kube, fake_vault, vault_args):
    fake_vault.on("POST", LOGIN, (403, {"errors": ["permission denied"]}))
    result = run_module(vault_k8s_auth_probe.main, args(vault_args))
    assert not result.get("failed") and result["login"] == "failed"
    assert "permission denied" in result["error"] and LOGIN in result["error"]
    assert fake_vault.sent("POST", "auth/token/revoke") == []
    assert_not_in_result(result, SA_JWT)


def test_a_missing_revoke_permission_is_not_an_error(kube, fake_vault, vault_args):
    fake_vault.on("POST", LOGIN, {"auth": {"client_token": CLIENT_TOKEN}})
    fake_vault.on("POST", "auth/token/revoke", (403, {"errors": ["permission denied"]}))
    result = run_module(vault_k8s_auth_probe.main, args(vault_args))
    assert result["login"] == "ok" and not result.get("failed")
    assert_not_in_result(result, CLIENT_TOKEN)


def test_check_mode_still_probes(kube, fake_vault, vault_args):
    # Documented: the probe changes nothing, so it logs in even in check mode.
    fake_vault.on("POST", LOGIN, {"auth": {}})
    result = run_module(vault_k8s_auth_probe.main, args(vault_args), check_mode=True)
    assert result["changed"] is False and result["login"] == "ok" and fake_vault.sent("POST", LOGIN)


def test_a_cluster_refusing_the_token_request_fails_with_its_reason(kube, fake_vault, vault_args):
    kube.answers[("POST", TOKEN_PATH)] = K8sModuleError(
        "Kubernetes refused to create a token for service account payments/app: serviceaccounts \"app\" not found",
        status=404)
    result = run_module(vault_k8s_auth_probe.main, args(vault_args))
    assert result["failed"] and 'serviceaccounts "app" not found' in result["msg"]
    assert fake_vault.writes() == []


def test_a_token_request_answer_without_a_token_fails_cleanly(kube, fake_vault, vault_args):
    kube.answers[("POST", TOKEN_PATH)] = {"status": {}}
    result = run_module(vault_k8s_auth_probe.main, args(vault_args))
    assert result["failed"] and "token" in result["msg"]


def test_no_cluster_connection_settings_is_explained(fake_vault, vault_args, monkeypatch, tmp_path):
    # The real client: no host, no kubeconfig (empty HOME) and not in a pod.
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = run_module(vault_k8s_auth_probe.main, dict(vault_args, mount="kubernetes-green", role="apps",
                                                        service_account="app"))
    assert result["failed"] and result["msg"].startswith("no Kubernetes connection: set kubeconfig (and context), "
                                                         "or host and api_key, or run inside a pod")
    assert fake_vault.writes() == []
