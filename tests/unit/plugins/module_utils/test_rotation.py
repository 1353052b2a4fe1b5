"""The rotation role's decisions, without servers."""

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _rotation


def key_state(latest, min_dec=1, min_enc=0, min_avail=0):
    return {"latest_version": latest, "min_decryption_version": min_dec, "min_encryption_version": min_enc,
            "min_available_version": min_avail}


def step1(name, latest, min_dec=1, changed=True, mount="transit", **extra):
    before = key_state(latest - (1 if changed else 0), min_dec)
    return {"name": name, "mount": mount, "changed": changed, "before": before,
            "key": dict(key_state(latest, min_dec, **extra), name=name)}


def record(plan, key, index, ok=True, oldest=None, error=None):
    consumer = [c for c in plan["consumers"]["file"] if c["key"] == key][index]
    out = _rotation._empty_record(consumer, error)
    out.update(ok=ok, oldest_version_in_use=oldest)
    return out


KEYS = [
    {"name": "a", "consumers": [{"type": "file", "path": "/a1"},
                                {"type": "file", "path": "/a2", "host": "h2", "field": "ct"}]},
    {"name": "b", "mount": "m", "rotate_older_than": "90d", "trim": True,
     "consumers": [{"type": "file", "path": "/b"}]},
    {"name": "c"},
]


def test_plan_normalises_and_groups():
    plan = _rotation.plan(KEYS, "transit", "ctl")
    assert plan["step1"] == [{"name": "a", "mount": "transit", "rotate": True},
                             {"name": "b", "mount": "m", "rotate_older_than": "90d"},
                             {"name": "c", "mount": "transit", "rotate": True}]
    ids = [c["id"] for c in plan["consumers"]["file"]]
    assert ids == ["file:ctl:/a1", "file:h2:/a2[ct]", "file:ctl:/b"]
    assert plan["consumers"]["file"][1]["args"] == {"name": "a", "mount": "transit", "path": "/a2", "field": "ct"}


@pytest.mark.parametrize("keys, text", [
    ([{"name": "a", "consumers": [{"type": "floppy"}]}], "unknown type 'floppy'"),
    ([{"consumers": []}], "needs a name"),
    ([{"name": "a"}, {"name": "a", "mount": "transit"}], "listed twice"),
])
def test_plan_rejects_bad_input(keys, text):
    with pytest.raises(_rotation.RotationInputError, match=text):
        _rotation.plan(keys)


def test_decide_raises_to_oldest_version_in_use_only():
    plan = _rotation.plan(KEYS, "transit", "ctl")
    steps = [step1("a", 3), step1("b", 5, min_dec=2, mount="m"), step1("c", 2)]
    records = [record(plan, "a", 0, oldest=3), record(plan, "a", 1, oldest=2), record(plan, "b", 0, oldest=None)]
    decisions = _rotation.decide(plan, steps, records)
    a, b, c = decisions["keys"]
    assert a["oldest_version_in_use"] == 2 and a["raise_to"] == 2          # one consumer still at v2
    assert b["oldest_version_in_use"] == 5 and b["raise_to"] == 5          # empty consumer: latest
    assert b["trim_to"] == 5 and c["no_consumers"] and c["raise_to"] is None
    assert decisions["raise"] == [
        {"name": "a", "mount": "transit", "min_decryption_version": 2, "oldest_version_in_use": 2},
        {"name": "b", "mount": "m", "min_decryption_version": 5, "oldest_version_in_use": 5}]
    assert decisions["trim"] == [{"name": "b", "mount": "m", "min_encryption_version": 5, "min_available_version": 5}]


def test_decide_never_raises_when_a_consumer_failed():
    plan = _rotation.plan(KEYS, "transit", "ctl")
    steps = [step1("a", 3), step1("b", 5, mount="m"), step1("c", 2)]
    records = [record(plan, "a", 0, oldest=3), record(plan, "a", 1, ok=False, error="unreachable"),
               record(plan, "b", 0, oldest=5)]
    decisions = _rotation.decide(plan, steps, records)
    assert decisions["keys"][0]["blocked_by"] == ["file:h2:/a2[ct]"]
    assert [r["name"] for r in decisions["raise"]] == ["b"]


def test_decide_never_lowers():
    plan = _rotation.plan([{"name": "a", "consumers": [{"type": "file", "path": "/x"}]}], "transit", "ctl")
    steps = [step1("a", 4, min_dec=4, changed=False)]
    decisions = _rotation.decide(plan, steps, [record(plan, "a", 0, oldest=3)])
    assert decisions["raise"] == [] and decisions["keys"][0]["raise_to"] is None


