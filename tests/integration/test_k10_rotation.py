"""Seed 001 with K10: k10_vault_setup, then rotate_keys.yml with the k10_passkey and k8s_secret consumers.

The emulator must still unlock its primary key afterwards; the wrong order (min_decryption_version raised
before K10 switched passkeys) must break it; and the role must refuse that order when K10 cannot switch.
"""

import base64
import os
import stat
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


def test_seed_001_rotation_with_k10_and_a_secret_consumer(vault, vault_client, transit_mount, k10, tmp_path, ansible):
    rotation = K10Rotation(vault, vault_client, k10, tmp_path, ansible, transit_mount)
    first = rotation.setup()
    assert first.changed_count >= 6
    # What the role left behind: least-privilege token in vault-creds, 0600 files, the passkey in use.
    token = rotation.token_file.read_text().strip()
    assert stat.S_IMODE(os.stat(rotation.token_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(rotation.token_file.parent).st_mode) == 0o700
    assert token not in first.output
    lookup = vault_client.auth.token.lookup(token)["data"]
    assert lookup["policies"] == ["k10-" + rotation.key]
    import kubernetes

    core = kubernetes.client.CoreV1Api(k10.cluster("source").api_client())
    creds = core.read_namespaced_secret("vault-creds", "kasten-io").data["vault_token"]
    assert base64.b64decode(creds).decode() == token
    values = {"vault": {"address": vault.address, "secretName": "vault-creds"}}
    assert yaml.safe_load(rotation.values_file.read_text()) == values
    passkeys = k10.passkeys()
    assert set(passkeys) == {rotation.prefix + "-v1"} and passkeys[rotation.prefix + "-v1"]["status"]["inuse"]
    assert rotation.setup().changed_count == 0  # idempotent

    core = rotation.app_secret({"db": "postgres-dek", "cache": "redis-dek"})
    run = rotation.rotate(expect_rc=0)
    report = {entry["name"]: entry for entry in yaml.safe_load(
        (tmp_path / "reports" / "rotation-report.json").read_text())}[rotation.key]
    assert (report["version_before"], report["version_after"]) == (1, 2)
    assert (report["min_decryption_version_before"], report["min_decryption_version_after"]) == (1, 2)
    consumers = {c["type"]: c for c in report["consumers"]}
    assert consumers["k10_passkey"]["census_before"] == {"1": 1} and consumers["k10_passkey"]["census_after"] == {
        "2": 1}
    assert consumers["k8s_secret"]["census_before"] == {"1": 2} and consumers["k8s_secret"]["census_after"] == {
        "2": 2}
    assert "changed=0" not in run.stdout
    passkeys = k10.passkeys()
    assert set(passkeys) == {rotation.prefix + "-v2"}
    assert passkeys[rotation.prefix + "-v2"]["metadata"]["annotations"]["keyops.io/transit-key-version"] == "2"
    # The point of it all: K10 still decrypts its primary key, now through version 2 only.
    time.sleep(1)  # two refresh cycles of the emulator against the raised min_decryption_version
    assert k10.operation("source", "check")["primary_key"] == "unlocked"
    assert not passkeys[rotation.prefix + "-v2"]["status"].get("error")
    assert rotation.secret_plaintexts(core) == {"db": ("v2", "postgres-dek"), "cache": ("v2", "redis-dek")}


def test_wrong_order_breaks_k10_and_the_role_refuses_it(vault, vault_client, transit_mount, k10, tmp_path, ansible):
    rotation = K10Rotation(vault, vault_client, k10, tmp_path, ansible, transit_mount)
    rotation.setup()
    rotation.app_secret({"db": "dek"})
    old = rotation.prefix + "-v1"

    # 1. The wrong order by hand: rotate, raise min_decryption_version, and only then try to switch passkeys.
    vault_client.secrets.transit.rotate_key(rotation.key, mount_point=transit_mount)
    vault_client.secrets.transit.update_key_configuration(rotation.key, min_decryption_version=2,
                                                          mount_point=transit_mount)
    wait_until(lambda: k10.passkeys()[old]["status"].get("error"))
    assert "disallowed by policy" in k10.passkeys()[old]["status"]["error"]
    assert k10.operation("source", "check")["primary_key"] == "locked"
    switch = ansible([{"name": "switch", "keyops.lifecycle.k10_passkey": {
        "name": rotation.prefix + "-v2", "vault_transit_key_name": rotation.key, "vault_transit_path": transit_mount,
        "usenow": True, "timeout": 20, "kubeconfig": k10.kubeconfig_path, "context": "lab-source"}}])
    assert switch.rc != 0 and "cannot decrypt the primary key" in switch.task("switch")["msg"]
    # Undo (possible only because nothing was trimmed) so the role can be shown doing it right.
    vault_client.secrets.transit.update_key_configuration(rotation.key, min_decryption_version=1,
                                                          mount_point=transit_mount)
    wait_until(lambda: not k10.passkeys()[old]["status"].get("error"))
    ansible([{"name": "drop", "keyops.lifecycle.k10_passkey": {
        "name": rotation.prefix + "-v2", "state": "absent", "kubeconfig": k10.kubeconfig_path,
        "context": "lab-source"}}], expect_rc=0)

    # 2. The role when K10 cannot switch (its token may decrypt but no longer encrypt): min version stays.
    policy = "k10-" + rotation.key
    vault_client.sys.create_or_update_policy(policy, 'path "%s/decrypt/%s" { capabilities = ["update"] }'
                                             % (transit_mount, rotation.key))
    blocked = rotation.rotate(expect_rc=2)
    assert "min_decryption_version was not raised" in blocked.output and "k10_passkey:lab-source" in blocked.output
    key = rotation.transit_key()
    assert key["latest_version"] == 3 and key["min_decryption_version"] == 1
    assert k10.operation("source", "check")["primary_key"] == "unlocked"
    assert old in k10.passkeys()

    # 3. Fixed token, re-run: the job completes from where it stopped.
    rotation.setup()  # puts the least-privilege policy back
    rotation.rotate(expect_rc=0)
    key = rotation.transit_key()
    assert key["min_decryption_version"] == 4 and set(k10.passkeys()) == {rotation.prefix + "-v4"}
    time.sleep(1)
    assert k10.operation("source", "check")["primary_key"] == "unlocked"
