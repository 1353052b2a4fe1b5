"""Shared by the K10 rotation tests: k10_vault_setup on the lab (or a real) K10, rotate_keys.yml with K10 consumers."""

import base64
import os
import time
import uuid

import yaml

from _ansible import ROOT, ansible_playbook

ROTATE_KEYS = os.path.join(ROOT, "playbooks", "rotate_keys.yml")


class K10Rotation:
    def __init__(self, vault, vault_client, k10, tmp_path, ansible, mount):
        self.vault, self.client, self.k10, self.tmp_path, self.ansible = vault, vault_client, k10, tmp_path, ansible
        self.mount = mount
        self.key = "k10-" + uuid.uuid4().hex[:6]
        self.prefix = "vault-" + self.key
        self.token_file = tmp_path / "secrets" / "k10-vault-token"
        self.values_file = tmp_path / "secrets" / "k10-values.yaml"
        self.runs = 0

    def setup(self, **extra):
        role_vars = {"k10_vault_setup_mount": self.mount, "k10_vault_setup_key": self.key,
                     "k10_vault_setup_token_file": str(self.token_file),
                     "k10_vault_setup_helm_values_file": str(self.values_file),
                     "k10_vault_setup_kubeconfig": self.k10.kubeconfig_path,
                     "k10_vault_setup_context": "lab-source", "k10_vault_setup_passkey_timeout": 30,
                     "k10_vault_setup_delete_passkeys": ["k10-default-passphrase"]}
        role_vars.update(extra)
        return self.ansible([{"name": "setup", "ansible.builtin.include_role": {
            "name": "keyops.lifecycle.k10_vault_setup"}, "vars": role_vars}], verbosity=3, expect_rc=0)

    def app_secret(self, plaintexts):
        """An app keeping transit ciphertexts in a Secret (the k8s_secret consumer)."""
        data = {}
        for name, plain in plaintexts.items():
            ciphertext = self.client.secrets.transit.encrypt_data(
                self.key, base64.b64encode(plain.encode()).decode(), mount_point=self.mount)["data"]["ciphertext"]
            data[name] = base64.b64encode(ciphertext.encode()).decode()
        self.k10.custom("source")  # same cluster
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.k10.cluster("source").api_client())
        core.create_namespaced_secret("kasten-io", kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="app-keys"), data=data))
        return core

    def secret_plaintexts(self, core):
        data = core.read_namespaced_secret("app-keys", "kasten-io").data
        out = {}
        for name, value in data.items():
            ciphertext = base64.b64decode(value).decode()
            plain = self.client.secrets.transit.decrypt_data(self.key, ciphertext, mount_point=self.mount)
            out[name] = (ciphertext.split(":")[1], base64.b64decode(plain["data"]["plaintext"]).decode())
        return out

    def rotate(self, expect_rc=0):
        self.runs += 1
        consumer_conn = {"kubeconfig": self.k10.kubeconfig_path, "context": "lab-source"}
        rotation_vars = {"transit_rotation_keys": [{"name": self.key, "mount": self.mount, "consumers": [
            dict(consumer_conn, type="k10_passkey", passkey_prefix=self.prefix),
            dict(consumer_conn, type="k8s_secret", secret="app-keys", secret_namespace="kasten-io")]}],
            "transit_rotation_k10_timeout": 30}
        vars_path = self.tmp_path / ("rotation-%d.yml" % self.runs)
        vars_path.write_text(yaml.safe_dump(rotation_vars))
        inventory = self.tmp_path / "local.ini"
        inventory.write_text("localhost ansible_connection=local\n")
        return ansible_playbook(ROTATE_KEYS, self.tmp_path / ("run-%d.jsonl" % self.runs), env=self.vault.env,
                                args=["-e", "@%s" % vars_path, "-e", "rotation_report_dir=%s" % (
                                    self.tmp_path / "reports")], inventory=str(inventory), expect_rc=expect_rc)

    def transit_key(self):
        return self.client.secrets.transit.read_key(self.key, mount_point=self.mount)["data"]


def wait_until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
