"""the K10 transit-key rotation with K10: k10_vault_setup, then rotate_keys.yml with the k10_passkey and k8s_secret consumers.

The emulator must still unlock its primary key afterwards; the wrong order (min_decryption_version raised
before K10 switched passkeys) must break it; and the role must refuse that order when K10 cannot switch.
"""

import base64
import os
import stat
import time

import pytest
import yaml

from k10_helpers import K10Rotation, wait_until


@pytest.mark.compat
def test_three_step_rotation_with_k10_and_a_secret_consumer(vault, vault_client, transit_mount, k10, tmp_path, ansible):
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
