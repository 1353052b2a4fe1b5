"""The rolling upgrade's decisions, without servers."""

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _upgrade


@pytest.mark.parametrize("text, expected", [
    ("2.7.2", (2, 7, 2, "")), ("v2.6.1", (2, 6, 1, "")), ("OpenBao v2.7.2 (9e0a0d3c), built 2026", (2, 7, 2, "")),
    ("Vault v1.15.0-rc1", (1, 15, 0, "rc1")), ("1.15.0+ent", (1, 15, 0, "ent")),
])
def test_parse_version(text, expected):
    assert _upgrade.parse_version(text) == expected


def test_parse_version_refuses_garbage():
    with pytest.raises(_upgrade.UpgradeInputError, match="not a version"):
        _upgrade.parse_version("latest")


def test_an_ordinary_upgrade_is_planned_node_by_node():
    plan = _upgrade.plan_upgrade({"n1": "2.6.1", "n2": "2.7.2"}, "2.7.2", ["2.6.1"])
    assert plan["refused"] == [] and plan["target"] == "2.7.2" and plan["highest_seen"] == "2.7.2"
    assert plan["nodes"] == {"n1": {"before": "2.6.1", "action": "upgrade"}, "n2": {"before": "2.7.2", "action": "skip"}}


@pytest.mark.parametrize("nodes, history, target, what", [
    ({"n1": "2.7.2"}, [], "2.6.1", "downgrade from 2.7.2 to 2.6.1"),
    ({"n1": "2.6.1"}, ["2.6.1", "2.7.2"], "2.6.1", "downgrade"),   # the cluster ran 2.7.2 once
    ({"n1": "2.7.2"}, [], "3.0.0", "major version change"),
    ({"n1": "2.7.2"}, [], "2.8.0-rc1", "pre-release target"),
])
def test_unsupported_steps_are_refused_unless_forced(nodes, history, target, what):
    plan = _upgrade.plan_upgrade(nodes, target, history)
    assert len(plan["refused"]) == 1 and what in plan["refused"][0]
    forced = _upgrade.plan_upgrade(nodes, target, history, force=True)
    assert forced["refused"] == [] and what in forced["forced"][0]


def state(**servers):
    return {"healthy": True, "failure_tolerance": 1, "voters": [n for n, s in servers.items() if s[0] != "non-voter"],
            "servers": dict((n, {"status": s[0], "healthy": s[1], "version": s[2], "last_contact": "1s"})
                            for n, s in servers.items())}


def test_autopilot_gates():
    healthy = state(n1=("leader", True, "2.6.1"), n2=("voter", True, "2.7.2"), n3=("voter", True, "2.6.1"))
    assert _upgrade.autopilot_ready(healthy) == (True, "healthy, failure tolerance 1")
    assert _upgrade.autopilot_ready(healthy, "n2", "2.7.2")[0]
    assert _upgrade.autopilot_ready(healthy, "n3", "2.7.2") == (False, "node n3 runs 2.6.1, not 2.7.2 yet")
    fragile = dict(healthy, failure_tolerance=0)
    assert "failure tolerance is 0" in _upgrade.autopilot_ready(fragile)[1]
    joining = state(n1=("leader", True, "2.7.2"), n2=("non-voter", True, "2.7.2"))
    assert "not a voter yet" in _upgrade.autopilot_ready(joining, "n2")[1]
    assert "not a member" in _upgrade.autopilot_ready(healthy, "n9")[1]
    assert not _upgrade.autopilot_ready({"errors": []})[0]
    single = dict(state(n1=("leader", True, "2.6.1")), failure_tolerance=0)
    assert _upgrade.autopilot_ready(single) == (True, "healthy, a single voter (its restart means downtime)")
    sick = state(n1=("leader", True, "2.7.2"), n2=("voter", False, "2.7.2"))
    assert "not healthy" in _upgrade.autopilot_ready(sick, "n2")[1]


def test_report():
    plan = _upgrade.plan_upgrade({"n1": "2.6.1", "n2": "2.6.1"}, "2.7.2")
    report = _upgrade.upgrade_report(plan, {"n1": "2.7.2", "n2": "2.6.1"}, {"path": "/s/x.snap", "sha256": "ab"})
    assert [n["upgraded"] for n in report["nodes"]] == [True, False] and report["complete"] is False
    markdown = _upgrade.upgrade_report_markdown(report)
    assert "| n1 | 2.6.1 | 2.7.2 | yes |" in markdown and "/s/x.snap" in markdown
