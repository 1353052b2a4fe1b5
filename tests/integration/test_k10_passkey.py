"""k10_passkey, k10_passkey_info and k8s_secret against the K10 emulator (both status shapes) and real OpenBao."""

import uuid

import boto3
import pytest

PASSKEYS = ("vault.kio.kasten.io", "v1alpha1", "passkeys")


@pytest.fixture()
def transit_key(vault_client, transit_mount):
    name = "k10-" + uuid.uuid4().hex[:6]
    vault_client.secrets.transit.create_key(name, mount_point=transit_mount)
    return transit_mount, name


def passkey_task(task_name, **args):
    return {"name": task_name, "keyops.lifecycle.k10_passkey": dict(args, timeout=30)}


def test_vault_passkey_lifecycle_both_shapes(ansible, k10_any, transit_key):
    mount, key = transit_key
    env = k10_any.env("source")
    create = passkey_task("create", name="vault-k10-v1", vault_transit_key_name=key, vault_transit_path="/" + mount,
                          usenow=True, transit_key_version=1)

    check = ansible([create], env=env, check=True, diff=True, expect_rc=0).task("create")
    assert check["changed"] is True and check["actions"] == ["create passkey vault-k10-v1"]
    assert check["diff"]["after"]["spec"]["vaulttransitkeyname"] == key
    assert "vault-k10-v1" not in k10_any.passkeys()

    done = ansible([create], env=env, expect_rc=0).task("create")
    assert done["changed"] is True and done["passkey"]["valid"] is True
    assert done["passkey"]["shape"] == k10_any.version and done["passkey"]["transit_key_version"] == 1
    if k10_any.version == 7:
        assert done["passkey"]["in_use"] is True
        assert k10_any.passkeys()["k10-default-passphrase"]["status"]["inuse"] is False
    assert ansible([create], env=env, expect_rc=0).task("create")["changed"] is False

    info = ansible([{"name": "info", "keyops.lifecycle.k10_passkey_info": {}}], env=env, expect_rc=0).task("info")
    assert set(info["valid"]) == {"k10-default-passphrase", "vault-k10-v1"}
    assert info["in_use"] == ("vault-k10-v1" if k10_any.version == 7 else None)

    drop_default = passkey_task("drop", name="k10-default-passphrase", state="absent")
    assert ansible([drop_default], env=env, expect_rc=0).task("drop")["changed"] is True
    assert ansible([drop_default], env=env, expect_rc=0).task("drop")["changed"] is False

    refused = ansible([passkey_task("drop", name="vault-k10-v1", state="absent")], env=env)
    expected = "is the one K10 uses now" if k10_any.version == 7 else "is the last valid passkey"
    assert refused.rc != 0 and expected in refused.task("drop")["msg"]
    assert "vault-k10-v1" in k10_any.passkeys()
    assert k10_any.operation("source", "check")["primary_key"] == "unlocked"


def test_spec_change_is_refused_then_replaced_safely(ansible, k10, transit_key, vault_client):
    mount, key = transit_key
    other = "other-" + uuid.uuid4().hex[:6]
    vault_client.secrets.transit.create_key(other, mount_point=mount)
    env = k10.env("source")
    ansible([passkey_task("create", name="vault-k10", vault_transit_key_name=key, vault_transit_path=mount,
                          usenow=True)], env=env, expect_rc=0)
    moved = passkey_task("move", name="vault-k10", vault_transit_key_name=other, vault_transit_path=mount,
                         usenow=True)
    refused = ansible([moved], env=env)
    msg = refused.task("move")["msg"]
    assert refused.rc != 0 and "cannot be changed" in msg and "replace: true" in msg and "vaulttransitkeyname" in msg

    moved["keyops.lifecycle.k10_passkey"]["replace"] = True
    replaced = ansible([moved], env=env, diff=True, expect_rc=0).task("move")
    assert replaced["actions"] == ["create passkey vault-k10-keyops-replace", "delete passkey vault-k10",
                                   "create passkey vault-k10", "delete passkey vault-k10-keyops-replace"]
    assert replaced["diff"]["before"]["spec"]["vaulttransitkeyname"] == key
    passkeys = k10.passkeys()
    assert passkeys["vault-k10"]["spec"]["vaulttransitkeyname"] == other
    assert passkeys["vault-k10"]["status"]["inuse"] is True and "vault-k10-keyops-replace" not in passkeys
    assert k10.operation("source", "check")["primary_key"] == "unlocked"


