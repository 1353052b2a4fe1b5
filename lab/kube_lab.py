"""Lab Kubernetes clusters: one or more API test servers, each optionally running the K10 emulator.

Used in-process by the test fixtures and, through ``python -m lab serve-kube``, by ``python -m lab up k8s k10``.
Every cluster gets its own admin token and its own service-account signing key; one kubeconfig names them
all (contexts ``lab-<cluster>``).  With K10, the source cluster carries an export policy and the destination
an import policy holding the source's current migration string, and ``vault-creds`` holds the token K10
uses for Vault.
"""

import base64
import json
import os
import secrets
import signal
import sys
import threading
import time

import yaml

from lab import _process, k8s_api
from lab.k10 import NAMESPACE, K10Emulator
from lab.tls import make_ca_and_server_cert

EXPORT_POLICY = "lab-export"
IMPORT_POLICY = "lab-import"
PROFILE = {"name": "lab-object-store", "namespace": NAMESPACE}


def export_policy(name=EXPORT_POLICY):
    return {"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy", "metadata": {"name": name},
            "spec": {"frequency": "@hourly", "selector": {},
                     "actions": [{"action": "backup"},
                                 {"action": "export", "exportParameters": {"profile": dict(PROFILE)}}]}}


def import_policy(receive_string, name=IMPORT_POLICY):
    return {"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy", "metadata": {"name": name},
            "spec": {"frequency": "@yearly", "selector": {},
                     "actions": [{"action": "import", "importParameters": {"profile": dict(PROFILE),
                                                                           "receiveString": receive_string}},
                                 {"action": "restore", "restoreParameters": {}}]}}


class KubeLab:
    def __init__(self, workdir, clusters=("source", "destination"), k10=True, k10_version=7, vault_address=None,
                 vault_token=None, kms=None, refresh_seconds=1.0):
        self.workdir = _process.private_dir(workdir)
        self.cluster_names = list(clusters)
        self.k10 = k10
        self.k10_version = k10_version
        self.vault_address, self.vault_token, self.kms = vault_address, vault_token, kms
        self.refresh_seconds = refresh_seconds
        self.object_store = _process.private_dir(os.path.join(self.workdir, "object-store"))
        self.servers, self.emulators, self.tokens = {}, {}, {}
        self.kubeconfig_path = os.path.join(self.workdir, "kubeconfig")

    def context(self, cluster):
        return "lab-" + cluster

    def start(self):
        tls = make_ca_and_server_cert(os.path.join(self.workdir, "tls"))
        try:
            for cluster in self.cluster_names:
                token = "lab-admin-" + secrets.token_hex(16)
                _process.register_secret("kube_admin_token", token)
                server = k8s_api.KubeApiServer(tls, [token], name=cluster).start()
                self.servers[cluster], self.tokens[cluster] = server, token
                if self.k10:
                    self.emulators[cluster] = K10Emulator(
                        server.state, self.object_store, version=self.k10_version, vault_address=self.vault_address,
                        kms=self.kms, cluster_name=cluster, refresh_seconds=self.refresh_seconds).start()
            config = k8s_api.kubeconfig({self.context(c): (self.servers[c], self.tokens[c])
                                         for c in self.cluster_names}, self.context(self.cluster_names[0]))
            _process.write_private(self.kubeconfig_path, yaml.safe_dump(config))
            if self.k10:
                self._k10_setup()
        except BaseException:
            self.stop()
            raise
        return self

    def _k10_setup(self):
        for cluster, server in self.servers.items():
            store, state = server.state.store, server.state
            if self.vault_token:
                store.create(state.resource("", "secrets"), NAMESPACE, {
                    "metadata": {"name": "vault-creds"}, "stringData": {"vault_token": self.vault_token}})
        if {"source", "destination"} <= set(self.servers):
            source = self.servers["source"].state
            source.store.create(source.resource("config.kio.kasten.io", "policies"), NAMESPACE, export_policy())
            receive = self.emulators["source"].migration_string()
            destination = self.servers["destination"].state
            destination.store.create(destination.resource("config.kio.kasten.io", "policies"), NAMESPACE,
                                     import_policy(receive))

    def stop(self):
        for emulator in self.emulators.values():
            emulator.stop()
        for server in self.servers.values():
            server.stop()

    def describe(self):
        return {"kubeconfig": self.kubeconfig_path, "object_store": self.object_store,
                "clusters": {c: {"address": s.address, "context": self.context(c)} for c, s in self.servers.items()},
                "k10_version": self.k10_version if self.k10 else None}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def lab_operation(kubeconfig_path, context, operation, body=None):
    """POST /lab/<operation> on the cluster ``context`` names (the lab's admin token from the kubeconfig)."""
    import requests  # pylint: disable=import-outside-toplevel

    with open(kubeconfig_path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    ctx = next((c["context"] for c in config["contexts"] if c["name"] == context), None)
    if ctx is None:
        raise KeyError("no context %s in %s" % (context, kubeconfig_path))
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
    ca_path = kubeconfig_path + "." + context + ".ca"
    _process.write_private(ca_path, base64.b64decode(cluster["certificate-authority-data"]).decode())
    response = requests.post(cluster["server"] + "/lab/" + operation, json=body or {}, verify=ca_path,
                             headers={"Authorization": "Bearer " + user["token"]}, timeout=60)
    payload = response.json()
    if response.status_code != 200:
        raise RuntimeError(payload.get("message", response.text))
    return payload


def serve(args):
    """``python -m lab serve-kube``: run a KubeLab until SIGTERM; describe it in ``<workdir>/kube.json``."""
    kms = json.loads(args.kms) if args.kms else None
    lab = KubeLab(args.workdir, k10=args.k10, k10_version=args.k10_version, vault_address=args.vault_address,
                  vault_token=os.environ.get("LAB_VAULT_TOKEN"), kms=kms).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    _process.write_private(os.path.join(args.workdir, "kube.json"), json.dumps(lab.describe()))
    print("lab kube: serving %s" % ", ".join(lab.servers), flush=True)
    while not stop.wait(1):
        pass
    lab.stop()
    return 0


def wait_described(workdir, proc, timeout=30.0):
    path = os.path.join(workdir, "kube.json")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        if proc.poll() is not None:
            raise RuntimeError("lab kube server exited")
        time.sleep(0.1)
    raise RuntimeError("lab kube server did not start")


def spawn_args(workdir, k10, k10_version, vault_address, kms):
    argv = [sys.executable, "-m", "lab", "serve-kube", "--workdir", workdir, "--k10-version", str(k10_version)]
    if k10:
        argv.append("--k10")
    if vault_address:
        argv += ["--vault-address", vault_address]
    if kms:
        argv += ["--kms", json.dumps(kms)]
    return argv
