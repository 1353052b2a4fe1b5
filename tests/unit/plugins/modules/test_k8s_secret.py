"""k8s_secret against an in-memory API server: only differing keys written, values never shown, conflicts seen."""

import base64

import pytest
from _fake_k8s import K8S_ARGS, TOKEN, fake_k8s, secret_path  # noqa: F401  - fake_k8s is a fixture  # pylint: disable=unused-import
from _module_runner import MASK, assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import k8s_secret

NS, NAME = "kasten-io", "vault-creds"
PATH = secret_path(NS, NAME)
VALUE = "hvs.k10-vault-token-value"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def args(**kwargs):
    return dict(K8S_ARGS, name=NAME, namespace=NS, **kwargs)


def seed(cluster, data, **extra):
    return cluster.seed(PATH, dict({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                    "data": dict((k, b64(v)) for k, v in data.items())}, **extra))


def test_argument_spec():
    spec = module_spec(k8s_secret.main)
    assert spec["name"]["required"] is True
    assert spec["state"]["choices"] == ["present", "absent"] and spec["state"]["default"] == "present"
    assert spec["namespace"]["default"] == "default" and spec["type"]["default"] == "Opaque"
    assert spec["exclusive"]["default"] is False
    assert no_log_options(spec) == {"api_key", "string_data"}


def test_create_writes_base64_values_and_reports_only_key_names(fake_k8s):
    cluster = fake_k8s.cluster()
    result = run_module(k8s_secret.main, args(string_data={"vault_token": VALUE}, labels={"app": "k10"}))
    assert result["changed"] is True and result["changed_keys"] == ["vault_token"]
    [(method, path, body)] = cluster.writes()
    assert (method, path) == ("POST", secret_path(NS))
    assert body["data"] == {"vault_token": b64(VALUE)} and body["metadata"]["labels"] == {"app": "k10"}
    assert result["secret"]["keys"] == ["vault_token"] and result["secret"]["resource_version"]
    assert "diff" not in result
    assert_not_in_result(result, VALUE, b64(VALUE), TOKEN)
    assert fake_k8s.bearer_tokens() == ["Bearer " + TOKEN]


