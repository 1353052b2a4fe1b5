"""rotate_keys.yml as an AWX job: ansible-runner, credentials injected as extensions/awx/credential_types define.

The job gets its Vault and Kubernetes access only from the credentials; it must succeed, publish its report
through set_stats (what AWX shows as the job's artifacts) and leave no secret in the event stream or artifacts.
"""

import uuid

import pytest
import yaml

from awx_helpers import CREDENTIAL_ENV_PREFIXES, AwxJob, VaultAt
from k10_helpers import K10Rotation
from lab import seed
from rotation_helpers import Rotation
from test_vault_k8s_auth import clusters, configure, service_account_token, vault_in  # noqa: F401 pylint: disable=unused-import

PLAYBOOK = "playbooks/rotate_keys.yml"


@pytest.fixture()
def job_env(monkeypatch):
    """No Vault / Kubernetes variables from the test process: the job must take them from its credentials."""
    import os

    for name in list(os.environ):
        if name.startswith(CREDENTIAL_ENV_PREFIXES):
            monkeypatch.delenv(name)


def approle_for(client, mount):
    """An AppRole that may rotate and rewrap the keys of ``mount`` (what the job template's credential holds)."""
    approle = "approle-" + uuid.uuid4().hex[:6]
    client.sys.enable_auth_method("approle", path=approle)
    policy = "rotate-" + mount
    client.sys.create_or_update_policy(policy, 'path "%s/*" { capabilities = ["create", "read", "update", "list"] }'
                                       % mount)
    client.write("auth/%s/role/rotation" % approle, token_policies=[policy], token_ttl="15m")
    role_id = client.read("auth/%s/role/rotation/role-id" % approle)["data"]["role_id"]
    secret_id = client.write("auth/%s/role/rotation/secret-id" % approle)["data"]["secret_id"]
    return approle, role_id, secret_id


def file_secrets(rotation):
    return [value for name, (per_version, _field) in rotation.keys.items()
            for value in seed.expected_plaintexts(name, per_version)]


def test_weekly_rotation_job_with_approle_and_kubeconfig_credentials(
        vault, vault_client, transit_mount, k10, tmp_path, ansible, job_env):
    # The estate: a key with a file consumer, and K10's key with its passkey and an app's Secret.
    files = Rotation(vault, transit_mount, tmp_path / "files", {"awx-files": ([4, 3], "secret")})
    k10_rotation = K10Rotation(vault, vault_client, k10, tmp_path, ansible, transit_mount)
    k10_rotation.setup()
    core = k10_rotation.app_secret({"db": "awx-postgres-dek", "cache": "awx-redis-dek"})
    keys = files.rotation_vars["transit_rotation_keys"] + [{
        "name": k10_rotation.key, "mount": transit_mount, "consumers": [
            {"type": "k10_passkey", "passkey_prefix": k10_rotation.prefix},
            {"type": "k8s_secret", "secret": "app-keys", "secret_namespace": "kasten-io"}]}]

    approle, role_id, secret_id = approle_for(vault_client, transit_mount)
    with open(k10.kubeconfig_path) as handle:
        kubeconfig = handle.read()
    kube_tokens = [user["user"]["token"] for user in yaml.safe_load(kubeconfig)["users"] if "token" in user["user"]]

    job = AwxJob(tmp_path / "awx-job", PLAYBOOK)
    job.add_credential("vault_approle", {"url": vault.address, "role_id": role_id, "secret_id": secret_id,
                                         "mount_point": approle})
    job.add_credential("kubeconfig", {"kubeconfig": kubeconfig, "context": "lab-source"})
    result = job.run(extra_vars={"transit_rotation_keys": keys, "transit_rotation_k10_timeout": 30,
                                 "rotation_report_dir": str(tmp_path / "reports")}, verbosity=3)

    assert (result.status, result.rc) == ("successful", 0), result.stdout[-4000:]
    # set_stats: the report AWX keeps with the job.
    report = dict((entry["name"], entry) for entry in result.set_stats()["rotation_report"])
    assert set(report) == {"awx-files", k10_rotation.key}
    for entry in report.values():
        assert entry["version_after"] == entry["version_before"] + 1 == entry["min_decryption_version_after"], entry
    files.check_complete()
    assert k10_rotation.secret_plaintexts(core) == {"db": ("v2", "awx-postgres-dek"), "cache": ("v2", "awx-redis-dek")}
    assert set(k10.passkeys()) == {k10_rotation.prefix + "-v2"}
    # Nothing secret in what AWX stores: events, stdout, status, command line.
    secrets = [secret_id, vault.token, "awx-postgres-dek", "awx-redis-dek"] + kube_tokens + file_secrets(files)
    assert result.leaks(secrets) == []
    assert len(list(result.events())) > 20  # the scan read a real event stream


