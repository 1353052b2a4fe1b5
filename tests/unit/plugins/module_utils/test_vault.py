"""The Vault connection layer with a fake HTTP adapter: retry policy and error explanations."""

import pytest
import requests

from ansible_collections.keyops.lifecycle.plugins.module_utils import _retry, _vault
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultConnection,
    VaultModuleError,
    VaultMountMissingError,
    VaultSealedError,
    explain_failure,
)


class FakeResponse:
    def __init__(self, status, body=None):
        self.status_code = status
        self._body = body
        self.content = b"" if body is None else b"x"
        self.text = "" if body is None else str(body)

    def json(self):
        if self._body is None:
            raise ValueError("no body")
        return self._body


class FakeAdapter:
    """Answers queued responses (or raises queued exceptions) and records each request."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def request(self, method, url, raise_exception=True, **kwargs):
        self.sent.append((method, url))
        if url.endswith("lookup-self"):
            return FakeResponse(200, {"data": {}})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def connection(answers, retries=3):
    sleeps = []
    conn = VaultConnection("http://127.0.0.1:8200", token="t", retries=retries, sleep=sleeps.append)
    conn.client.adapter = FakeAdapter(answers)
    return conn, sleeps


def test_backoff_is_exponential_and_capped():
    assert _retry.backoff_delays(5, first=0.5, cap=4) == [0.5, 1.0, 2.0, 4, 4]
    assert _retry.backoff_delays(0) == []


@pytest.mark.parametrize("status", [412, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status):
    conn, sleeps = connection([FakeResponse(status, {"errors": ["busy"]}), FakeResponse(200, {"data": {"x": 1}})])
    assert conn.read("transit/keys/k") == {"x": 1}
    assert sleeps == [0.5]


def test_retries_run_out_with_a_clear_message():
    conn, sleeps = connection([FakeResponse(502, {"errors": ["bad gateway"]})] * 3, retries=2)
    with pytest.raises(VaultModuleError, match=r"Vault refused GET transit/keys/k \(HTTP 502\): bad gateway"):
        conn.read("transit/keys/k")
    assert sleeps == [0.5, 1.0]


def test_sealed_is_not_retried():
    conn, sleeps = connection([FakeResponse(503, {"errors": ["Vault is sealed"]})])
    with pytest.raises(VaultSealedError, match="is sealed"):
        conn.write("transit/keys/k/rotate", {}, idempotent=False)
    assert sleeps == []


def test_non_idempotent_call_is_not_resent_after_an_answer():
    conn, sleeps = connection([FakeResponse(500, {"errors": ["internal"]})])
    with pytest.raises(VaultModuleError) as info:
        conn.write("transit/keys/k/rotate", {}, idempotent=False)
    assert info.value.status == 500 and sleeps == [] and len(conn.client.adapter.sent) == 1


def test_refused_connection_is_retried_even_for_rotate():
    refused = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    conn, sleeps = connection([refused, FakeResponse(204)])
    assert conn.write("transit/keys/k/rotate", {}, idempotent=False) == {}
    assert sleeps == [0.5]


def test_missing_key_vs_missing_mount():
    conn = connection([FakeResponse(404, {"errors": []})])[0]
    assert conn.read("transit/keys/nope") is None
    conn = connection([FakeResponse(404, {"errors": ['no handler for route "x/keys/k". route entry not found.']})])[0]
    with pytest.raises(VaultMountMissingError, match="nothing is mounted at 'x/'"):
        conn.read("x/keys/k")


def test_permission_denied_names_path_and_capability():
    msg = explain_failure(403, "POST", "transit/keys/k/rotate", "permission denied", "http://v", "update")
    assert "permission denied on POST transit/keys/k/rotate" in msg
    assert "'update' capability" in msg and 'path "transit/keys/k/rotate"' in msg


@pytest.mark.parametrize("kwargs, text", [
    (dict(url=None, token="t"), "no Vault address"),
    (dict(url="vault:8200", token="t"), "must start with http"),
    (dict(url="http://v", token=None), "no Vault token"),
    (dict(url="http://v", token="t", timeout=0), "`timeout` must be a positive"),
    (dict(url="http://v", auth_method="approle", role_id="r"), "needs `role_id` and `secret_id`"),
    (dict(url="http://v", auth_method="kubernetes"), "needs `kubernetes_role`"),
    (dict(url="http://v", auth_method="kubernetes", kubernetes_role="r", kubernetes_jwt_file="/nonexistent"),
     "cannot read the service account token"),
    (dict(url="https://v", token="t", ca_cert="/nonexistent/ca.pem"), "is not a readable file"),
])
def test_bad_connection_options(kwargs, text):
    with pytest.raises(VaultModuleError, match=text):
        VaultConnection(**kwargs)


def test_skip_verify_env(monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_SKIP_VERIFY", "true")
    assert VaultConnection("https://v", token="t").client.adapter._kwargs["verify"] is False
    monkeypatch.delenv("VAULT_SKIP_VERIFY")
    assert VaultConnection("https://v", token="t").client.adapter._kwargs["verify"] is True


def test_ca_bundle_variables_replace_only_the_default_verify():
    environ = {"REQUESTS_CA_BUNDLE": "/r.pem", "CURL_CA_BUNDLE": "/c.pem"}
    assert _vault.environment_verify(True, environ) == "/r.pem"
    assert _vault.environment_verify(True, {"CURL_CA_BUNDLE": "/c.pem"}) == "/c.pem"
    assert _vault.environment_verify("/mine.pem", environ) == "/mine.pem"  # ca_cert wins
    assert _vault.environment_verify(False, environ) is False  # validate_certs: false stays off
    assert _vault.environment_verify(True, {"REQUESTS_CA_BUNDLE": ""}) is True


def test_the_environment_is_read_once_unless_proxies_are_set(monkeypatch):
    for name in _vault._REQUESTS_PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/bundle.pem")
    monkeypatch.delenv("VAULT_SKIP_VERIFY", raising=False)
    plain = VaultConnection("https://v", token="t")
    assert plain.client.adapter._kwargs["verify"] == "/bundle.pem"
    assert plain.client.adapter.session.trust_env is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    proxied = VaultConnection("https://v", token="t")
    assert proxied.client.adapter.session.trust_env is True  # requests resolves proxies (and no_proxy) per request
    assert proxied.client.adapter._kwargs["verify"] is True


def test_every_secret_option_is_no_log():
    for name in ("token", "secret_id"):
        assert _vault.VAULT_CONNECTION_ARGSPEC[name]["no_log"] is True
