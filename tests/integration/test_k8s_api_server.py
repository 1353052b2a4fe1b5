"""The Kubernetes API contract the project relies on, checked through the official kubernetes client.

Runs against the lab API test server, or unchanged against a real cluster when KUBECONFIG is set
(the K10 custom-resource test then skips unless the K10 CRDs are installed).
"""

import base64
import json
import uuid

import kubernetes
import pytest
from kubernetes.client import ApiException, CoreV1Api, CustomObjectsApi, V1ObjectMeta, V1Secret
from kubernetes.dynamic import DynamicClient


def status_of(exc):
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["code"] == exc.status
    return body


def secret(name, labels=None, **data):
    return V1Secret(metadata=V1ObjectMeta(name=name, labels=labels or {}), string_data=data)


def test_discovery(kube):
    client = kube.api_client()
    version = kubernetes.client.VersionApi(client).get_code()
    assert version.major and version.minor
    dynamic = DynamicClient(client)
    secrets_api = dynamic.resources.get(api_version="v1", kind="Secret")
    assert secrets_api.namespaced is True and secrets_api.name == "secrets"
    assert "v1" in kubernetes.client.CoreApi(client).get_api_versions().versions


def test_secret_crud_conflicts_patches_and_status_bodies(kube, namespace):
    core = CoreV1Api(kube.api_client())
    created = core.create_namespaced_secret(namespace, secret("vault-creds", {"app": "k10"}, vault_token="abc"))
    assert base64.b64decode(created.data["vault_token"]) == b"abc"

    with pytest.raises(ApiException) as exists:
        core.create_namespaced_secret(namespace, secret("vault-creds", vault_token="x"))
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_secret("nope", namespace)
    body = status_of(missing.value)
    assert missing.value.status == 404 and body["reason"] == "NotFound" and body["details"]["name"] == "nope"

    current = core.read_namespaced_secret("vault-creds", namespace)
    stale = current.metadata.resource_version
    current.data["extra"] = base64.b64encode(b"1").decode()
    updated = core.replace_namespaced_secret("vault-creds", namespace, current)
    assert updated.metadata.resource_version != stale
    current.metadata.resource_version = stale
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_secret("vault-creds", namespace, current)
    assert conflict.value.status == 409 and status_of(conflict.value)["reason"] == "Conflict"

    merged = core.patch_namespaced_secret("vault-creds", namespace, {"metadata": {"labels": {"tier": "gold"}}})
    assert merged.metadata.labels == {"app": "k10", "tier": "gold"}
    secrets_api = DynamicClient(kube.api_client()).resources.get(api_version="v1", kind="Secret")
    patched = secrets_api.patch(name="vault-creds", namespace=namespace, content_type="application/json-patch+json",
                                body=[{"op": "remove", "path": "/metadata/labels/tier"}])
    assert dict(patched.metadata.labels) == {"app": "k10"}
    with pytest.raises(ApiException) as bad_patch:
        secrets_api.patch(name="vault-creds", namespace=namespace, content_type="application/json-patch+json",
                          body=[{"op": "remove", "path": "/metadata/labels/absent"}])
    assert bad_patch.value.status == 422

    core.create_namespaced_secret(namespace, secret("other", {"app": "web"}, k="v"))
    assert [s.metadata.name for s in core.list_namespaced_secret(namespace, label_selector="app=k10").items] == [
        "vault-creds"]
    assert [s.metadata.name for s in core.list_namespaced_secret(namespace, label_selector="app in (web)").items] \
        == ["other"]
    core.delete_namespaced_secret("vault-creds", namespace)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_secret("vault-creds", namespace)
    assert gone.value.status == 404


def test_unauthenticated_and_missing_namespace(kube):
    with pytest.raises(ApiException) as unauthorized:
        CoreV1Api(kube.api_client(token="not-a-valid-token")).list_namespace()
    assert unauthorized.value.status == 401
    with pytest.raises(ApiException) as missing:
        CoreV1Api(kube.api_client()).create_namespaced_config_map(
            "no-such-namespace-" + uuid.uuid4().hex[:6],
            kubernetes.client.V1ConfigMap(metadata=V1ObjectMeta(name="x"), data={"a": "b"}))
    assert missing.value.status == 404 and status_of(missing.value)["details"]["kind"] == "namespaces"


