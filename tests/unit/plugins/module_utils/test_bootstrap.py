"""Mounts, policies and tokens: the plans without a server, and the private file the token lands in."""

import os
import stat

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _bootstrap as b
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError

TRANSIT = {"type": "transit", "description": "", "config": {"default_lease_ttl": 0, "max_lease_ttl": 0,
                                                            "force_no_cache": False, "audit_non_hmac_request_keys": []},
           "options": None, "accessor": "transit_1234", "local": False}


def desired(**kwargs):
    return dict({"state": "present", "kind": "secret", "path": "transit", "type": "transit", "description": None,
                 "config": None, "options": None, "allow_data_loss": False}, **kwargs)


def test_mount_view_keeps_the_comparable_part():
    assert b.mount_view(None) is None
    view = b.mount_view(dict(TRANSIT, options={"version": 2}))
    # empty values are what Vault reports for "not set"; 0 and False are settings
    assert view == {"type": "transit", "description": "", "options": {"version": "2"},
                    "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False}}


def test_create_parses_ttls_and_stringifies_options():
    op, payload, predicted = b.plan_mount(None, desired(type="kv", description="app secrets",
                                                        config={"default_lease_ttl": "1h", "max_lease_ttl": "2d",
                                                                "listing_visibility": "hidden"},
                                                        options={"version": 2}))
    assert op == "create"
    assert payload == {"type": "kv", "description": "app secrets", "options": {"version": "2"},
                       "config": {"default_lease_ttl": 3600, "max_lease_ttl": 172800, "listing_visibility": "hidden"}}
    assert predicted == dict(payload)
    op, payload, _predicted = b.plan_mount(None, desired())
    assert op == "create" and "description" not in payload  # Vault's default stays


def test_a_bad_ttl_names_the_option():
    with pytest.raises(VaultModuleError, match="`config.max_lease_ttl` must be a duration"):
        b.plan_mount(None, desired(config={"max_lease_ttl": "forever"}))


def test_present_without_type():
    with pytest.raises(VaultModuleError, match="type is required with state=present"):
        b.plan_mount(None, desired(type=None))


def test_an_equal_mount_needs_nothing():
    current = b.mount_view(TRANSIT)
    assert b.plan_mount(current, desired(config={"default_lease_ttl": "0s"})) == (None, None, current)
    assert b.plan_mount(current, desired(description="")) == (None, None, current)


def test_tune_sends_only_what_differs():
    current = b.mount_view(dict(TRANSIT, options={"version": "1"}))
    wanted = desired(description="keys", config={"max_lease_ttl": "30m", "default_lease_ttl": 0},
                     options={"version": 2})
    op, tune, predicted = b.plan_mount(current, wanted)
    assert op == "tune"
    assert tune == {"description": "keys", "max_lease_ttl": 1800, "options": {"version": "2"}}
    assert predicted["config"]["max_lease_ttl"] == 1800 and predicted["options"] == {"version": "2"}
    assert current["config"]["max_lease_ttl"] == 0  # the current view is not changed by the plan


def test_a_type_change_is_refused():
    with pytest.raises(VaultModuleError, match="'transit' is a transit mount, not kv: changing the type means "
                                               "disabling it"):
        b.plan_mount(b.mount_view(TRANSIT), desired(type="kv"))


def test_absent():
    assert b.plan_mount(None, desired(state="absent")) == (None, None, None)
    with pytest.raises(VaultModuleError, match="refusing to disable the transit secrets engine at 'transit'.*"
                                               "allow_data_loss: true"):
        b.plan_mount(b.mount_view(TRANSIT), desired(state="absent"))
    assert b.plan_mount(b.mount_view(TRANSIT), desired(state="absent", allow_data_loss=True)) == ("delete", None, None)
    # an auth method holds no data: disabling it needs no confirmation
    approle = b.mount_view({"type": "approle", "config": {}})
    assert b.plan_mount(approle, desired(state="absent", kind="auth", type="approle"))[0] == "delete"


def test_normalize_policy():
    assert b.normalize_policy('\n path "x" {   \n  capabilities = ["read"]  \n}\n\n') == (
        'path "x" {\n  capabilities = ["read"]\n}')
    assert b.normalize_policy(None) == "" and b.normalize_policy("  ") == ""


def test_write_private_file(tmp_path):
    path = tmp_path / "secrets" / "k10" / "token"
    assert b.write_private_file(str(path), "hvs.secret\n") == str(path)
    assert path.read_text() == "hvs.secret\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    b.write_private_file(str(path), "hvs.second\n")
    assert path.read_text() == "hvs.second\n" and os.listdir(path.parent) == ["token"]  # no twin left


def test_token_request_sends_only_what_was_given():
    assert b.token_request({"policies": [], "ttl": None, "meta": {}, "renewable": None}) == {}
    assert b.token_request({"policies": ["k10"], "ttl": "768h", "period": None, "num_uses": 0,
                            "no_default_policy": False, "renewable": True, "display_name": "k10"}) == {
        "policies": ["k10"], "ttl": "768h", "num_uses": 0, "no_default_policy": False, "renewable": True,
        "display_name": "k10"}


@pytest.mark.parametrize("lookup,params,expected", [
    ({"policies": ["default", "k10"]}, {"policies": ["k10"]}, True),
    ({"policies": ["k10"]}, {"policies": ["k10"]}, False),  # the default policy was asked for implicitly
    ({"policies": ["k10"]}, {"policies": ["k10"], "no_default_policy": True}, True),
    ({"policies": ["default"]}, {"policies": ["k10"]}, False),
    ({"policies": ["default", "k10"], "orphan": False}, {"policies": ["k10"], "orphan": True}, False),
    ({"policies": ["default", "k10"], "orphan": True}, {"policies": ["k10"], "orphan": True}, True),
    ({"policies": ["default"], "display_name": "token-k10"}, {"display_name": "k10"}, True),
    ({"policies": ["default"], "display_name": "token-app"}, {"display_name": "k10"}, False),
])
def test_token_satisfies(lookup, params, expected):
    assert b.token_satisfies(lookup, params) is expected
