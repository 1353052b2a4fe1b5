"""When the in_process action plugin runs a module inside the worker, and when it leaves it to a module process."""

import sys

import pytest

from ansible_collections.keyops.lifecycle.plugins.plugin_utils._in_process import why_not_in_process

PY = sys.executable


@pytest.mark.parametrize("transport, become, async_val, interpreter, enabled, supported, reason", [
    ("local", False, 0, PY, True, True, None),
    ("ansible.builtin.local", False, 0, PY + "/../" + PY.rsplit("/", 1)[1], True, True, None),
    ("ssh", False, 0, PY, True, True, "over the ssh connection"),
    ("mitogen_local", False, 0, PY, True, True, "over the mitogen_local connection"),
    ("local", True, 0, PY, True, True, "uses become"),
    ("local", False, 30, PY, True, True, "is async"),
    ("local", False, 0, "/usr/bin/python3", True, True, "(/usr/bin/python3) is not the one running Ansible"),
    ("local", False, 0, None, True, True, "(auto) is not the one running Ansible"),
    ("local", False, 0, PY, False, True, "keyops_lifecycle_in_process is false"),
    ("local", False, 0, PY, True, False, "cannot run modules in process"),
])
def test_why_not_in_process(transport, become, async_val, interpreter, enabled, supported, reason):
    answer = why_not_in_process(transport, become, async_val, interpreter, PY, enabled, supported)
    if reason is None:
        assert answer is None
    else:
        assert reason in answer