def test_k10_custom_resources(kube, namespace):
    if not kube.has_group("vault.kio.kasten.io"):
        pytest.skip("the K10 CRDs are not installed in this cluster")
    custom = CustomObjectsApi(kube.api_client())
    name = "vault-key-" + uuid.uuid4().hex[:6]
    body = {"apiVersion": "vault.kio.kasten.io/v1alpha1", "kind": "Passkey", "metadata": {"name": name},
            "spec": {"vaulttransitkeyname": "kasten", "vaulttransitpath": "transit", "usenow": True}}
    created = custom.create_cluster_custom_object("vault.kio.kasten.io", "v1alpha1", "passkeys", body)
    assert created["metadata"]["name"] == name and created["metadata"]["resourceVersion"]
    got = custom.get_cluster_custom_object("vault.kio.kasten.io", "v1alpha1", "passkeys", name)
    assert got["spec"]["vaulttransitkeyname"] == "kasten"
    custom.delete_cluster_custom_object("vault.kio.kasten.io", "v1alpha1", "passkeys", name)
    with pytest.raises(ApiException) as gone:
        custom.get_cluster_custom_object("vault.kio.kasten.io", "v1alpha1", "passkeys", name)
    assert gone.value.status == 404

    policy = {"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy", "metadata": {"name": "import"},
              "spec": {"actions": [{"action": "import", "importParameters": {"receiveString": "old"}}]}}
    custom.create_namespaced_custom_object("config.kio.kasten.io", "v1alpha1", namespace, "policies", policy)
    patched = custom.patch_namespaced_custom_object(
        "config.kio.kasten.io", "v1alpha1", namespace, "policies", "import",
        {"spec": {"actions": [{"action": "import", "importParameters": {"receiveString": "new"}}]}})
    assert patched["spec"]["actions"][0]["importParameters"]["receiveString"] == "new"
    assert patched["metadata"]["generation"] == 2


def test_watch_is_refused_with_a_documented_status(kube, namespace):
    if kube.lab is None:
        pytest.skip("real clusters serve watches; the polling contract is the lab server's")
    with pytest.raises(ApiException) as refused:
        CoreV1Api(kube.api_client()).list_namespaced_secret(namespace, watch=True)
    assert refused.value.status == 405 and "poll with list" in status_of(refused.value)["message"]


def test_service_account_tokens_and_token_review(kube, namespace):
    """TokenRequest issues a JWT; TokenReview accepts it, and rejects a deleted account, a wrong audience, junk."""
    core = CoreV1Api(kube.api_client())
    core.create_namespaced_service_account(namespace, kubernetes.client.V1ServiceAccount(
        metadata=V1ObjectMeta(name="app")))
    request = kubernetes.client.AuthenticationV1TokenRequest(
        spec=kubernetes.client.V1TokenRequestSpec(audiences=["vault"], expiration_seconds=600))
    token = core.create_namespaced_service_account_token("app", namespace, request).status.token
    auth = kubernetes.client.AuthenticationV1Api(kube.api_client())

    def review(value, audiences=None):
        body = kubernetes.client.V1TokenReview(spec=kubernetes.client.V1TokenReviewSpec(token=value,
                                                                                        audiences=audiences))
        return auth.create_token_review(body).status

    ok = review(token, ["vault"])
    assert ok.authenticated is True and ok.user.username == "system:serviceaccount:%s:app" % namespace
    assert review(token, ["someone-else"]).authenticated is not True
    assert review("not-a-jwt").authenticated is not True
    if kube.lab is not None:  # on a real cluster RBAC decides what the account may read
        # The token itself authenticates API calls, as on a real cluster.
        assert CoreV1Api(kube.api_client(token=token)).read_namespaced_service_account("app", namespace)
    core.delete_namespaced_service_account("app", namespace)
    assert review(token, ["vault"]).authenticated is not True
