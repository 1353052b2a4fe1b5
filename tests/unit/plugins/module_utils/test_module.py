"""Malformed sub-option values: named clearly before ansible-core trips over them."""

import contextlib
import io
import json

import pytest
from ansible.module_utils import basic

from ansible_collections.keyops.lifecycle.plugins.module_utils import _module

SPEC = dict(
    name=dict(type="str"),
    source=dict(type="dict", aliases=["origin"], options=dict(
        policy=dict(type="str"), api_key=dict(type="str", no_log=True),
        tls=dict(type="dict", options=dict(ca=dict(type="path"))))),
    keys=dict(type="list", elements="dict", options=dict(name=dict(type="str"))),
)


def test_well_formed_values_have_no_problems():
    params = {"name": "x", "source": {"policy": "p", "tls": {"ca": "/ca"}}, "keys": [{"name": "a"}, "name=b"]}
    assert _module.shape_problems(SPEC, params) == []
    # strings are parsed by ansible-core itself (JSON or key=value); absent and None are left to it too
    assert _module.shape_problems(SPEC, {"source": "policy=p", "keys": None}) == []


@pytest.mark.parametrize("params,expected", [
    ({"source": 5}, ["source must be a dictionary with the options api_key, policy, tls, not int"]),
    ({"origin": [1]}, ["origin must be a dictionary with the options api_key, policy, tls, not list"]),
    ({"source": {"tls": True}}, ["source.tls must be a dictionary with the options ca, not bool"]),
    ({"keys": [{"name": "a"}, 7, None]},
     ["keys[1] must be a dictionary with the options name, not int",
      "keys[2] must be a dictionary with the options name, not NoneType"]),
])
def test_malformed_values_are_named_with_their_path(params, expected):
    assert _module.shape_problems(SPEC, params) == expected


def test_problems_never_quote_the_value():
    assert "hunter2" not in " ".join(_module.shape_problems(SPEC, {"source": {"tls": ["hunter2"]}}))


def module_arguments(params):
    """What AnsibleModule reads, as the controller sends it."""
    basic._ANSIBLE_PROFILE = "legacy"
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": params}).encode()


def run_checked(params):
    module_arguments(params)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        basic.AnsibleModule(**_module.checked_suboptions(dict(argument_spec=SPEC)))
    return exited.value.code, json.loads(out.getvalue())


def test_a_malformed_value_fails_cleanly_and_masks_what_hides_a_secret():
    code, result = run_checked({"name": "n", "source": [{"api_key": "hunter2"}]})
    assert code == 1 and result["failed"] is True
    assert result["msg"] == ("Invalid module arguments: source must be a dictionary with the options api_key, "
                             "policy, tls, not list.")
    assert "hunter2" not in json.dumps(result)


def test_well_formed_arguments_reach_ansible_module_unchanged():
    module_arguments({"source": {"policy": "p"}})
    module = basic.AnsibleModule(**_module.checked_suboptions(dict(argument_spec=SPEC)))
    assert module.params["source"]["policy"] == "p" and module.params["source"]["api_key"] is None
