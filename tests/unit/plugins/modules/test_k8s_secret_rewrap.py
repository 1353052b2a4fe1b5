"""k8s_secret_rewrap against an in-memory API server and a fake Vault: stale data keys rewrapped, written back with
the resourceVersion read, census before and after, ciphertexts never shown."""

import base64

import pytest
from _fake_k8s import HOST, TOKEN, fake_k8s, secret_path  # noqa: F401  # pylint: disable=unused-import
from _module_runner import assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import k8s_secret_rewrap

NS, NAME = "payments", "app-wrapped-keys"
PATH = secret_path(NS, NAME)
OLD, CURRENT = "vault:v1:QUFBQWFhYWE=", "vault:v3:QkJCQmJiYmI="
KEY_PATH, REWRAP_PATH = "transit/keys/app", "transit/rewrap/app"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def rewrap_answer(body):
    """Vault's rewrap: every item to v3, except a ciphertext marked bad."""
    results = []
    for item in body["batch_input"]:
        if "QkFE" in item["ciphertext"]:
            results.append({"error": "cipher: message authentication failed"})
        else:
            results.append({"ciphertext": "vault:v3:" + item["ciphertext"].split(":", 2)[2][::-1]})
    return {"data": {"batch_results": results}}


@pytest.fixture
def vault(fake_vault):
    return fake_vault.on("GET", KEY_PATH, {"data": {"latest_version": 3, "derived": False}}).on(
        "POST", REWRAP_PATH, rewrap_answer)


@pytest.fixture
def cluster(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.seed(PATH, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "data": {"old": b64(OLD), "current": b64(CURRENT), "plain": b64("not a ciphertext")}})
    return cluster


@pytest.fixture
def args(vault_args):
    return dict(vault_args, host=HOST, api_key=TOKEN, name="app", secret=NAME, secret_namespace=NS)


def test_argument_spec():
    spec = module_spec(k8s_secret_rewrap.main)
    assert spec["name"]["required"] is True and spec["secret"]["required"] is True
    assert spec["mount"]["default"] == "transit" and spec["secret_namespace"]["default"] == "default"
    assert no_log_options(spec) == {"token", "secret_id", "api_key"}


def test_stale_keys_are_rewrapped_and_written_back_with_the_resource_version(vault, cluster, args):
    read = cluster.get(PATH)
    result = run_module(k8s_secret_rewrap.main, args)
    assert result["changed"] is True and result["rewrapped"] == 1 and result["latest_version"] == 3
    assert result["census_before"] == {"1": 1, "3": 1} and result["census_after"] == {"3": 2}
    assert result["oldest_version_in_use"] == 3
    assert vault.sent("POST", REWRAP_PATH) == [("POST", REWRAP_PATH, {"batch_input": [{"ciphertext": OLD}]})]
    [(method, path, body)] = cluster.writes()
    assert (method, path) == ("PUT", PATH)
    assert body["metadata"]["resourceVersion"] == read["metadata"]["resourceVersion"]
    data = cluster.get(PATH)["data"]
    assert base64.b64decode(data["old"]).decode() == "vault:v3:" + OLD.split(":", 2)[2][::-1]
    assert data["current"] == b64(CURRENT) and data["plain"] == b64("not a ciphertext")
    assert_not_in_result(result, OLD, CURRENT, b64(OLD), TOKEN, args["token"])


def test_everything_at_the_latest_version_changes_nothing(vault, fake_k8s, args):
    cluster = fake_k8s.cluster()
    cluster.seed(PATH, {"data": {"current": b64(CURRENT)}})
    result = run_module(k8s_secret_rewrap.main, args)
    assert result["changed"] is False and result["rewrapped"] == 0
    assert result["census_before"] == result["census_after"] == {"3": 1}
    assert cluster.writes() == [] and vault.sent("POST") == []


def test_check_mode_counts_and_writes_nothing(vault, cluster, args):
    result = run_module(k8s_secret_rewrap.main, args, check_mode=True)
    assert result["changed"] is True and result["rewrapped"] == 1
    assert result["census_before"] == {"1": 1, "3": 1}
    assert cluster.writes() == [] and vault.writes() == []