def test_values_from_files_drop_the_trailing_newline_and_never_appear(fake_k8s, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(VALUE + "\n")
    cluster = fake_k8s.cluster()
    result = run_module(k8s_secret.main, args(data_files={"vault_token": str(token_file)}), diff=True)
    assert result["changed"] is True
    assert cluster.get(PATH)["data"] == {"vault_token": b64(VALUE)}
    # a file's content is not a no_log option value: only the module itself keeps it out of the result
    assert_not_in_result(result, VALUE, b64(VALUE))
    assert MASK not in str(result["diff"])


def test_same_values_change_nothing(fake_k8s):
    cluster = fake_k8s.cluster()
    seed(cluster, {"vault_token": VALUE, "other": "kept"})
    result = run_module(k8s_secret.main, args(string_data={"vault_token": VALUE}), diff=True)
    assert result["changed"] is False and result["changed_keys"] == []
    assert cluster.writes() == []
    assert result["diff"]["after"]["data"] == {"vault_token": "unchanged"}


def test_one_changed_key_is_put_with_the_resource_version_read(fake_k8s):
    cluster = fake_k8s.cluster()
    before = seed(cluster, {"vault_token": "old-token", "other": "kept"})
    result = run_module(k8s_secret.main, args(string_data={"vault_token": VALUE}), diff=True)
    assert result["changed"] is True and result["changed_keys"] == ["vault_token"]
    [(method, _path, body)] = cluster.writes()
    assert method == "PUT" and body["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert cluster.get(PATH)["data"] == {"vault_token": b64(VALUE), "other": b64("kept")}
    assert result["diff"]["before"]["data"] == "(hidden)"
    assert result["diff"]["after"]["data"] == {"vault_token": "changed"}
    assert_not_in_result(result, "old-token", b64("old-token"), b64(VALUE))


def test_exclusive_removes_keys_not_given(fake_k8s):
    cluster = fake_k8s.cluster()
    seed(cluster, {"vault_token": VALUE, "stale": "x"})
    result = run_module(k8s_secret.main, args(string_data={"vault_token": VALUE}, exclusive=True), diff=True)
    assert result["changed"] is True and result["changed_keys"] == ["stale"]
    assert sorted(cluster.get(PATH)["data"]) == ["vault_token"]
    assert result["diff"]["after"]["data"] == {"vault_token": "unchanged", "stale": "removed"}


@pytest.mark.parametrize("change", [{"labels": {"team": "backup"}}, {"type": "kubernetes.io/basic-auth"}])
def test_a_label_or_type_change_alone_is_a_change(fake_k8s, change):
    cluster = fake_k8s.cluster()
    seed(cluster, {"vault_token": VALUE})
    result = run_module(k8s_secret.main, args(string_data={"vault_token": VALUE}, **change))
    assert result["changed"] is True and result["changed_keys"] == []
    assert [c[0] for c in cluster.writes()] == ["PUT"]


def test_check_mode_reports_the_change_and_writes_nothing(fake_k8s):
    cluster = fake_k8s.cluster()
    result = run_module(k8s_secret.main, args(string_data={"vault_token": VALUE}), check_mode=True, diff=True)
    assert result["changed"] is True and result["changed_keys"] == ["vault_token"]
    assert cluster.writes() == [] and cluster.get(PATH) is None
    assert result["diff"] == {"before": {}, "after": dict(result["secret"], data={"vault_token": "changed"})}


def test_absent_deletes_and_is_idempotent(fake_k8s):
    cluster = fake_k8s.cluster()
    seed(cluster, {"vault_token": VALUE})
    checked = run_module(k8s_secret.main, args(state="absent"), check_mode=True)
    assert checked["changed"] is True and cluster.writes() == []
    result = run_module(k8s_secret.main, args(state="absent"), diff=True)
    assert result["changed"] is True and [c[:2] for c in cluster.writes()] == [("DELETE", PATH)]
    assert result["diff"]["before"]["keys"] == ["vault_token"] and result["diff"]["after"] == {}
    again = run_module(k8s_secret.main, args(state="absent"))
    assert again["changed"] is False and len(cluster.writes()) == 1


def test_unreadable_data_file_fails_with_key_and_path(fake_k8s, tmp_path):
    missing = str(tmp_path / "nope")
    result = run_module(k8s_secret.main, args(data_files={"vault_token": missing}))
    assert result["failed"] is True
    assert result["msg"].startswith("cannot read data_files[vault_token] %s: " % missing)
    assert fake_k8s.cluster().writes() == []


def test_a_concurrent_change_fails_instead_of_being_overwritten(fake_k8s):
    cluster = fake_k8s.cluster()
    seed(cluster, {"vault_token": "old"})
    cluster.fail("PUT", PATH, 409, "Conflict", "the object has been modified")
    result = run_module(k8s_secret.main, args(string_data={"vault_token": VALUE}))
    assert result["failed"] is True
    assert "changed by someone else" in result["msg"] and "run the task again" in result["msg"]
    assert cluster.get(PATH)["data"] == {"vault_token": b64("old")}


def test_forbidden_names_rbac(fake_k8s):
    fake_k8s.cluster().fail("GET", PATH, 403, "Forbidden", 'secrets "vault-creds" is forbidden')
    result = run_module(k8s_secret.main, args(string_data={"vault_token": VALUE}))
    assert result["failed"] is True
    assert result["msg"].startswith("not allowed to read secret kasten-io/vault-creds (403 Forbidden)")
    assert "RBAC" in result["msg"]


def test_unreachable_api_is_retried_then_explained(fake_k8s):
    fake_k8s.cluster().fail("GET", PATH, 0, times=5)
    result = run_module(k8s_secret.main, dict(args(string_data={"k": VALUE}), retries=2))
    assert result["failed"] is True
    assert result["msg"].startswith("cannot reach the Kubernetes API at %s" % K8S_ARGS["host"])
    assert len(fake_k8s.cluster().sent("GET")) == 3 and fake_k8s.sleeps == [0.5, 1.0]


@pytest.mark.parametrize("bad,text", [
    ({"request_timeout": 0}, "request_timeout must be at least 1 second"),
    ({"retries": -1}, "retries at least 0"),
    ({"api_key": "token with spaces"}, "api_key holds characters an HTTP Authorization header cannot carry"),
    ({"host": None, "api_key": None}, "no Kubernetes connection"),
    ({"host": None, "kubeconfig": "/nonexistent/kubeconfig"}, "kubeconfig /nonexistent/kubeconfig does not exist"),
])
def test_bad_connection_settings_fail_before_any_request(fake_k8s, bad, text):
    result = run_module(k8s_secret.main, dict(args(string_data={"k": VALUE}), **bad))
    assert result["failed"] is True and text in result["msg"]
    assert fake_k8s.cluster().calls == []
    assert_not_in_result(result, "token with spaces")


def test_bad_choice_is_refused_by_the_argument_spec(fake_k8s):
    result = run_module(k8s_secret.main, args(state="gone"))
    assert result["failed"] is True and "state" in result["msg"] and "present, absent" in result["msg"]


def test_tls_settings_reach_the_client_configuration(fake_k8s, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    result = run_module(k8s_secret.main, args(string_data={"k": VALUE}, ca_cert=str(ca), validate_certs=False))
    assert result["changed"] is True
    [configuration] = fake_k8s.configurations
    assert configuration.ssl_ca_cert == str(ca) and configuration.verify_ssl is False
    assert configuration.host == K8S_ARGS["host"]


@pytest.mark.parametrize("value", [None, {"nested": "dict"}])
def test_a_value_that_is_not_a_string_is_refused(fake_k8s, value):
    cluster = fake_k8s.cluster()
    result = run_module(k8s_secret.main, args(string_data={"vault_token": value}))
    assert cluster.writes() == []
    assert result["failed"] is True and "vault_token" in result["msg"]
