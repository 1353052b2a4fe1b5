"""k10_import_policy against two in-memory API servers (source and destination): the migration string copied with
a guarded JSON patch, the import run and diagnosed, the string never shown."""

import pytest
from _fake_k8s import (HOST, K8S_ARGS, TOKEN, fake_k8s, policy_path, run_action_controller,  # noqa: F401  # pylint: disable=unused-import
                       run_actions_path)
from _module_runner import assert_not_in_result, module_kwargs, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import k10_import_policy

NS, NAME = "kasten-io", "import-from-prod"
IMPORT = policy_path(NS, NAME)
SOURCE_HOST, SOURCE_TOKEN = "https://source.test:6443", "source-cluster-token-98765"
CURRENT = "bWlncmF0aW9uLXN0cmluZy1jdXJyZW50LWZyb20tc291cmNl"  # the source's current migration string
STALE = "bWlncmF0aW9uLXN0cmluZy1zdGFsZQ"
EXPORT = policy_path(NS, "export-to-dr")
AUTH_FAILED = {"message": "Failed to import", "cause": {"message": "chacha20poly1305: message authentication failed"}}


def import_policy(receive_string=STALE):
    action = {"action": "import", "importParameters": {"profile": {"name": "dr-s3", "namespace": NS}}}
    if receive_string is not None:
        action["importParameters"]["receiveString"] = receive_string
    return {"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy",
            "spec": {"frequency": "@onDemand", "actions": [action]}}


def export_policy(receive_string=CURRENT):
    export = {"action": "export", "exportParameters": {"profile": {"name": "prod-s3"}}}
    if receive_string:
        export["exportParameters"]["receiveString"] = receive_string
    return {"spec": {"actions": [{"action": "backup"}, export]}}


@pytest.fixture
def destination(fake_k8s):
    cluster = fake_k8s.cluster(HOST)
    cluster.seed(IMPORT, import_policy())
    return cluster


@pytest.fixture
def source(fake_k8s):
    cluster = fake_k8s.cluster(SOURCE_HOST)
    cluster.seed(EXPORT, export_policy())
    return cluster


def source_args(**kwargs):
    return dict(K8S_ARGS, name=NAME, source={"host": SOURCE_HOST, "api_key": SOURCE_TOKEN, "policy": "export-to-dr"},
                **kwargs)


def string_args(**kwargs):
    return dict(K8S_ARGS, name=NAME, receive_string=CURRENT, **kwargs)


def receive_string(cluster):
    return cluster.get(IMPORT)["spec"]["actions"][0]["importParameters"].get("receiveString")


def test_argument_spec():
    kwargs = module_kwargs(k10_import_policy.main)
    spec = kwargs["argument_spec"]
    assert spec["name"]["required"] is True and spec["namespace"]["default"] == "kasten-io"
    assert spec["source"]["options"]["policy"]["required"] is True
    assert spec["run"]["default"] is False and spec["wait"]["default"] is True
    assert spec["wait_timeout"]["default"] == 600
    assert ("receive_string", "source") in kwargs["mutually_exclusive"]
    assert ("receive_string", "source") in kwargs["required_one_of"]
    assert no_log_options(spec) == {"api_key", "receive_string", "source.api_key"}


def test_the_source_string_is_copied_with_a_guarded_patch_and_never_shown(destination, source, fake_k8s):
    before = destination.get(IMPORT)["metadata"]["resourceVersion"]
    result = run_module(k10_import_policy.main, source_args(), diff=True)
    assert result["changed"] is True and result["receive_string_changed"] is True and result["action"] is None
    assert "stale migration string" in result["diagnosis"] and "kasten-io/export-to-dr" in result["diagnosis"]
    [(method, path, ops)] = destination.writes()
    assert (method, path) == ("PATCH", IMPORT)
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": before}
    assert receive_string(destination) == CURRENT
    assert destination.get(IMPORT)["spec"]["actions"][0]["importParameters"]["profile"]["name"] == "dr-s3"
    assert source.writes() == []  # the source is only read
    assert result["diff"] == {"before": {"importParameters.receiveString": "(hidden) old"},
                              "after": {"importParameters.receiveString":
                                        "(hidden) new, from kasten-io/export-to-dr"}}
    # read from a cluster, the string is no option value ansible-core could mask: the module itself hides it
    assert_not_in_result(result, CURRENT, STALE, SOURCE_TOKEN, TOKEN)
    assert sorted(c.host for c in fake_k8s.configurations) == sorted([SOURCE_HOST, HOST])


def test_the_source_inherits_the_destination_connection_when_it_names_none(destination, fake_k8s):
    destination.seed(EXPORT, export_policy())  # one cluster exporting to itself
    result = run_module(k10_import_policy.main, dict(K8S_ARGS, name=NAME, source={"policy": "export-to-dr"}))
    assert result["changed"] is True and receive_string(destination) == CURRENT
    assert fake_k8s.bearer_tokens() == ["Bearer " + TOKEN] * 2


def test_an_import_without_importparameters_gets_them_added(fake_k8s):
    cluster = fake_k8s.cluster()
    policy = import_policy(None)
    del policy["spec"]["actions"][0]["importParameters"]
    cluster.seed(IMPORT, policy)
    result = run_module(k10_import_policy.main, string_args())
    assert result["changed"] is True and receive_string(cluster) == CURRENT


