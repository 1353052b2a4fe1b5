"""the cross-cluster Kubernetes auth break for real: OpenBao "in" cluster blue, applications in cluster green, Kubernetes auth between them.

OpenBao runs in its own mount namespace where blue's service-account token and CA sit at the paths the
kubernetes auth plugin reads (lab.openbao.in_pod); blue and green are two lab Kubernetes API servers.
"""

import os
import time
import uuid

import hvac
import pytest

from lab import k8s_api
from lab.kube_lab import KubeLab
from lab.openbao import OpenBaoDevServer


def service_account_token(server, namespace, name, audiences=None, seconds=3600):
    state = server.state
    namespaces = state.resource("", "namespaces")
    try:
        state.store.create(namespaces, None, {"metadata": {"name": namespace}})
    except k8s_api.ApiError:
        pass
    try:
        state.store.create(state.resource("", "serviceaccounts"), namespace, {"metadata": {"name": name}})
    except k8s_api.ApiError:
        pass
    return state.issue_token(namespace, name, audiences, seconds)[0]


@pytest.fixture()
def clusters(tmp_path):
    import os

    if os.geteuid() != 0:
        pytest.skip("OpenBao's pod view of the service-account paths needs a mount namespace (root)")
    with KubeLab(str(tmp_path / "kube"), clusters=("blue", "green"), k10=False) as lab:
        with open(os.path.join(lab.workdir, "tls", "ca.crt")) as handle:
            lab.ca_pem = handle.read()
        yield lab


def vault_in(lab, cluster, tmp_path):
    """An OpenBao dev server whose pod identity is a service account of ``cluster``."""
    identity = {"token": service_account_token(lab.servers[cluster], "vault", "vault", seconds=86400),
                "ca": lab.ca_pem}
    return OpenBaoDevServer(str(tmp_path / ("bao-in-" + cluster)), pod_identity=identity)


def configure(ansible, server, lab, mount, **config):
    env = {"VAULT_ADDR": server.address, "VAULT_TOKEN": server.token}
    tasks = [{"name": "auth", "keyops.lifecycle.vault_k8s_auth": dict(
        {"mount": mount, "kubernetes_host": lab.servers["green"].address, "kubernetes_ca_cert": lab.ca_pem},
        **config)},
        {"name": "role", "keyops.lifecycle.vault_k8s_auth_role": {
            "mount": mount, "name": "apps", "bound_service_account_names": ["app"],
            "bound_service_account_namespaces": ["payments"], "token_policies": ["default"], "token_ttl": "10m"}}]
    return ansible(tasks, env=env, diff=True, expect_rc=0)


def green_login(server, lab, mount):
    jwt = service_account_token(lab.servers["green"], "payments", "app", seconds=600)
    client = hvac.Client(url=server.address)
    try:
        return client.auth.kubernetes.login(role="apps", jwt=jwt, mount_point=mount)["auth"]["client_token"], None
    except hvac.exceptions.VaultError as exc:
        return None, exc


