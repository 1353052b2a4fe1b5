# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the rolling upgrade (playbooks/vault_upgrade.yml), as pure functions (private).

* :func:`plan_upgrade` - may the cluster go from what it runs (and has ever run) to the target version?
  A downgrade is refused, and so is any step the vendor's upgrade notes do not support, unless forced.
* :func:`autopilot_ready` - is the raft cluster healthy enough to restart a node now, and is a restarted
  node back as a healthy voter of the target version?
* :func:`upgrade_report` - versions before/after per node, for the report file and the output.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+~]?([0-9A-Za-z.\-]+))?")


class UpgradeInputError(ValueError):
    pass


def parse_version(text):
    """``(major, minor, patch, prerelease or "")`` from ``2.7.2``, ``v2.7.2``, ``OpenBao v2.7.2 (9e0a...)``."""
    match = _VERSION_RE.search(str(text or ""))
    if not match:
        raise UpgradeInputError("%r is not a version (expected for example 2.7.2)" % (text,))
    major, minor, patch, extra = match.groups()
    return int(major), int(minor), int(patch), extra or ""


def version_text(version):
    text = "%d.%d.%d" % version[:3]
    return text + ("-" + version[3] if version[3] else "")


def _release(version):
    return version[:3]


# The vendor's upgrade notes as rows: (what, test(from, to) -> bool, reason).  Each row that matches refuses
# the step unless forced; rows are checked against the highest version the cluster has ever run.
UPGRADE_NOTES = (
    ("downgrade", lambda old, new: _release(new) < _release(old),
     "a downgrade is not supported: once a newer version has been active its storage changes (an OpenBao 2.6 "
     "node in a cluster that ran 2.7 fails its post-unseal setup with 'check-and-set parameter did not match'); "
     "the way back is the pre-upgrade raft snapshot restored into a fresh cluster of the old version"),
    ("major version change", lambda old, new: new[0] != old[0],
     "a major version change: read the vendor's upgrade notes for it, take a snapshot, and re-run with "
     "vault_upgrade_force=true"),
    ("pre-release target", lambda old, new: bool(new[3]),
     "the target is a pre-release (%s): not for production clusters unless forced"),
)


def plan_upgrade(node_versions, target, history=(), force=False):
    """Per node: upgrade or already there; the refusals (unforced) and the warnings (forced refusals).

    ``node_versions``: ``{host: "2.6.1"}`` as each node reports itself (sys/seal-status);
    ``history``: the versions the cluster has ever run (sys/version-history), so a downgrade is refused even
    when every node was already put back by hand.
    """
    if not node_versions:
        raise UpgradeInputError("no node versions: is the vault group of the inventory empty?")
    wanted = parse_version(target)
    running = dict((host, parse_version(text)) for host, text in node_versions.items())
    seen = list(running.values()) + [parse_version(text) for text in history or ()]
    highest = max(seen, key=_release)
    problems = []
    for what, applies, reason in UPGRADE_NOTES:
        if applies(highest, wanted):
            problems.append("%s from %s to %s: %s" % (what, version_text(highest), version_text(wanted),
                                                      reason % version_text(wanted) if "%s" in reason else reason))
    nodes = dict((host, {"before": version_text(version),
                         "action": "skip" if _release(version) == _release(wanted) and version[3] == wanted[3]
                         else "upgrade"}) for host, version in running.items())
    return {"target": version_text(wanted), "highest_seen": version_text(highest), "nodes": nodes,
            "refused": [] if force else problems, "forced": problems if force else []}


def autopilot_ready(state, node_id=None, version=None):
    """``(ok, reason)`` from ``sys/storage/raft/autopilot/state``'s data.

    Before restarting a node: the cluster is healthy and survives losing one voter (``failure_tolerance``
    >= 1; ``healthy`` alone is true while new nodes are still non-voters).  After: the node is a healthy
    voter again and runs ``version`` (a quick restart never shows as unhealthy - only the version tells).
    """
    if not isinstance(state, dict) or "servers" not in state:
        return False, "no autopilot state (is the storage raft, and the token allowed to read it?)"
    if not state.get("healthy"):
        return False, "the cluster is not healthy (autopilot)"
    tolerance = state.get("failure_tolerance") or 0
    # A one-node cluster has no tolerance to keep: its upgrade is a restart with downtime, whatever we check.
    if tolerance < 1 and len(state.get("voters") or []) > 1:
        return False, "failure tolerance is %d: restarting a voter now could lose quorum" % tolerance
    if node_id is None:
        if len(state.get("voters") or []) <= 1:
            return True, "healthy, a single voter (its restart means downtime)"
        return True, "healthy, failure tolerance %d" % tolerance
    server = (state.get("servers") or {}).get(node_id)
    if server is None:
        return False, "node %s is not a member of the raft cluster" % node_id
    if node_id not in (state.get("voters") or []) or server.get("status") not in ("voter", "leader"):
        return False, "node %s is not a voter yet (%s)" % (node_id, server.get("status"))
    if not server.get("healthy"):
        return False, "node %s is not healthy (last contact %s)" % (node_id, server.get("last_contact"))
    if version is not None and server.get("version") and \
            _release(parse_version(server["version"])) != _release(parse_version(version)):
        return False, "node %s runs %s, not %s yet" % (node_id, server["version"], version)
    return True, "node %s is a healthy voter%s" % (node_id, " at %s" % server.get("version") if version else "")


def upgrade_report(plan, versions_after, snapshot=None, preflight=None):
    """One entry per node plus what the run checked first (snapshot, preflight)."""
    nodes = []
    for host in sorted(plan["nodes"]):
        before = plan["nodes"][host]["before"]
        after = versions_after.get(host)
        nodes.append({"host": host, "version_before": before, "version_after": after,
                      "upgraded": after is not None and after != before, "action": plan["nodes"][host]["action"]})
    return {"target": plan["target"], "highest_seen": plan["highest_seen"], "forced": plan["forced"],
            "snapshot": snapshot, "preflight": preflight, "nodes": nodes,
            "complete": all(n["version_after"] == plan["target"] for n in nodes)}


def upgrade_report_markdown(report):
    lines = ["# Vault/OpenBao upgrade report", "", "Target: %s" % report["target"], ""]
    snapshot = report.get("snapshot") or {}
    if snapshot:
        lines += ["Snapshot before the first restart: `%s` (sha256 %s)" % (snapshot.get("path"), snapshot.get("sha256")),
                  ""]
    if report.get("forced"):
        lines += ["Forced past: " + "; ".join(report["forced"]), ""]
    lines += ["| node | before | after | upgraded |", "|---|---|---|---|"]
    for node in report["nodes"]:
        lines.append("| %s | %s | %s | %s |" % (node["host"], node["version_before"], node["version_after"] or "-",
                                                "yes" if node["upgraded"] else "no"))
    return "\n".join(lines) + "\n"