def test_the_current_string_changes_nothing(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.seed(IMPORT, import_policy(CURRENT))
    result = run_module(k10_import_policy.main, string_args(), diff=True)
    assert result["changed"] is False and result["receive_string_changed"] is False
    assert "diagnosis" not in result and cluster.writes() == []
    assert result["diff"]["before"] == result["diff"]["after"] == {"importParameters.receiveString": "(hidden)"}


def test_check_mode_reports_the_change_and_patches_nothing(destination, source):
    result = run_module(k10_import_policy.main, source_args(run=True), check_mode=True)
    assert result["changed"] is True and result["receive_string_changed"] is True
    assert result["action"] == {"name": None, "state": "would run", "error": None}
    assert destination.writes() == [] and receive_string(destination) == STALE


def test_run_and_wait_for_a_complete_import(destination, source):
    destination.hooks.append(run_action_controller("Complete"))
    result = run_module(k10_import_policy.main, source_args(run=True))
    assert result["changed"] is True and result["action"]["state"] == "Complete"
    assert result["action"]["name"].startswith("import-from-prod-keyops-")
    post = destination.sent("POST")[0]
    assert post[1] == run_actions_path(NS)
    assert post[2]["spec"]["subject"] == {"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy",
                                          "name": NAME, "namespace": NS}


def test_run_is_always_a_change_even_with_the_current_string(fake_k8s):
    cluster = fake_k8s.cluster()
    cluster.seed(IMPORT, import_policy(CURRENT))
    cluster.hooks.append(run_action_controller("Complete"))
    result = run_module(k10_import_policy.main, string_args(run=True, wait=False))
    assert result["changed"] is True and result["receive_string_changed"] is False
    assert result["action"]["state"] == "Pending" and [c[0] for c in cluster.writes()] == ["POST"]


@pytest.mark.parametrize("with_source,case", [(True, "source_reinstalled"), (False, "authentication_failed")])
def test_a_failed_import_is_diagnosed(destination, source, with_source, case):
    destination.hooks.append(run_action_controller("Failed", AUTH_FAILED))
    result = run_module(k10_import_policy.main, source_args(run=True) if with_source else string_args(run=True))
    assert result["failed"] is True and result["case"] == case
    assert "Failed to import: chacha20poly1305: message authentication failed" in result["msg"]
    assert ("reinstalled without its disaster-recovery restore" in result["msg"]) is with_source
    assert result["action"]["state"] == "Failed" and result["receive_string_changed"] is True
    assert_not_in_result(result, CURRENT, STALE)


def test_another_import_failure_is_reported_as_other(destination):
    destination.hooks.append(run_action_controller("Failed", {"message": "location profile unreachable"}))
    result = run_module(k10_import_policy.main, string_args(run=True))
    assert result["failed"] is True and result["case"] == "other"
    assert "location profile unreachable. see the action's error" in result["msg"]


def test_an_import_that_does_not_finish_times_out(destination):
    result = run_module(k10_import_policy.main, string_args(run=True, wait_timeout=0))
    assert result["failed"] is True
    assert result["msg"].startswith("the import import-from-prod-keyops-")
    assert "did not finish within 0s" in result["msg"]


def test_a_policy_changed_meanwhile_asks_for_a_rerun(destination):
    destination.fail("PATCH", IMPORT, 422, "Invalid", "the test operation on /metadata/resourceVersion failed")
    result = run_module(k10_import_policy.main, string_args())
    assert result["failed"] is True
    assert result["msg"].startswith("import policy kasten-io/import-from-prod changed while this task ran; "
                                    "run it again")
    assert receive_string(destination) == STALE


def test_a_missing_import_policy_says_to_create_it(fake_k8s):
    result = run_module(k10_import_policy.main, string_args())
    assert result["failed"] is True
    assert result["msg"].startswith("import policy kasten-io/import-from-prod does not exist on the destination "
                                    "cluster: create it")


def test_a_policy_without_an_import_action(fake_k8s):
    fake_k8s.cluster().seed(IMPORT, export_policy())
    result = run_module(k10_import_policy.main, string_args())
    assert result["failed"] is True and "has no import action" in result["msg"]


@pytest.mark.parametrize("export,text", [
    (export_policy(receive_string=None), "has no exportParameters.receiveString yet"),
    ({"spec": {"actions": [{"action": "backup"}]}}, "has no export action: give the source cluster's export policy"),
])
def test_an_unusable_export_policy_is_explained(destination, fake_k8s, export, text):
    fake_k8s.cluster(SOURCE_HOST).seed(EXPORT, export)
    result = run_module(k10_import_policy.main, source_args())
    assert result["failed"] is True and text in result["msg"] and destination.writes() == []


def test_a_missing_export_policy_is_a_404_on_the_source(destination, fake_k8s):
    fake_k8s.cluster(SOURCE_HOST)
    result = run_module(k10_import_policy.main, source_args())
    assert result["failed"] is True and result["msg"].startswith("policy kasten-io/export-to-dr not found (404)")


def test_an_empty_receive_string_without_source_fails_clearly(destination):
    result = run_module(k10_import_policy.main, dict(K8S_ARGS, name=NAME, receive_string=""))
    assert result["failed"] is True and result["msg"].startswith("no migration string to propagate")
    assert destination.writes() == []


@pytest.mark.parametrize("extra,text", [
    ({}, "one of the following is required: receive_string, source"),
    ({"receive_string": CURRENT, "source": {"policy": "p"}}, "mutually exclusive: receive_string|source"),
    ({"source": ["export-to-dr"]}, "source must be a dictionary with the options"),
])
def test_bad_option_combinations_fail_before_any_request(fake_k8s, extra, text):
    result = run_module(k10_import_policy.main, dict(K8S_ARGS, name=NAME, **extra))
    assert result["failed"] is True and text in result["msg"]
    assert fake_k8s.cluster().calls == []
    assert_not_in_result(result, CURRENT)


def test_a_string_for_source_names_the_option(fake_k8s):
    result = run_module(k10_import_policy.main, dict(K8S_ARGS, name=NAME, source="export-to-dr"))
    assert result["failed"] is True and fake_k8s.cluster().calls == []
    assert "source" in result["msg"]
