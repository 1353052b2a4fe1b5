"""`python -m lab up/status/down` as people and `make demo` use it."""

import os
import re
import stat
import subprocess
import sys

import hvac

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lab(*args, lab_dir):
    env = dict(os.environ, LAB_DIR=str(lab_dir))
    return subprocess.run([sys.executable, "-m", "lab"] + list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_up_status_down(tmp_path):
    lab_dir = tmp_path / "lab"
    up = lab("up", "vault", lab_dir=lab_dir)
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.M))
        assert set(exports) == {"VAULT_ADDR", "VAULT_TOKEN"}
        assert exports["VAULT_ADDR"].startswith("http://127.0.0.1:")
        client = hvac.Client(url=exports["VAULT_ADDR"], token=exports["VAULT_TOKEN"])
        assert client.is_authenticated() and not client.sys.is_sealed()
        # State holds the lab token: private directory and file.
        assert stat.S_IMODE(os.stat(lab_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(lab_dir / "state.json").st_mode) == 0o600
        # A second `up` reuses the running server.
        assert lab("up", "vault", lab_dir=lab_dir).stdout == up.stdout
        status = lab("status", lab_dir=lab_dir)
        assert status.returncode == 0 and re.search(r"^vault\s+up\s", status.stdout, re.M)
    finally:
        down = lab("down", lab_dir=lab_dir)
    assert down.returncode == 0 and "stopped vault" in down.stdout
    assert "nothing running" in lab("status", lab_dir=lab_dir).stdout
    try:
        client.sys.read_health_status(method="GET")
        reachable = True
    except Exception:  # pylint: disable=broad-except
        reachable = False
    assert not reachable


def test_up_k10_two_clusters_and_k10_operations(tmp_path):
    import json

    import kubernetes

    lab_dir = tmp_path / "lab"
    up = lab("up", "vault", "kms", "k8s", "k10", "--k10-version", "8", lab_dir=lab_dir)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.M))
        assert {"VAULT_ADDR", "VAULT_TOKEN", "KUBECONFIG", "AWS_ENDPOINT_URL_KMS"} <= set(exports)
        kubeconfig = exports["KUBECONFIG"].strip("'")
        assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600

        def custom(context):
            return kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(
                config_file=kubeconfig, context=context))

        source, destination = custom("lab-source"), custom("lab-destination")
        passkeys = source.list_cluster_custom_object("vault.kio.kasten.io", "v1alpha1", "passkeys")["items"]
        assert [p["status"]["valid"] for p in passkeys] == [True]  # the 8.x shape
        export = source.get_namespaced_custom_object("config.kio.kasten.io", "v1alpha1", "kasten-io", "policies",
                                                     "lab-export")
        before = export["spec"]["actions"][1]["exportParameters"]["receiveString"]
        imported = destination.get_namespaced_custom_object("config.kio.kasten.io", "v1alpha1", "kasten-io",
                                                            "policies", "lab-import")
        assert imported["spec"]["actions"][0]["importParameters"]["receiveString"] == before

        upgraded = lab("k10", "upgrade", "--context", "lab-source", lab_dir=lab_dir)
        assert upgraded.returncode == 0 and json.loads(upgraded.stdout) == {"epoch": 2}
        exported = lab("k10", "export", "--context", "lab-source", "--policy", "lab-export", lab_dir=lab_dir)
        assert json.loads(exported.stdout)["epoch"] == 2
        reinstalled = lab("k10", "reinstall", "--context", "lab-source", "--no-dr", lab_dir=lab_dir)
        assert json.loads(reinstalled.stdout) == {"reinstalled": True}
        bad = lab("k10", "upgrade", "--context", "no-such-context", lab_dir=lab_dir)
        assert bad.returncode == 1 and "no-such-context" in bad.stderr
    finally:
        down = lab("down", lab_dir=lab_dir)
    assert down.returncode == 0 and "stopped k8s" in down.stdout
