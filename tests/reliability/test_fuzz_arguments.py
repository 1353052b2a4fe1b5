"""Property-based argument fuzzing of every module (hypothesis): whatever the arguments, a module answers with
one JSON result - success, or fail_json with a message - and never a traceback.

Modules run in-process (AnsibleModule reads its arguments from ``basic._ANSIBLE_ARGS``) with every path under
a sandbox directory, Vault and Kubernetes addresses on a closed loopback port, no VAULT_*/K8S_AUTH_* variables
and sleeps skipped, so the fuzzing exercises argument handling and error paths quickly and touches nothing else.
"""

import contextlib
import importlib
import io
import json
import os
import sys
import time

import pytest
from ansible.module_utils import _internal as _module_internal
from ansible.module_utils import basic
from ansible.release import __version__ as ANSIBLE_CORE_VERSION
from ansible_collections.keyops.lifecycle.plugins.plugin_utils import _module_runtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability_counts import ROOT, count

SUITE = "fuzz"
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                 if name.endswith(".py") and not name.startswith("_"))
EXAMPLES = int(os.environ.get("KEYOPS_FUZZ_EXAMPLES", "250"))
CLOSED = "127.0.0.1:9"  # discard port: connection refused at once
# Options whose values would reach outside the sandbox: constrained (still fuzzed within the constraint).
ADDRESS_OPTIONS = {"url", "host", "kubernetes_host", "vault_address", "vault_cluster_host"}
TIMING_OPTIONS = {"timeout", "request_timeout", "retries", "settle_seconds", "stop_timeout", "wait_timeout",
                  "initialized_timeout", "passkey_timeout"}


class _Captured(Exception):
    def __init__(self, spec):
        super().__init__("captured")
        self.spec = spec


def argument_spec(module_name):
    """The module's argument spec, captured from its own AnsibleModule(...) call."""
    module = importlib.import_module("ansible_collections.keyops.lifecycle.plugins.modules." + module_name)
    original = basic.AnsibleModule.__init__

    def capture(self, argument_spec=None, **_kwargs):
        raise _Captured(argument_spec)

    basic.AnsibleModule.__init__ = capture
    basic._ANSIBLE_PROFILE = "legacy"
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": {}}).encode()
    try:
        module.main()
    except _Captured as captured:
        return module, captured.spec
    finally:
        basic.AnsibleModule.__init__ = original
    raise AssertionError("%s did not create an AnsibleModule" % module_name)


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
JUNK = st.one_of(st.none(), TEXT, st.integers(-3, 10 ** 9), st.booleans(), st.floats(allow_nan=True),
                 st.lists(TEXT, max_size=3), st.dictionaries(TEXT, TEXT, max_size=3))


def value_for(name, spec, sandbox, depth=0):
    kind = spec.get("type", "str")
    if spec.get("choices"):
        return st.one_of(st.sampled_from(list(spec["choices"])), JUNK) if kind != "list" else st.lists(
            st.sampled_from(list(spec["choices"])), max_size=3)
    if name in ADDRESS_OPTIONS:
        return st.sampled_from(["http://" + CLOSED, "https://" + CLOSED, "", "not a url", "http://[::1"])
    if name in TIMING_OPTIONS:
        return st.one_of(st.integers(-2, 2), st.sampled_from(["1", "x", None]))
    if kind == "path" or name in ("path", "keys_file", "token_file", "pid_file", "log_file", "chdir",
                                  "kubernetes_jwt_file", "kubeconfig", "ca_cert", "kube_ca_cert"):
        inside = st.sampled_from(["", "a", "a/b", "keys", "../escape-not", "0", "dir/"])
        return st.one_of(inside.map(lambda rel: os.path.join(sandbox, rel)), st.just("/nonexistent/x"), JUNK)
    if kind == "bool":
        return st.one_of(st.booleans(), st.sampled_from(["yes", "no", "maybe", 2, None]))
    if kind == "int":
        return st.one_of(st.integers(-5, 10 ** 6), st.sampled_from(["3", "three", None, 1.5]))
    if kind == "float":
        return st.one_of(st.floats(-1, 1e6, allow_nan=False), st.sampled_from(["0.5", "x"]))
    if kind == "list":
        if spec.get("options") and depth < 2:
            return st.one_of(st.lists(options_for(spec["options"], sandbox, depth + 1), max_size=3), JUNK)
        if name == "argv":
            return st.lists(st.sampled_from([os.path.join(sandbox, "not-executable"), "server", "-x"]), max_size=3)
        return st.one_of(st.lists(st.one_of(TEXT, st.integers(0, 9)), max_size=4), JUNK)
    if kind == "dict":
        if spec.get("options") and depth < 2:
            return st.one_of(options_for(spec["options"], sandbox, depth + 1), JUNK)
        return st.one_of(st.dictionaries(TEXT, st.one_of(TEXT, st.integers(0, 9)), max_size=3), JUNK)
    return st.one_of(TEXT, JUNK)


