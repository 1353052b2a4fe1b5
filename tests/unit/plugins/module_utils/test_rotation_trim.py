"""The rotation role's trim step: backups or the acknowledgement, and what the report says (no servers)."""

from ansible_collections.keyops.lifecycle.plugins.module_utils import _rotation

from .test_rotation import key_state, record, step1


def backupable(name, latest):
    step = step1(name, latest)
    step["key"].update(exportable=True, allow_plaintext_backup=True)
    return step


KEYS = [{"name": "safe", "trim": True, "consumers": [{"type": "file", "path": "/s"}]},
        {"name": "ack", "trim": True, "trim_without_backup": True, "consumers": [{"type": "file", "path": "/a"}]},
        {"name": "bare", "trim": True, "consumers": [{"type": "file", "path": "/b"}]}]


def test_decide_asks_for_a_backup_or_the_acknowledgement():
    plan = _rotation.plan(KEYS, "transit", "ctl")
    steps = [backupable("safe", 3), step1("ack", 3), step1("bare", 3)]
    records = [record(plan, name, 0, oldest=3) for name in ("safe", "ack", "bare")]
    decisions = _rotation.decide(plan, steps, records)
    assert decisions["trim_unbacked"] == ["bare (mount transit)"]
    trims = dict((r["name"], r) for r in decisions["trim"])
    assert "allow_data_loss" not in trims["safe"] and trims["ack"]["allow_data_loss"] is True


def test_report_says_where_the_backup_is_or_that_the_trim_was_irreversible():
    plan = _rotation.plan(KEYS[:2], "transit", "ctl")
    steps = [backupable("safe", 3), step1("ack", 3)]
    records = [record(plan, name, 0, oldest=3) for name in ("safe", "ack")]
    decisions = _rotation.decide(plan, steps, records)
    backup = {"path": "/b/transit.safe.v1-v3.x.transit-backup", "sha256": "ab" * 32, "encrypted": False,
              "first_version": 1, "last_version": 3}
    step4 = [dict(step1("safe", 3), key=dict(key_state(3, 3, 3, 3), name="safe"), backup=backup, irreversible=False),
             dict(step1("ack", 3), key=dict(key_state(3, 3, 3, 3), name="ack"), backup=None, irreversible=True)]
    entries = _rotation.report(plan, steps, decisions, [], step4, records)
    assert entries[0]["trim"] == {"below": 3, "backup": backup, "irreversible": False}
    assert entries[1]["trim"] == {"below": 3, "backup": None, "irreversible": True}
    markdown = _rotation.report_markdown(entries)
    assert "| safe | transit | 3 | `%s` (v1-v3, sha256 %s) |" % (backup["path"], backup["sha256"]) in markdown
    assert "| ack | transit | 3 | none - IRREVERSIBLE (trim_without_backup) |" in markdown
