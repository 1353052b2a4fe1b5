"""When the in_process action plugin runs a module inside the worker, and when it leaves it to a module process."""

import json
import os
import sys

import pytest
from ansible.release import __version__ as ANSIBLE_CORE_VERSION

from ansible_collections.keyops.lifecycle.plugins.plugin_utils import _interpreter, _module_runtime
from ansible_collections.keyops.lifecycle.plugins.plugin_utils._in_process import why_not_in_process


@pytest.mark.parametrize("transport, become, async_val, enabled, environment, reason", [
    ("local", False, 0, True, {}, None),
    ("ansible.builtin.local", False, 0, True, {"PATH": "/bin"}, None),
    ("ssh", False, 0, True, {}, "over the ssh connection"),
    ("mitogen_local", False, 0, True, {}, "over the mitogen_local connection"),
    ("local", True, 0, True, {}, "uses become"),
    ("local", False, 30, True, {}, "is async"),
    ("local", False, 0, False, {}, "keyops_lifecycle_in_process is false"),
    ("local", False, 0, True, {"PYTHONPATH": "/x", "PYTHONHOME": "/y"}, "sets PYTHONHOME, PYTHONPATH"),
])
def test_why_not_in_process(transport, become, async_val, enabled, environment, reason):
    answer = why_not_in_process(transport, become, async_val, enabled, environment)
    if reason is None:
        assert answer is None
    else:
        assert reason in answer


# --- which Python is "the same Python" -------------------------------------------------------------------------