def options_for(specs, sandbox, depth=0):
    """A dict with a random subset of the options (required ones usually present) and sometimes a stray key."""
    @st.composite
    def build(draw):
        params = {}
        for name, spec in sorted(specs.items()):
            keep = draw(st.floats(0, 1)) < (0.9 if spec.get("required") else 0.5)
            if keep:
                params[name] = draw(value_for(name, spec, sandbox, depth))
        if draw(st.floats(0, 1)) < 0.1:
            params[draw(st.sampled_from(["bogus", "Name", "_private"]))] = draw(JUNK)
        return params

    return build()


def internal_args(params, check_mode):
    return dict(params, _ansible_check_mode=check_mode, _ansible_remote_tmp="/tmp", _ansible_keep_remote_files=False,
                _ansible_diff=True)


def run_in_process(module, params, check_mode):
    basic._ANSIBLE_PROFILE = "legacy"  # what the controller sends with every module invocation
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": internal_args(params, check_mode)}, default=str).encode()
    out = io.StringIO()
    code = None
    with contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue()


def run_in_worker(module, params, check_mode):
    """The in_process action plugin's path: the module run as the AnsiballZ wrapper runs it, inside the worker."""
    args = json.loads(json.dumps(internal_args(params, check_mode), default=str))
    before = (dict(os.environ), list(sys.argv), _module_internal.is_controller)
    sys.modules.pop(module.__name__, None)  # a worker runs the module file afresh, as __main__
    assert RUNTIME is not None, RUNTIME_REASON
    output, code = RUNTIME.run_module(module.__name__, args, {"KEYOPS_FUZZ_ENV": "set"})
    # The worker goes on with Ansible's own work afterwards: nothing of the module's run may stay behind.
    assert (dict(os.environ), list(sys.argv), _module_internal.is_controller) == before
    return code, output


ROUTES = {"module": run_in_process, "worker": run_in_worker}
# Looked up once, before any comparison of the worker's state: it imports controller code (as a worker has).
RUNTIME, RUNTIME_REASON = _module_runtime.load(ANSIBLE_CORE_VERSION)
# The worker route runs only the modules with an in-process action plugin, with fewer examples.
IN_PROCESS = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "action"))
                    if name.endswith(".py") and not name.startswith("_"))
CASES = [("module", name) for name in MODULES] + [("worker", name) for name in IN_PROCESS]


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("VAULT_", "K8S_AUTH_", "KUBECONFIG", "KUBERNETES_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "sleep", lambda _seconds: None)
    (tmp_path / "not-executable").write_text("#!/bin/sh\nexit 0\n")
    return str(tmp_path / "box")


@pytest.mark.parametrize("route,module_name", CASES, ids=["%s-%s" % case for case in CASES])
def test_module_answers_every_argument_set_cleanly(route, module_name, sandbox):
    module, spec = argument_spec(module_name)
    outcomes = {"ok": 0, "failed": 0}
    run = ROUTES[route]

    @settings(max_examples=EXAMPLES if route == "module" else max(EXAMPLES // 5, 10), deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(params=options_for(spec, sandbox), check_mode=st.booleans())
    def fuzz(params, check_mode):
        os.makedirs(sandbox, exist_ok=True)
        try:
            code, output = run(module, params, check_mode)
        except Exception as exc:  # pylint: disable=broad-except
            raise AssertionError("%s raised %r for %r" % (module_name, exc, params)) from exc
        assert "Traceback (most recent call last)" not in output, output
        result = json.loads(output)
        assert code in (0, 1), (code, output)
        if result.get("failed"):
            assert code == 1 and isinstance(result.get("msg"), str) and result["msg"].strip(), output
            assert "Traceback (most recent call last)" not in str(result.get("exception", "")), output
            outcomes["failed"] += 1
        else:
            assert code == 0, output
            outcomes["ok"] += 1

    fuzz()
    count(SUITE, "modules" if route == "module" else "modules_in_worker")
    count(SUITE, "cases", sum(outcomes.values()))
    count(SUITE, "clean_failures", outcomes["failed"])
    count(SUITE, "successes", outcomes["ok"])
    count(SUITE, "tracebacks", 0)
