"""Run a module's ``main()`` in-process and hand back the JSON result it exits with.

AnsibleModule reads its arguments from ``basic._ANSIBLE_ARGS`` (as the AnsiballZ wrapper hands them over) and
answers by printing one JSON document and calling ``sys.exit``: both are caught here, so a test sees exactly
what the controller would see - no_log values already masked by ansible-core.

    from _module_runner import run_module, module_spec
    result = run_module(vault_policy.main, {"name": "p", "policy": "..."}, check_mode=True, diff=True)
    assert result["changed"] and not result.get("failed")

A module that raises instead of exiting (a traceback on the controller) lets the exception through, so the
test fails with it - or, marked ``xfail(strict=True)``, documents the bug.
"""

import contextlib
import io
import json

from ansible.module_utils import _internal, basic
from ansible.module_utils.common import warnings as _warnings

MASK = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"  # what ansible-core prints in place of a no_log value


class _SpecCaptured(Exception):
    def __init__(self, kwargs):
        super().__init__("AnsibleModule keyword arguments captured")
        self.kwargs = kwargs


def set_module_args(args, check_mode=False, diff=False):
    """Make ``args`` what the next AnsibleModule reads, with the internal options the controller adds.

    Warnings and deprecations are process-wide in ansible-core: they are cleared so that a run reports only its own.
    """
    _warnings._global_warnings.clear()
    _warnings._global_deprecations.clear()
    params = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff, _ansible_remote_tmp="/tmp",
                  _ansible_keep_remote_files=False)
    basic._ANSIBLE_PROFILE = "legacy"  # the serialization profile the controller sends with every module
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": params}).encode()


def run_module(module_main, args, check_mode=False, diff=False):
    """The result dict ``module_main()`` exits with; ``failed: True`` and ``msg`` when it called fail_json.

    ``_exit_code`` is added only when the exit code disagrees with ``failed`` (no correct module does that).
    """
    set_module_args(args, check_mode=check_mode, diff=diff)
    out = io.StringIO()
    code = None
    # A module runs on the target: once a test has loaded controller code (is_controller set), ansible-core would
    # send the module's warnings and deprecations to the controller's display instead of the result.
    was_controller, _internal.is_controller = _internal.is_controller, False
    try:
        with contextlib.redirect_stdout(out):
            try:
                module_main()
            except SystemExit as exited:
                code = exited.code
            else:
                raise AssertionError("%s returned without exit_json/fail_json"
                                     % getattr(module_main, "__module__", "main"))
    finally:
        _internal.is_controller = was_controller
    text = out.getvalue().strip()
    try:
        result = json.loads(text)
    except ValueError:
        raise AssertionError("the module did not print exactly one JSON result:\n%s" % text)
    if bool(code) != bool(result.get("failed")):
        result["_exit_code"] = code
    return result


def module_kwargs(module_main):
    """The keyword arguments ``module_main()`` creates its AnsibleModule with (argument_spec, mutually_exclusive...).

    Captured before AnsibleModule validates anything, so no arguments are needed."""
    original = basic.AnsibleModule.__init__

    def capture(self, **kwargs):
        raise _SpecCaptured(kwargs)

    set_module_args({})
    basic.AnsibleModule.__init__ = capture
    try:
        module_main()
    except _SpecCaptured as captured:
        return captured.kwargs
    finally:
        basic.AnsibleModule.__init__ = original
    raise AssertionError("main() did not create an AnsibleModule")


def module_spec(module_main):
    """``module_main``'s argument spec (connection options included)."""
    return module_kwargs(module_main)["argument_spec"]


def no_log_options(spec, prefix=""):
    """Every option (sub-options as ``parent.child``) that has ``no_log=True``."""
    found = set()
    for name, option in spec.items():
        if option.get("no_log"):
            found.add(prefix + name)
        found |= no_log_options(option.get("options") or {}, prefix + name + ".")
    return found


def assert_not_in_result(result, *secrets):
    """No secret appears anywhere in the result's JSON (invocation, diff, messages included)."""
    text = json.dumps(result)
    for secret in secrets:
        assert secret not in text, "secret %r leaked into the result" % secret