def test_file_records_unreachable_and_failed_hosts():
    plan = _rotation.plan(KEYS, "transit", "ctl")
    by_host = {}
    for consumer in plan["consumers"]["file"]:
        by_host.setdefault(consumer["host"], []).append(consumer)
    results = [
        {"transit_rotation_host_group": ["ctl", by_host["ctl"]], "changed": True, "consumers": [
            {"ok": True, "error": None, "census_before": {"1": 2}, "census_after": {"3": 2}, "rewrapped": 2,
             "oldest_version_in_use": 3},
            {"ok": False, "error": "consumer file /b does not exist"}]},
        {"transit_rotation_host_group": ["h2", by_host["h2"]], "unreachable": True, "msg": "ssh: refused"},
    ]
    records = _rotation.records(results, "file")
    expected = [("file:ctl:/a1", True), ("file:ctl:/b", False), ("file:h2:/a2[ct]", False)]
    assert [(r["id"], r["ok"]) for r in records] == expected
    assert records[0]["census_after"] == {"3": 2} and records[0]["oldest_version_in_use"] == 3
    assert records[2]["error"] == "host h2 is unreachable: ssh: refused"


def test_report_uses_latest_step_and_declared_order():
    plan = _rotation.plan(KEYS[:1], "transit", "ctl")
    steps = [step1("a", 3)]
    records = [record(plan, "a", 1, oldest=3), record(plan, "a", 0, oldest=3)]
    decisions = _rotation.decide(plan, steps, records)
    step3 = [dict(step1("a", 3), key=dict(key_state(3, 3), name="a"))]
    (entry,) = _rotation.report(plan, steps, decisions, step3, [], records)
    assert (entry["version_before"], entry["version_after"]) == (2, 3)
    assert (entry["min_decryption_version_before"], entry["min_decryption_version_after"]) == (1, 3)
    assert [c["id"] for c in entry["consumers"]] == ["file:ctl:/a1", "file:h2:/a2[ct]"]
    assert entry["note"] == "ok" and entry["rotated"] is True


def test_k10_and_secret_consumers_are_planned_and_recorded():
    keys = [{"name": "k10", "consumers": [
        {"type": "k10_passkey", "passkey_prefix": "vault-k10", "context": "prod"},
        {"type": "k8s_secret", "secret": "app", "secret_namespace": "pay", "data_keys": ["dek"]}]}]
    plan = _rotation.plan(keys)
    k10, = plan["consumers"]["k10_passkey"]
    secret, = plan["consumers"]["k8s_secret"]
    assert k10["id"] == "k10_passkey:prod:vault-k10" and k10["args"]["passkey_prefix"] == "vault-k10"
    assert secret["id"] == "k8s_secret:default:pay/app" and secret["args"]["data_keys"] == ["dek"]
    records = _rotation.records([
        {"transit_rotation_consumer": k10, "census_before": {"1": 1}, "census_after": {"2": 1},
         "oldest_version_in_use": 2, "rewrapped": 1, "changed": True},
        {"transit_rotation_consumer": secret, "failed": True, "msg": "secret pay/app not found (404)"}], "k10_passkey")
    assert records[0]["ok"] is True and records[0]["oldest_version_in_use"] == 2
    assert records[1]["ok"] is False and records[1]["error"] == "secret pay/app not found (404)"
    decision = _rotation.decide(plan, [step1("k10", 2)], records)
    assert decision["raise"] == [] and decision["keys"][0]["blocked_by"] == ["k8s_secret:default:pay/app"]


def test_consumer_required_fields_and_latest_version():
    with pytest.raises(_rotation.RotationInputError, match=r"\(k10_passkey\) needs passkey_prefix"):
        _rotation.plan([{"name": "k", "consumers": [{"type": "k10_passkey"}]}])
    assert _rotation.latest_version([step1("k", 4)], "transit", "k") == 4
    with pytest.raises(_rotation.RotationInputError, match="not in the step-1 results"):
        _rotation.latest_version([], "transit", "k")


def test_consumer_of_another_type_options_refused():
    with pytest.raises(_rotation.RotationInputError, match=r"consumer 0 \(file\) does not take table"):
        _rotation.plan([{"name": "k", "consumers": [{"type": "file", "path": "/x", "table": "t"}]}])


DATABASE = {"type": "database", "url": "postgresql://app:s3cret@db1/payments", "password": "pw", "table": "accounts",
            "column": "ssn_ct", "primary_key": "id", "context_column": "tenant_ctx", "hosts": ["w1", "w2"]}


def test_database_consumer_secrets_stay_out_of_the_plan():
    plan = _rotation.plan([{"name": "k", "consumers": [DATABASE]}], "transit", "ctl")
    consumer, = plan["consumers"]["database"]
    assert consumer["id"] == "database:postgresql://app:********@db1/payments/accounts.ssn_ct"
    assert "s3cret" not in repr(plan) and "pw" not in repr(consumer["args"])
    assert consumer["source"] == {"key": 0, "consumer": 0} and consumer["hosts"] == ["w1", "w2"]
    assert consumer["args"]["url"] == "postgresql://app:********@db1/payments" and "hosts" not in consumer["args"]