def test_check_mode_census_after_is_the_census_before_as_documented(vault, cluster, args):
    result = run_module(k8s_secret_rewrap.main, args, check_mode=True)
    assert result["census_after"] == result["census_before"] and result["oldest_version_in_use"] == 1


def test_named_data_keys_only(vault, cluster, args):
    result = run_module(k8s_secret_rewrap.main, dict(args, data_keys=["current"]))
    assert result["changed"] is False and result["census_before"] == {"3": 1} and cluster.writes() == []


@pytest.mark.parametrize("data_keys,text", [
    (["plain"], "data key 'plain' of the Secret is not a Vault transit ciphertext (expected vault:v<N>:...)"),
    (["missing"], "the Secret has no data key 'missing' (data_keys names the keys holding ciphertext)"),
])
def test_bad_data_keys_fail_before_anything_is_written(vault, cluster, args, data_keys, text):
    result = run_module(k8s_secret_rewrap.main, dict(args, data_keys=data_keys))
    assert result["failed"] is True and result["msg"] == text
    assert cluster.writes() == [] and vault.writes() == []


def test_a_missing_transit_key(fake_vault, cluster, args):
    result = run_module(k8s_secret_rewrap.main, args)
    assert result["failed"] is True and result["msg"] == "transit key 'app' does not exist in mount 'transit'"
    assert cluster.writes() == []


def test_a_ciphertext_vault_cannot_rewrap_leaves_the_secret_alone(vault, cluster, args):
    data = cluster.get(PATH)["data"]
    data["bad"] = b64("vault:v2:QkFEQkFE")
    cluster.seed(PATH, dict(cluster.get(PATH), data=data))
    result = run_module(k8s_secret_rewrap.main, args)
    assert result["failed"] is True
    assert result["msg"] == ("Vault could not rewrap data key 'bad' of secret payments/app-wrapped-keys: "
                             "cipher: message authentication failed")
    assert cluster.writes() == []
    assert_not_in_result(result, "vault:v2:QkFEQkFE")


def test_a_concurrent_change_of_the_secret_is_not_overwritten(vault, cluster, args):
    cluster.fail("PUT", PATH, 409, "Conflict", "the object has been modified")
    result = run_module(k8s_secret_rewrap.main, args)
    assert result["failed"] is True and "changed by someone else while this ran" in result["msg"]
    assert cluster.get(PATH)["data"]["old"] == b64(OLD)


def test_a_missing_secret_is_named(vault, fake_k8s, args):
    result = run_module(k8s_secret_rewrap.main, args)
    assert result["failed"] is True
    assert result["msg"].startswith("secret payments/app-wrapped-keys not found (404)")


def test_no_vault_address_fails_before_kubernetes_is_asked(fake_vault, cluster, args):
    del args["url"]
    result = run_module(k8s_secret_rewrap.main, args)
    assert result["failed"] is True and result["msg"].startswith("no Vault address")
    assert cluster.calls == [] and fake_vault.requests == []


def test_no_kubernetes_connection_is_explained(vault, fake_k8s, args):
    del args["host"], args["api_key"]
    result = run_module(k8s_secret_rewrap.main, args)
    assert result["failed"] is True and result["msg"].startswith("no Kubernetes connection")
    assert vault.writes() == []


def test_the_kubernetes_ca_is_not_vaults(vault, cluster, args, fake_k8s, tmp_path):
    kube_ca, vault_ca = tmp_path / "kube-ca.pem", tmp_path / "vault-ca.pem"
    kube_ca.write_text("kube")
    vault_ca.write_text("vault")
    result = run_module(k8s_secret_rewrap.main, dict(args, kube_ca_cert=str(kube_ca), ca_cert=str(vault_ca),
                                                     kube_validate_certs=True))
    assert result["changed"] is True
    [configuration] = fake_k8s.configurations
    assert configuration.ssl_ca_cert == str(kube_ca) and configuration.verify_ssl is True