def wait_for_review(clusters, code, caller, timeout=5):
    """A TokenReview answered ``code`` for ``caller`` in green's request log (written just after the answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["path"].endswith("/tokenreviews") and r["code"] == code and caller in r["caller"]
               for r in clusters.servers["green"].state.requests):
            return True
        time.sleep(0.05)
    return False


def test_cross_cluster_login_after_an_upgrade_breaks_without_reviewer_jwt(ansible, clusters, tmp_path):
    with vault_in(clusters, "blue", tmp_path) as server:
        mount = "kubernetes-green-" + uuid.uuid4().hex[:6]
        first = configure(ansible, server, clusters, mount)
        assert first.task("auth")["config"]["token_reviewer_jwt_set"] is False
        assert first.task("auth")["config"]["disable_local_ca_jwt"] is False
        token, error = green_login(server, clusters, mount)
        # OpenBao: 403 permission denied, nothing more for the pod - exactly what operators saw after the upgrade
        assert token is None and isinstance(error, hvac.exceptions.Forbidden), error
        # ...because green's TokenReview API saw blue's service-account token and refused it
        assert wait_for_review(clusters, 401, "system:serviceaccount:vault:vault")

        fixed = configure(ansible, server, clusters, mount, disable_local_ca_jwt=True)
        assert fixed.task("auth")["changed"] is True
        assert fixed.task("auth")["diff"]["after"]["disable_local_ca_jwt"] is True
        token, error = green_login(server, clusters, mount)
        assert token and error is None
        assert wait_for_review(clusters, 201, "system:serviceaccount:payments:app")
        assert configure(ansible, server, clusters, mount, disable_local_ca_jwt=True).task("auth")["changed"] is False


def test_same_cluster_works_which_is_why_a_sandbox_never_sees_it(ansible, clusters, tmp_path):
    with vault_in(clusters, "green", tmp_path) as server:
        mount = "kubernetes-" + uuid.uuid4().hex[:6]
        configure(ansible, server, clusters, mount)
        token, error = green_login(server, clusters, mount)
        assert token and error is None, error


def test_reviewer_jwt_is_never_shown_and_only_reported_as_set(ansible, clusters, tmp_path):
    with vault_in(clusters, "blue", tmp_path) as server:
        mount = "kubernetes-green-" + uuid.uuid4().hex[:6]
        reviewer = service_account_token(clusters.servers["green"], "kube-system", "vault-reviewer", seconds=86400)
        run = configure(ansible, server, clusters, mount, token_reviewer_jwt=reviewer)
        assert run.task("auth")["config"]["token_reviewer_jwt_set"] is True and reviewer not in run.output
        token, error = green_login(server, clusters, mount)
        assert token and error is None, error
        again = configure(ansible, server, clusters, mount, token_reviewer_jwt=reviewer)
        assert again.task("auth")["changed"] is False  # Vault cannot say whether it differs: not rewritten
        # the reviewer token lives one day: flagged when the warning horizon is a week
        info = ansible([{"name": "info", "keyops.lifecycle.vault_k8s_auth_info": {
            "mounts": [mount], "reviewer_jwts": {mount: reviewer}}}],
            env={"VAULT_ADDR": server.address, "VAULT_TOKEN": server.token}, verbosity=3, expect_rc=0)
        (entry,) = info.task("info")["mounts"]
        assert entry["status"] == "at risk" and "expires in" in entry["reasons"][0] and reviewer not in info.output


def preflight(ansible, server, clusters, mount, fix, cluster_host=None, expect_rc=None):
    service_account_token(clusters.servers["green"], "payments", "app")  # the probe's test account exists
    probe = {"mount": mount, "role": "apps", "service_account": "app", "service_account_namespace": "payments",
             "kubeconfig": clusters.kubeconfig_path, "context": "lab-green"}
    role_vars = {"vault_upgrade_preflight_probes": [probe], "vault_upgrade_preflight_fix": fix}
    if cluster_host:
        role_vars["vault_upgrade_preflight_cluster_host"] = cluster_host
    tasks = [{"name": "preflight", "ansible.builtin.include_role": {"name": "keyops.lifecycle.vault_upgrade_preflight"},
              "vars": role_vars},
             {"name": "report", "ansible.builtin.debug": {"var": "vault_upgrade_preflight_k8s_auth"}}]
    return ansible(tasks, env={"VAULT_ADDR": server.address, "VAULT_TOKEN": server.token}, expect_rc=expect_rc)


def test_preflight_flags_proves_and_fixes(ansible, clusters, tmp_path):
    with vault_in(clusters, "blue", tmp_path) as server:
        mount = "kubernetes-green-" + uuid.uuid4().hex[:6]
        configure(ansible, server, clusters, mount)
        blue = clusters.servers["blue"].address
        # without a login: the configuration alone says it depends on the fallback
        info = ansible([{"name": "info", "keyops.lifecycle.vault_k8s_auth_info": {"vault_cluster_host": blue}}],
                       env={"VAULT_ADDR": server.address, "VAULT_TOKEN": server.token}, expect_rc=0).task("info")
        (entry,) = [m for m in info["mounts"] if m["mount"] == mount]
        assert entry["status"] == "at risk" and entry["fix"] == {"disable_local_ca_jwt": True}

        flagged = preflight(ansible, server, clusters, mount, fix=False, cluster_host=blue)
        assert flagged.rc != 0, flagged.output
        assert "is broken" in flagged.output and "a real login failed" in flagged.output, flagged.output
        fixed = preflight(ansible, server, clusters, mount, fix=True, cluster_host=blue, expect_rc=0)
        (report,) = [m for m in fixed.task("report")["vault_upgrade_preflight_k8s_auth"] if m["mount"] == mount]
        assert report["status"] == "ok" and report["probed"] is True
        token, error = green_login(server, clusters, mount)
        assert token and error is None


def test_preflight_same_cluster_is_ok(ansible, clusters, tmp_path):
    with vault_in(clusters, "green", tmp_path) as server:
        mount = "kubernetes-" + uuid.uuid4().hex[:6]
        configure(ansible, server, clusters, mount)
        run = preflight(ansible, server, clusters, mount, fix=False, cluster_host=clusters.servers["green"].address,
                        expect_rc=0)
        (report,) = [m for m in run.task("report")["vault_upgrade_preflight_k8s_auth"] if m["mount"] == mount]
        assert report["status"] == "ok"


def test_collection_modules_log_in_with_kubernetes_auth(ansible, clusters, tmp_path, vault_client=None):
    """auth_method: kubernetes in the collection's own client - what an AWX job in a cluster uses."""
    with vault_in(clusters, "green", tmp_path) as server:
        mount = "kubernetes-" + uuid.uuid4().hex[:6]
        admin = hvac.Client(url=server.address, token=server.token)
        admin.sys.create_or_update_policy("read-auth", 'path "sys/auth" { capabilities = ["read"] }\n'
                                                       'path "auth/+/config" { capabilities = ["read"] }\n'
                                                       'path "sys/health" { capabilities = ["read"] }')
        configure(ansible, server, clusters, mount)
        admin.write("auth/%s/role/apps" % mount, bound_service_account_names=["app"],
                    bound_service_account_namespaces=["payments"], token_policies=["read-auth"], token_ttl=600)
        jwt_file = tmp_path / "pod-token"
        jwt_file.write_text(service_account_token(clusters.servers["green"], "payments", "app"))
        os.chmod(str(jwt_file), 0o600)
        task = {"name": "info", "keyops.lifecycle.vault_k8s_auth_info": {
            "auth_method": "kubernetes", "auth_mount_point": mount, "kubernetes_role": "apps",
            "kubernetes_jwt_file": str(jwt_file)}}
        run = ansible([task], env={"VAULT_ADDR": server.address, "VAULT_TOKEN": ""}, verbosity=3, expect_rc=0)
        assert mount in [m["mount"] for m in run.task("info")["mounts"]]
        assert jwt_file.read_text() not in run.output
        wrong = dict(task["keyops.lifecycle.vault_k8s_auth_info"], kubernetes_role="nope")
        refused = ansible([{"name": "info", "keyops.lifecycle.vault_k8s_auth_info": wrong}],
                          env={"VAULT_ADDR": server.address, "VAULT_TOKEN": ""})
        assert refused.rc != 0 and "kubernetes" in refused.task("info")["msg"]


def test_check_mode_changes_nothing(ansible, clusters, tmp_path):
    with vault_in(clusters, "blue", tmp_path) as server:
        mount = "kubernetes-check-" + uuid.uuid4().hex[:6]
        env = {"VAULT_ADDR": server.address, "VAULT_TOKEN": server.token}
        task = {"name": "auth", "keyops.lifecycle.vault_k8s_auth": {
            "mount": mount, "kubernetes_host": clusters.servers["green"].address,
            "kubernetes_ca_cert": clusters.ca_pem, "disable_local_ca_jwt": True}}
        check = ansible([task], env=env, check=True, diff=True, expect_rc=0).task("auth")
        assert check["changed"] is True and check["actions"][0] == "enable kubernetes auth at %s" % mount
        assert mount + "/" not in hvac.Client(url=server.address, token=server.token).sys.list_auth_methods()["data"]
        assert ansible([task], env=env, expect_rc=0).task("auth")["changed"] is True
        assert ansible([task], env=env, check=True, expect_rc=0).task("auth")["changed"] is False