@pytest.mark.parametrize("missing", ["url", "table", "column", "primary_key"])
def test_database_consumer_requires_its_options(missing):
    consumer = dict(DATABASE)
    del consumer[missing]
    with pytest.raises(_rotation.RotationInputError, match=r"\(database\) needs %s" % missing):
        _rotation.plan([{"name": "k", "consumers": [consumer]}])


def test_shares_split_a_consumer_between_its_hosts():
    plan = _rotation.plan([{"name": "k", "consumers": [DATABASE, dict(DATABASE, table="t2", hosts=None)]}], "transit",
                          "ctl")
    shared, single = plan["consumers"]["database"]
    ranges = [{"after": None, "up_to": 500}, {"after": 500, "up_to": None}]
    items = _rotation.shares([shared, single], [{"transit_rotation_consumer": shared, "primary_key_ranges": ranges}])
    assert [(i["host"], i["range"]) for i in items] == [("w1", ranges[0]), ("w2", ranges[1]), ("ctl", None)]
    with pytest.raises(_rotation.RotationInputError, match="no primary key ranges planned"):
        _rotation.shares([shared], [])


def test_shared_records_sum_shares_and_take_the_final_census():
    plan = _rotation.plan([{"name": "k", "consumers": [DATABASE]}], "transit", "ctl")
    consumer, = plan["consumers"]["database"]
    share_results = [
        {"transit_rotation_share": {"consumer": consumer, "host": "w1", "range": {"up_to": 5}}, "finished": 1,
         "census_before": {"1": 5}, "rewrapped": 5},
        {"transit_rotation_share": {"consumer": consumer, "host": "w2", "range": {"after": 5}}, "finished": 1,
         "census_before": {"1": 3, "2": 1}, "rewrapped": 3}]
    census = [{"transit_rotation_consumer": consumer, "census_before": {"2": 9}, "census_after": {"2": 9},
               "oldest_version_in_use": 2}]
    record, = _rotation.records(census, "database", share_results)
    assert record["ok"] and record["census_before"] == {"1": 8, "2": 1} and record["rewrapped"] == 8
    assert record["census_after"] == {"2": 9} and record["oldest_version_in_use"] == 2
    share_results[1].update(failed=True, msg="lost the connection")
    record, = _rotation.records(census, "database", share_results)
    assert not record["ok"] and "w2: lost the connection" in record["error"]


@pytest.mark.parametrize("a, b, c, expected", [
    # nothing rotated, every key's min_decryption_version at its latest version: nothing due
    (step1("a", 3, 3, changed=False), step1("b", 2, 2, changed=False, mount="m", min_avail=2),
     step1("c", 1, 1, changed=False), []),
    # b asks for a trim, but it has one version only: nothing to destroy
    (step1("a", 3, 3, changed=False), step1("b", 1, 1, changed=False, mount="m"), step1("c", 1, 1, changed=False),
     []),
    # rotated now
    (step1("a", 4, 3), step1("b", 2, 2, changed=False, mount="m", min_avail=2), step1("c", 1, 1, changed=False),
     ["a"]),
    # not rotated, but an older version still decrypts (a run that stopped after step 1 or 2)
    (step1("a", 3, 3, changed=False), step1("b", 3, 2, changed=False, mount="m"), step1("c", 1, 1, changed=False),
     ["b"]),
    # b asks for a trim and still keeps a version below min_decryption_version
    (step1("a", 3, 3, changed=False), step1("b", 3, 3, changed=False, mount="m", min_avail=1),
     step1("c", 2, 2, changed=False, min_avail=1), ["b"]),
])
def test_pending_names_the_keys_steps_2_to_4_have_work_for(a, b, c, expected):
    plan = _rotation.plan(KEYS, "transit", "ctl")
    assert _rotation.pending(plan, [a, b, c]) == expected


def test_report_of_a_run_with_nothing_due():
    plan = _rotation.plan(KEYS, "transit", "ctl")
    keys = [step1("a", 3, 3, changed=False), step1("b", 2, 2, changed=False, mount="m"),
            step1("c", 1, 1, changed=False)]
    entries = _rotation.report(plan, keys, None)
    assert [entry["note"].split(":")[0] for entry in entries] == ["ok", "ok", "no consumers declared"]
    assert "nothing due" in entries[0]["note"] and entries[0]["consumers"] == []
    assert [entry["min_decryption_version_after"] for entry in entries] == [3, 2, 1]
    assert not any(entry["blocked_by"] for entry in entries)
