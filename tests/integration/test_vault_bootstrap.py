"""vault_mount, vault_policy, vault_token against real OpenBao."""

import os
import stat
import uuid

import hvac


def test_mount_enable_tune_diff_and_guarded_disable(ansible, vault_client):
    path = "t-" + uuid.uuid4().hex[:8]
    task = {"name": "mount", "keyops.lifecycle.vault_mount": {"path": path, "type": "transit",
                                                              "description": "K10", "config": {"max_lease_ttl": "2h"}}}
    check = ansible([task], check=True, expect_rc=0).task("mount")
    assert check["changed"] is True and path + "/" not in vault_client.sys.list_mounted_secrets_engines()["data"]
    assert ansible([task], expect_rc=0).task("mount")["changed"] is True
    mounts = vault_client.sys.list_mounted_secrets_engines()["data"]
    assert mounts[path + "/"]["type"] == "transit" and mounts[path + "/"]["config"]["max_lease_ttl"] == 7200
    assert ansible([task], expect_rc=0).task("mount")["changed"] is False

    tuned_args = dict(task["keyops.lifecycle.vault_mount"], description="K10 master key")
    tuned = {"name": "mount", "keyops.lifecycle.vault_mount": tuned_args}
    run = ansible([tuned], diff=True, expect_rc=0).task("mount")
    assert run["diff"]["before"]["description"] == "K10" and run["diff"]["after"]["description"] == "K10 master key"
    assert vault_client.sys.list_mounted_secrets_engines()["data"][path + "/"]["description"] == "K10 master key"

    retype = ansible([{"name": "mount", "keyops.lifecycle.vault_mount": {"path": path, "type": "kv"}}])
    assert "is a transit mount, not kv" in retype.task("mount")["msg"]
    refused = ansible([{"name": "mount", "keyops.lifecycle.vault_mount": {"path": path, "state": "absent"}}])
    assert "refusing to disable the transit secrets engine" in refused.task("mount")["msg"]
    assert path + "/" in vault_client.sys.list_mounted_secrets_engines()["data"]
    disable = {"path": path, "state": "absent", "allow_data_loss": True}
    gone = ansible([{"name": "mount", "keyops.lifecycle.vault_mount": disable}], expect_rc=0)
    assert gone.task("mount")["changed"] is True
    assert path + "/" not in vault_client.sys.list_mounted_secrets_engines()["data"]


def test_auth_mount(ansible, vault_client):
    path = "k8s-" + uuid.uuid4().hex[:8]
    task = {"name": "mount", "keyops.lifecycle.vault_mount": {"kind": "auth", "path": path, "type": "kubernetes"}}
    assert ansible([task], expect_rc=0).task("mount")["changed"] is True
    assert vault_client.sys.list_auth_methods()["data"][path + "/"]["type"] == "kubernetes"
    assert ansible([task], expect_rc=0).task("mount")["changed"] is False
    # Auth methods hold no secrets of their own: disabling needs no data-loss confirmation.
    ansible([{"name": "mount", "keyops.lifecycle.vault_mount": {"kind": "auth", "path": path, "state": "absent"}}],
            expect_rc=0)


def test_policy_diff_and_idempotence(ansible, vault_client):
    name = "kasten-" + uuid.uuid4().hex[:6]
    text = 'path "transit/encrypt/kasten" {\n  capabilities = ["update"]\n}\n'
    task = {"name": "policy", "keyops.lifecycle.vault_policy": {"name": name, "policy": text}}
    first = ansible([task], diff=True, expect_rc=0).task("policy")
    assert first["changed"] is True and first["diff"]["before"] == ""
    assert 'transit/encrypt/kasten' in vault_client.sys.read_policy(name)["data"]["rules"]
    assert ansible([dict(task, **{"keyops.lifecycle.vault_policy": {"name": name, "policy": text + "   \n"}})],
                   expect_rc=0).task("policy")["changed"] is False
    more = text + 'path "transit/decrypt/kasten" {\n  capabilities = ["update"]\n}\n'
    second = ansible([{"name": "policy", "keyops.lifecycle.vault_policy": {"name": name, "policy": more}}],
                     diff=True, expect_rc=0).task("policy")
    assert second["changed"] is True and "decrypt" in second["diff"]["after"] and "decrypt" not in second["diff"]["before"]
    refuse = ansible([{"name": "policy", "keyops.lifecycle.vault_policy": {"name": "default", "state": "absent"}}])
    assert "cannot be deleted" in refuse.task("policy")["msg"]
    ansible([{"name": "policy", "keyops.lifecycle.vault_policy": {"name": name, "state": "absent"}}], expect_rc=0)
    assert name not in vault_client.sys.list_policies()["data"]["policies"]


def test_token_file_private_idempotent_and_not_logged(ansible, vault, vault_client, tmp_path):
    name = "p-" + uuid.uuid4().hex[:6]
    vault_client.sys.create_or_update_policy(name=name, policy='path "sys/health" { capabilities = ["read"] }')
    token_file = tmp_path / "secrets" / "token"
    task = {"name": "token", "keyops.lifecycle.vault_token": {
        "policies": [name], "period": "24h", "orphan": True, "display_name": "kasten", "token_file": str(token_file)}}
    first = ansible([task], verbosity=3, expect_rc=0)
    result = first.task("token")
    token = token_file.read_text().strip()
    assert result["changed"] is True and "token" not in result and result["accessor"]
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert token not in first.output
    looked_up = hvac.Client(url=vault.address, token=token).auth.token.lookup_self()["data"]
    assert name in looked_up["policies"] and looked_up["orphan"] is True

    again = ansible([task], expect_rc=0).task("token")
    assert again["changed"] is False and token_file.read_text().strip() == token

    vault_client.auth.token.revoke(token)  # the file now holds a dead token: a new one is made
    renewed = ansible([task], expect_rc=0).task("token")
    assert renewed["changed"] is True and token_file.read_text().strip() != token
    nowhere = ansible([{"name": "token", "keyops.lifecycle.vault_token": {"policies": [name]}}])
    assert nowhere.rc != 0 and "set token_file (written 0600) or return_token" in nowhere.task("token")["msg"]