def test_aws_cmk_and_passphrase_passkeys(ansible, k10_any, kms):
    namespace = "kasten-io"
    env = k10_any.env("source")
    cmk = kms.create_key("k10")
    aws = ansible([passkey_task("aws", name="aws-cmk", aws_cmk_key_id=cmk)], env=env, expect_rc=0).task("aws")
    assert aws["passkey"]["keytype"] == "awscmk" and aws["passkey"]["valid"] is True

    secret = {"name": "secret", "keyops.lifecycle.k8s_secret": {
        "name": "k10-passphrase", "namespace": namespace, "string_data": {"passphrase": "correct horse battery"}}}
    first = ansible([secret], env=env, diff=True, expect_rc=0)
    assert first.task("secret")["changed"] is True and first.task("secret")["diff"]["after"]["data"] == {
        "passphrase": "changed"}
    assert "correct horse battery" not in first.output
    assert ansible([secret], env=env, expect_rc=0).task("secret")["changed"] is False

    phrase = ansible([passkey_task("phrase", name="passphrase-2", passphrase_secret={
        "name": "k10-passphrase", "namespace": namespace})], env=env, expect_rc=0).task("phrase")
    assert phrase["passkey"]["keytype"] == "passphrase" and phrase["passkey"]["valid"] is True
    # The emulator really used KMS: moto saw an Encrypt with that key.
    assert boto3.client("kms", endpoint_url=kms.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing").describe_key(KeyId=cmk)["KeyMetadata"]["Enabled"]


def test_k10_failure_reason_and_recovery(ansible, k10, vault_client):
    """A passkey K10 cannot use fails with K10's reason; once the cause is fixed a re-run recreates it."""
    mount = "not-yet-" + uuid.uuid4().hex[:6]
    task = passkey_task("create", name="vault-missing", vault_transit_key_name="k10", vault_transit_path=mount,
                        usenow=True)
    failed = ansible([task], env=k10.env("source"))
    msg = failed.task("create")["msg"]
    assert failed.rc != 0 and "K10 could not use passkey vault-missing" in msg and "vault:" in msg
    vault_client.sys.enable_secrets_engine("transit", path=mount)
    try:
        fixed = ansible([task], env=k10.env("source"), expect_rc=0).task("create")
        assert fixed["actions"] == ["delete passkey vault-missing", "create passkey vault-missing"]
        assert fixed["passkey"]["in_use"] is True
    finally:
        vault_client.sys.disable_secrets_engine(mount)


def test_api_errors_are_explained(ansible, k10):
    env = dict(k10.env("source"), K8S_AUTH_API_KEY="not-a-valid-token")
    unauthorized = ansible([{"name": "info", "keyops.lifecycle.k10_passkey_info": {}}], env=env)
    assert unauthorized.rc != 0 and "401 Unauthorized" in unauthorized.task("info")["msg"]
    assert "not-a-valid-token" not in unauthorized.output

    missing_ctx = ansible([{"name": "info", "keyops.lifecycle.k10_passkey_info": {"context": "no-such-context"}}],
                          env=k10.env("source"))
    assert missing_ctx.rc != 0 and "no-such-context" in missing_ctx.task("info")["msg"]

    no_kubeconfig = ansible([{"name": "info", "keyops.lifecycle.k10_passkey_info": {
        "kubeconfig": "/nonexistent/kubeconfig"}}])
    assert "kubeconfig /nonexistent/kubeconfig does not exist" in no_kubeconfig.task("info")["msg"]

    both = ansible([passkey_task("both", name="x", aws_cmk_key_id="a", vault_transit_key_name="b")],
                   env=k10.env("source"))
    assert both.rc != 0 and "mutually exclusive" in both.task("both")["msg"]


def test_secret_conflict_is_reported(k10):
    namespace = "kasten-io"
    """409 on a stale resourceVersion comes back explained, through the module layer."""
    from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import K8sClient, K8sModuleError

    client = K8sClient.from_params({"kubeconfig": k10.kubeconfig_path, "context": "lab-source"})
    path = "/api/v1/namespaces/%s/secrets" % namespace
    client.request("POST", path, body={"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    current = client.request("GET", path + "/s")
    client.request("PUT", path + "/s", body=current)
    with pytest.raises(K8sModuleError) as conflict:
        client.request("PUT", path + "/s", body=current, what="secret s")
    assert conflict.value.status == 409 and "changed by someone else" in conflict.value.msg
    with pytest.raises(K8sModuleError) as exists:
        client.request("POST", path, body={"metadata": {"name": "s"}}, what="secret s")
    assert exists.value.status == 409 and "already exists" in exists.value.msg
    assert client.request("GET", path + "/nope", missing_ok=True) is None