def test_daily_job_with_a_token_credential_and_blank_optional_inputs(vault, vault_client, transit_mount, tmp_path,
                                                                     job_env):
    """Blank inputs (namespace, CA) render as empty variables in AWX: they must mean "unset"."""
    files = Rotation(vault, transit_mount, tmp_path / "files", {"awx-token": ([2], "secret")})
    token = vault_client.auth.token.create(policies=["root"], ttl="15m")["auth"]["client_token"]
    job = AwxJob(tmp_path / "awx-job", PLAYBOOK)
    job.add_credential("vault_token", {"url": vault.address, "token": token})
    assert job.env["VAULT_NAMESPACE"] == "" and job.env["VAULT_CACERT"] == ""
    result = job.run(extra_vars=dict(files.rotation_vars, rotation_report_dir=str(tmp_path / "reports")))
    assert (result.status, result.rc) == ("successful", 0), result.stdout[-4000:]
    assert [entry["name"] for entry in result.set_stats()["rotation_report"]] == ["awx-token"]
    files.check_complete()
    assert result.leaks([token, vault.token] + file_secrets(files)) == []


def test_a_job_without_credentials_fails_clearly(tmp_path, job_env):
    job = AwxJob(tmp_path / "awx-job", PLAYBOOK)
    result = job.run(extra_vars={"transit_rotation_keys": [{"name": "k", "mount": "transit", "consumers": []}]})
    assert result.status == "failed"
    assert "no Vault address" in result.stdout and "Traceback" not in result.stdout


def test_job_with_the_vault_kubernetes_role_credential(ansible, tmp_path, job_env, clusters):
    """The job logs in to OpenBao with Kubernetes auth (the cross-cluster Kubernetes auth break's setup: OpenBao in blue, the job's
    service account in green), the JWT injected as a file by the credential type."""
    with vault_in(clusters, "green", tmp_path) as server:
        admin = VaultAt(server.address, server.token)
        client = admin.client()
        client.sys.enable_secrets_engine("transit", path="transit")
        client.sys.create_or_update_policy("rotate", 'path "transit/*" { capabilities = ["create", "read", "update", '
                                                     '"list"] }')
        mount = "kubernetes-awx"
        configure(ansible, server, clusters, mount)
        client.write("auth/%s/role/apps" % mount, bound_service_account_names=["app"],
                     bound_service_account_namespaces=["payments"], token_policies=["rotate"], token_ttl=600)
        files = Rotation(admin, "transit", tmp_path / "files", {"awx-k8s": ([3], "secret")})
        jwt = service_account_token(clusters.servers["green"], "payments", "app")

        job = AwxJob(tmp_path / "awx-job", PLAYBOOK)
        job.add_credential("vault_kubernetes", {"url": server.address, "role": "apps", "mount_point": mount,
                                                "jwt": jwt})
        result = job.run(extra_vars=dict(files.rotation_vars, rotation_report_dir=str(tmp_path / "reports")),
                         verbosity=3)
        assert (result.status, result.rc) == ("successful", 0), result.stdout[-4000:]
        assert [entry["name"] for entry in result.set_stats()["rotation_report"]] == ["awx-k8s"]
        files.check_complete()
        assert result.leaks([jwt, server.token] + file_secrets(files)) == []
