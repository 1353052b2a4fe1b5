"""Pure decisions of the transit layer: no server involved."""

import datetime

import pytest
from hypothesis import given, strategies as st

from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import (
    TransitPlanError,
    check_min_decryption_version,
    diff_view,
    normalize_key,
    parse_duration,
    plan_transit_key,
    rotation_due,
)

NOW = datetime.datetime(2026, 11, 23, 12, 0, 0, tzinfo=datetime.timezone.utc)


def vault_key(latest=1, min_dec=1, min_enc=0, min_avail=0, age_days=0, **extra):
    created = int((NOW - datetime.timedelta(days=age_days)).timestamp())
    data = {
        "name": "k", "type": "aes256-gcm96", "latest_version": latest, "min_decryption_version": min_dec,
        "min_encryption_version": min_enc, "min_available_version": min_avail, "deletion_allowed": False,
        "exportable": False, "allow_plaintext_backup": False, "derived": False, "auto_rotate_period": 0,
        "keys": dict((str(v), created - (latest - v) * 86400) for v in range(max(min_dec, 1), latest + 1)),
    }
    data.update(extra)
    return normalize_key(data)


def desired(**options):
    base = {"name": "k", "state": "present", "rotate": False, "force": False}
    base.update(options)
    return base


@pytest.mark.parametrize("text, seconds", [
    ("90d", 90 * 86400), ("12h", 43200), ("30m", 1800), ("45s", 45), ("2w", 1209600), ("1h30m", 5400),
    ("3600", 3600), (3600, 3600), ("0", 0), (" 1D ", 86400),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1y", "h1", "1h 30m", "-5", "", True, "1.5h"])
def test_parse_duration_rejects(text):
    with pytest.raises(TransitPlanError):
        parse_duration(text, "rotate_older_than")


@given(st.lists(st.tuples(st.integers(0, 500), st.sampled_from("smhdw")), min_size=1, max_size=4))
def test_parse_duration_sums_units(parts):
    text = "".join("%d%s" % part for part in parts)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    assert parse_duration(text) == sum(n * units[u] for n, u in parts)


def test_normalize_key_symmetric_and_asymmetric_times():
    sym = normalize_key({"name": "a", "type": "aes256-gcm96", "latest_version": 1, "keys": {"1": 1795454353}})
    assert sym["versions"] == {"1": "2026-11-23T17:19:13Z"}
    asym = normalize_key({"name": "e", "type": "ed25519", "latest_version": 2, "keys": {
        "2": {"creation_time": "2026-11-23T17:19:13.812218902Z", "public_key": "PUBLIC", "name": "ed25519"},
        "1": {"creation_time": "2026-11-23T19:19:13+02:00", "public_key": "PUBLIC"}}})
    assert asym["versions"] == {"1": "2026-11-23T17:19:13Z", "2": "2026-11-23T17:19:13Z"}
    assert "PUBLIC" not in str(asym) and "PUBLIC" not in str(diff_view(asym))


def test_rotation_due_boundaries():
    key = vault_key(age_days=10)
    assert rotation_due(key, 10 * 86400, NOW) is True
    assert rotation_due(key, 10 * 86400 + 1, NOW) is False
    assert rotation_due(dict(key, versions={}), 10, NOW) is True  # unknown age: rotate


@pytest.mark.parametrize("current, requested, latest, in_use, force, ok", [
    (1, 1, 3, None, False, True),    # unchanged
    (2, 1, 3, None, False, True),    # lowering is always allowed
    (1, 2, 3, None, False, False),   # raising needs proof
    (1, 2, 3, 2, False, True),       # proof: oldest in use is 2
    (1, 3, 3, 2, False, False),      # proof says 2 is still used
    (1, 3, 3, None, True, True),     # forced
    (1, 4, 3, None, True, False),    # never above latest, even forced
    (1, 0, 3, None, True, False),    # never below 1
])
def test_check_min_decryption_version(current, requested, latest, in_use, force, ok):
    if ok:
        check_min_decryption_version(current, requested, latest, in_use, force)
    else:
        with pytest.raises(TransitPlanError):
            check_min_decryption_version(current, requested, latest, in_use, force)


@given(current=st.integers(1, 20), latest_extra=st.integers(0, 20), requested=st.integers(1, 45),
       in_use=st.one_of(st.none(), st.integers(1, 45)))
def test_guard_never_allows_above_oldest_version_in_use(current, latest_extra, requested, in_use):
    latest = current + latest_extra
    try:
        check_min_decryption_version(current, requested, latest, in_use, False)
    except TransitPlanError:
        return
    assert requested <= latest
    assert requested <= current or (in_use is not None and requested <= in_use)


def test_plan_create_new_key():
    ops, predicted = plan_transit_key(None, desired(type="ed25519", exportable=True), NOW)
    assert ops == [("create", {"type": "ed25519", "exportable": True}, "created (ed25519)")]
    assert predicted["latest_version"] == 1 and predicted["exportable"] is True


def test_plan_unchanged_key_is_empty():
    key = vault_key(latest=3, min_dec=2)
    ops, predicted = plan_transit_key(key, desired(type="aes256-gcm96", min_decryption_version=2,
                                                   rotate_older_than="30d"), NOW)
    assert ops == [] and predicted == key


def test_plan_rotate_when_due_then_raise_within_proof():
    key = vault_key(latest=2, age_days=91)
    ops, predicted = plan_transit_key(key, desired(rotate_older_than="90d", min_decryption_version=2,
                                                   oldest_version_in_use=2), NOW)
    assert [op[0] for op in ops] == ["rotate", "config"]
    assert ops[1][1] == {"min_decryption_version": 2}
    assert predicted["latest_version"] == 3 and sorted(predicted["versions"]) == ["2", "3"]


def test_plan_refusals_send_nothing():
    key = vault_key(latest=3)
    for options, text in [
        (dict(type="rsa-2048"), "type cannot change"),
        (dict(min_decryption_version=3), "refusing to raise"),
        (dict(min_available_version=2), "min_encryption_version to be set first"),
        (dict(min_encryption_version=2, min_available_version=3), "may not exceed"),
        (dict(exportable=False, allow_plaintext_backup=False), None),
    ]:
        if text is None:
            assert plan_transit_key(key, desired(**options), NOW)[0] == []
            continue
        with pytest.raises(TransitPlanError, match=text):
            plan_transit_key(key, desired(**options), NOW)


def test_plan_exportable_is_one_way():
    key = vault_key(exportable=True)
    with pytest.raises(TransitPlanError, match="cannot be turned off"):
        plan_transit_key(key, desired(exportable=False), NOW)


def test_plan_delete():
    assert plan_transit_key(None, desired(state="absent"), NOW) == ([], None)
    with pytest.raises(TransitPlanError, match="deletion_allowed is false"):
        plan_transit_key(vault_key(), desired(state="absent"), NOW)
    ops, predicted = plan_transit_key(vault_key(), desired(state="absent", deletion_allowed=True,
                                                           allow_data_loss=True), NOW)
    assert [op[0] for op in ops] == ["config", "delete"] and predicted is None
    ops = plan_transit_key(vault_key(deletion_allowed=True), desired(state="absent", allow_data_loss=True), NOW)[0]
    assert [op[0] for op in ops] == ["delete"]


def test_plan_lowering_min_decryption_shows_old_versions_again():
    key = normalize_key({"name": "k", "type": "aes256-gcm96", "latest_version": 3, "min_decryption_version": 3,
                         "keys": {"3": 1795454353}})
    ops, predicted = plan_transit_key(key, desired(min_decryption_version=2), NOW)
    assert ops[0][1] == {"min_decryption_version": 2}
    # Vault's answer only lists versions >= min_decryption_version; the old one's time is unknown.
    assert predicted["min_decryption_version"] == 2


def test_plan_trim_drops_versions():
    key = vault_key(latest=4, min_dec=3, min_enc=3)
    ops, predicted = plan_transit_key(key, desired(min_available_version=3, allow_data_loss=True), NOW)
    assert ops == [("trim", {"min_available_version": 3}, "trimmed versions below 3")]
    assert sorted(predicted["versions"]) == ["3", "4"]
