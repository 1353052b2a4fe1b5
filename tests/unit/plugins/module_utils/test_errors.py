"""The one error base and module runner, with a stand-in module object."""

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils._errors import KeyopsModuleError, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import K8sModuleError
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError


class Exit(Exception):
    pass


class FakeModule:
    def __init__(self, diff=False):
        self._diff = diff
        self.result = None

    def exit_json(self, **result):
        self.result = ("exit", result)
        raise Exit()

    def fail_json(self, **result):
        self.result = ("fail", result)
        raise Exit()


@pytest.mark.parametrize("error", [VaultModuleError("vault said no", status=403, actions=["a"]),
                                   K8sModuleError("k8s said no", status=409, reason="Conflict", actions=["a"])])
def test_every_stack_fails_the_same_way(error):
    module = FakeModule()

    def work(_connection):
        raise error

    with pytest.raises(Exit):
        run_module(module, lambda m: object(), work)
    assert module.result == ("fail", {"msg": error.msg, "actions": ["a"]})
    assert isinstance(error, KeyopsModuleError)


def test_a_connection_failure_is_reported_and_diff_only_with_diff():
    module = FakeModule()

    def refuse(_module):
        raise KeyopsModuleError("no address")

    with pytest.raises(Exit):
        run_module(module, refuse, lambda c: {})
    assert module.result == ("fail", {"msg": "no address"})
    for diff, expected in ((False, {"changed": True}), (True, {"changed": True, "diff": {"before": 1}})):
        module = FakeModule(diff=diff)
        with pytest.raises(Exit):
            run_module(module, lambda m: None, lambda c: {"changed": True, "diff": {"before": 1}})
        assert module.result == ("exit", expected)