def make_python(root, name="python3.11"):
    """A stand-in installation: bin/python3.11 with python3 and python linked to it (what a system Python or an
    execution environment's /usr/bin looks like)."""
    bindir = os.path.join(str(root), "bin")
    os.makedirs(bindir)
    real = os.path.join(bindir, name)
    with open(real, "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(real, 0o755)
    for alias in ("python3", "python"):
        os.symlink(name, os.path.join(bindir, alias))
    return real


def make_venv(root, base, copies=False):
    """A venv of ``base``: pyvenv.cfg and bin/python* linked to (or copied from) the base interpreter."""
    bindir = os.path.join(str(root), "bin")
    os.makedirs(bindir)
    with open(os.path.join(str(root), "pyvenv.cfg"), "w") as handle:
        handle.write("home = %s\n" % os.path.dirname(base))
    for alias in ("python", "python3", "python3.11"):
        target = os.path.join(bindir, alias)
        if copies:
            with open(base) as src, open(target, "w") as dst:
                dst.write(src.read())
            os.chmod(target, 0o755)
        else:
            os.symlink(base, target)
    return os.path.join(bindir, "python3")


@pytest.fixture()
def pythons(tmp_path):
    system = make_python(tmp_path / "usr")
    return {"system": system, "venv": make_venv(tmp_path / "venv", system),
            "other_venv": make_venv(tmp_path / "other", system),
            "copies": make_venv(tmp_path / "copies", system, copies=True),
            "pyenv313": make_python(tmp_path / "pyenv", "python3.13"), "tmp": str(tmp_path)}


def controller(python):
    """What the controller's environment is when Ansible runs from ``python`` (sys.prefix as Python sets it)."""
    root = _interpreter.venv_root(python)
    prefix = root or os.path.dirname(os.path.dirname(os.path.realpath(python)))
    base = os.path.dirname(os.path.dirname(os.path.realpath(python))) if root is None else "/base"
    return _interpreter.controller_environment(python, prefix, base)


def test_every_name_of_the_venv_is_the_venv(pythons):
    venv = controller(pythons["venv"])
    bindir = os.path.dirname(pythons["venv"])
    for name in ("python", "python3", "python3.11"):
        assert _interpreter.same_python(os.path.join(bindir, name), "", venv) is None
        assert _interpreter.same_python(name, bindir, venv) is None  # a command found on PATH (discovery)
        assert _interpreter.same_python("/usr/bin/env " + name, bindir, venv) is None
    assert _interpreter.same_python(os.path.join(bindir, "..", "bin", "python"), "", venv) is None


def test_a_venv_of_copies_is_one_python(pythons):
    copies = controller(pythons["copies"])
    assert _interpreter.same_python(os.path.join(os.path.dirname(pythons["copies"]), "python"), "", copies) is None


def test_the_base_interpreter_of_a_venv_is_another_environment(pythons):
    venv = controller(pythons["venv"])
    # the same binary, but without the venv's site-packages
    assert "another Python or environment" in _interpreter.same_python(pythons["system"], "", venv)
    assert "another Python or environment" in _interpreter.same_python(pythons["other_venv"], "", venv)
    assert "another Python or environment" in _interpreter.same_python(pythons["pyenv313"], "", venv)


def test_an_execution_environment_python3_is_its_python3_11(pythons):
    system = controller(pythons["system"])  # ansible-playbook runs /usr/bin/python3.11, the host says python3
    for name in ("python3", "python"):
        assert _interpreter.same_python(os.path.join(os.path.dirname(pythons["system"]), name), "", system) is None
    assert _interpreter.same_python("python3", os.path.dirname(pythons["system"]), system) is None
    assert "another Python" in _interpreter.same_python(pythons["venv"], "", system)
    assert "another Python" in _interpreter.same_python(pythons["pyenv313"], "", system)


@pytest.mark.parametrize("setting, why", [
    ("python3 -X dev", "a command with arguments"),
    ("no-such-python", "not found on PATH"),
    ("/nowhere/python3", "not an executable file"),
])
def test_an_interpreter_that_cannot_be_identified_takes_the_ordinary_path(pythons, setting, why):
    assert why in _interpreter.same_python(setting, os.path.dirname(pythons["system"]), controller(pythons["venv"]))


def test_a_controller_whose_prefix_disagrees_with_its_executable_is_refused(pythons):
    with pytest.raises(_interpreter.UnknownInterpreter, match="not where its executable says"):
        _interpreter.controller_environment(pythons["venv"], "/elsewhere", "/base")  # a venv, but another prefix
    with pytest.raises(_interpreter.UnknownInterpreter, match="not where its executable says"):
        _interpreter.controller_environment(pythons["system"], "/some/venv", "/usr")  # claims a venv, has none
    with pytest.raises(_interpreter.UnknownInterpreter, match="does not know its own executable"):
        _interpreter.controller_environment("", sys.prefix, sys.base_prefix)


def test_this_python_is_itself():
    here = _interpreter.controller_environment(sys.executable, sys.prefix, sys.base_prefix)
    assert _interpreter.same_python(sys.executable, "", here) is None
    assert _interpreter.same_python(os.path.basename(sys.executable), os.path.dirname(sys.executable), here) is None


# --- which ansible-core can run modules in the worker ----------------------------------------------------------

@pytest.mark.parametrize("version", ["2.16.19", "2.17.14", "2.18.19", "2.20.10", "2.22.0", "3.0.0"])
def test_lines_outside_the_test_matrix_take_the_ordinary_path(version):
    runtime, reason = _module_runtime.load(version)
    assert runtime is None
    assert "is not one of the lines" in reason and "2.19, 2.21" in reason


def test_an_unreadable_version_takes_the_ordinary_path():
    runtime, reason = _module_runtime.load("devel-abc")
    assert runtime is None and "cannot read" in reason


def test_the_installed_core_is_covered_and_complete():
    runtime, reason = _module_runtime.load(ANSIBLE_CORE_VERSION)
    assert reason is None and runtime is not None


def test_a_covered_line_missing_an_internal_takes_the_ordinary_path(monkeypatch):
    from ansible.module_utils._internal._ansiballz import _loader
    monkeypatch.setattr(_loader, "run_module", lambda json_params, profile: None)  # a changed signature
    runtime, reason = _module_runtime.load(ANSIBLE_CORE_VERSION + ".test")  # not the cached answer
    assert runtime is None and "module loader (run_module)" in reason


def test_a_covered_line_whose_internal_moved_takes_the_ordinary_path(monkeypatch):
    import ansible.vars.clean
    monkeypatch.delattr(ansible.vars.clean, "remove_internal_keys", raising=False)
    monkeypatch.setitem(sys.modules, "ansible._internal._task", None)  # 2.21's home of it, absent here
    runtime, reason = _module_runtime.load(ANSIBLE_CORE_VERSION + ".moved")
    assert runtime is None and "ImportError" in reason


def test_the_fallback_parser_keeps_the_modules_answer():
    out = json.dumps({"changed": True, "version": 3, "_ansible_no_log": True, "_ansible_tmpdir": "/t",
                      "_ansible_suppress_tmpdir_delete": True})
    assert _module_runtime.plain_task_result(out, 0) == {"changed": True, "version": 3, "_ansible_no_log": True}
    failed = _module_runtime.plain_task_result(json.dumps({"msg": "boom"}), 1)
    assert failed == {"msg": "boom", "failed": True}
    garbage = _module_runtime.plain_task_result("Traceback ...", 1)
    assert garbage["failed"] and "no JSON result" in garbage["msg"]
    assert "a JSON list" in _module_runtime.plain_task_result("[1]", 0)["msg"]
