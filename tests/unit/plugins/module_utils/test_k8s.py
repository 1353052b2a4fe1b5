"""The Kubernetes connection layer's decisions, without a server."""

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _k8s


def test_connection_mode_order():
    exists = {"/k/config", "/home/x/.kube/config", _k8s.IN_CLUSTER_TOKEN}.__contains__
    assert _k8s.connection_mode({"host": "https://h", "kubeconfig": "/k/config"}, {}, exists) == ("host", None)
    assert _k8s.connection_mode({"kubeconfig": "/k/config"}, {}, exists) == ("kubeconfig", "/k/config")
    assert _k8s.connection_mode({"kubeconfig": {"clusters": []}}, {}, exists) == ("kubeconfig", {"clusters": []})
    assert _k8s.connection_mode({}, {"KUBECONFIG": "/missing:/k/config"}, exists) == ("kubeconfig", "/k/config")
    assert _k8s.connection_mode({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, {_k8s.IN_CLUSTER_TOKEN}.__contains__) \
        == ("incluster", None)


def test_connection_mode_errors():
    with pytest.raises(_k8s.K8sModuleError, match="kubeconfig /nope does not exist"):
        _k8s.connection_mode({"kubeconfig": "/nope"}, {}, lambda path: False)
    with pytest.raises(_k8s.K8sModuleError, match="no Kubernetes connection"):
        _k8s.connection_mode({}, {}, lambda path: False)


@pytest.mark.parametrize("method,status,expected", [
    ("GET", 500, True), ("POST", 500, False), ("POST", 429, True),
    ("POST", 503, True), ("PATCH", 502, True), ("GET", 404, False), ("DELETE", 409, False),
])
def test_should_retry(method, status, expected):
    assert _k8s.should_retry(method, status) is expected


def test_explain_statuses():
    body = '{"kind":"Status","message":"passkeys \\"x\\" not found","reason":"NotFound","code":404}'
    assert _k8s.explain(404, body, "read", "passkey x", "https://h") == (
        'passkey x not found (404): passkeys "x" not found')
    assert "401 Unauthorized" in _k8s.explain(401, "", "read", "x", "https://h")
    assert "RBAC" in _k8s.explain(403, '{"message":"forbidden"}', "delete", "passkey x", "https://h")
    assert "already exists" in _k8s.explain(409, '{"reason":"AlreadyExists","message":"m"}', "create", "x", "h")
    assert "changed by someone else" in _k8s.explain(409, '{"reason":"Conflict","message":"m"}', "update", "x", "h")
    assert "cannot reach" in _k8s.explain(0, "Connection refused", "read", "x", "https://h")
    assert "HTTP 500" in _k8s.explain(500, "not json", "read", "x", "h")


def test_resource_path():
    assert _k8s.resource_path("", "v1", "secrets", "ns", "s") == "/api/v1/namespaces/ns/secrets/s"
    assert _k8s.resource_path("vault.kio.kasten.io", "v1alpha1", "passkeys", name="p") == (
        "/apis/vault.kio.kasten.io/v1alpha1/passkeys/p")


def test_wait_for_times_out_and_returns_the_last_value():
    clock = iter(range(100)).__next__
    values = iter([1, 2, 3, 4, 5])
    ok, last = _k8s.wait_for(lambda: next(values), lambda v: v == 9, timeout=2, clock=clock, sleep=lambda s: None)
    assert ok is False and last == 2
    ok, last = _k8s.wait_for(lambda: 7, lambda v: v == 7, timeout=0, clock=clock, sleep=lambda s: None)
    assert ok is True and last == 7


class FakeApiException(Exception):
    def __init__(self, status, body=""):
        super().__init__(status)
        self.status, self.body = status, body


def test_request_retries_then_explains(monkeypatch):
    monkeypatch.setattr(_k8s, "ApiException", FakeApiException)
    calls = []

    class Api:
        configuration = type("C", (), {"host": "https://h"})()

        def call_api(self, path, method, **kwargs):
            calls.append(method)
            raise FakeApiException(503 if len(calls) < 3 else 404, '{"message":"gone","reason":"NotFound"}')

    client = _k8s.K8sClient(Api(), retries=3, sleep=lambda s: None)
    assert client.request("GET", "/x", missing_ok=True) is None and calls == ["GET"] * 3
    with pytest.raises(_k8s.K8sModuleError) as err:
        client.request("GET", "/x", what="thing")
    assert err.value.status == 404 and err.value.msg == "thing not found (404): gone"
