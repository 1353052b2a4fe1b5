# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the three-step transit rotation (the transit_rotation role), as pure functions.

The role runs a fixed number of bulk tasks whatever the number of keys; between them, these
functions (exposed as filters) decide what the next task sends:

* :func:`plan` - normalise the key list; the step-1 requests; consumers grouped by type.
* :func:`records` - census records of one consumer type from its task file's results (see _consumers.py).
* :func:`shares` - the work items of a consumer shared between hosts (primary key ranges).
* :func:`pending` - after step 1, the keys with anything left for steps 2-4 (none on a run with nothing due).
* :func:`decide` - per key, the oldest version still in use and how far min_decryption_version
  may go: never above that version, and not at all when a consumer could not be read/rewrapped.
* :func:`report` - one report entry per key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.keyops.lifecycle.plugins.module_utils._consumers import (
    CONSUMER_TYPES, ConsumerInputError, check_consumer, public_args)


class RotationInputError(ValueError):
    pass


def plan(keys, default_mount="transit", default_host="localhost"):
    """Normalise ``transit_rotation_keys``; return the step-1 requests and the consumers by type."""
    normalised, step1, consumers, seen = [], [], {}, set()
    for index, key in enumerate(keys or []):
        if not isinstance(key, dict) or not key.get("name"):
            raise RotationInputError("transit_rotation_keys[%d] needs a name" % index)
        mount = key.get("mount") or default_mount
        if (mount, key["name"]) in seen:
            raise RotationInputError("key %s in mount %s is listed twice" % (key["name"], mount))
        seen.add((mount, key["name"]))
        entry = {"name": key["name"], "mount": mount, "trim": bool(key.get("trim")),
                 "trim_without_backup": bool(key.get("trim_without_backup")),
                 "rotate_older_than": key.get("rotate_older_than"), "consumers": []}
        request = {"name": key["name"], "mount": mount}
        if key.get("rotate_older_than"):
            request["rotate_older_than"] = str(key["rotate_older_than"])
        else:
            request["rotate"] = True  # no schedule given: rotate on every run
        step1.append(request)
        for position, consumer in enumerate(key.get("consumers") or []):
            try:
                row = check_consumer(consumer)
            except ConsumerInputError as exc:
                raise RotationInputError("key %s consumer %d %s" % (key["name"], position, exc))
            host = consumer.get("host") or default_host
            args = public_args(row, consumer)
            args.update(name=key["name"], mount=mount)
            record = {"id": row.identity(dict(args, host=host)), "type": row.name, "host": host,
                      "hosts": consumer.get("hosts") or [host],
                      "key": key["name"], "mount": mount, "args": args,
                      # Secret options are read from the user's own variable at the task (never put in facts).
                      "source": {"key": index, "consumer": position}}
            entry["consumers"].append(record["id"])
            consumers.setdefault(row.name, []).append(record)
        normalised.append(entry)
    return {"keys": normalised, "step1": step1, "consumers": consumers}


def _empty_record(consumer, error):
    return {"id": consumer["id"], "type": consumer["type"], "key": consumer["key"], "mount": consumer["mount"],
            "ok": False, "error": error, "census_before": {}, "census_after": {}, "rewrapped": 0,
            "oldest_version_in_use": None}


CENSUS_FIELDS = ("census_before", "census_after", "rewrapped", "oldest_version_in_use")


def _record(consumer, result, failed):
    record = _empty_record(consumer, (result.get("msg") or "failed") if failed else None)
    record["ok"] = not failed
    for name in CENSUS_FIELDS:
        if not failed and result.get(name) is not None:
            record[name] = result[name]
    return record


def _per_host_records(loop_results):
    """One bulk result per host (``register`` of a loop over host groups) with a ``consumers`` list."""
    records = []
    for result in loop_results or []:
        host, consumers = result["transit_rotation_host_group"] if "transit_rotation_host_group" in result \
            else result["item"]
        outcomes = result.get("consumers")
        if result.get("unreachable") or outcomes is None:
            reason = result.get("msg") or "failed"
            if result.get("unreachable"):
                reason = "host %s is unreachable: %s" % (host, reason)
            records.extend(_empty_record(consumer, reason) for consumer in consumers)
            continue
        for consumer, outcome in zip(consumers, outcomes):
            record = _record(consumer, outcome, failed=not outcome.get("ok"))
            record["error"] = outcome.get("error") if not outcome.get("ok") else None
            records.append(record)
    return records


def _consumer_of(result):
    return result.get("transit_rotation_consumer") or result["item"]


def _failed(result):
    return bool(result.get("failed") or result.get("unreachable"))


def _per_item_records(loop_results):
    """One module result per consumer; a failed item (module error, timeout, refused delete) blocks its key."""
    return [_record(_consumer_of(result), result, _failed(result)) for result in loop_results or []]


def _add_census(total, census):
    for version, count in (census or {}).items():
        total[version] = total.get(version, 0) + count
    return dict(sorted(total.items(), key=lambda item: int(item[0])))


def _shared_records(census_results, share_results):
    """A consumer whose work was shared out (one result per share) and then counted as a whole.

    The final census decides; the shares contribute what was rewrapped and the census before, and any
    share that failed blocks the consumer.
    """
    shares = {}
    for result in share_results or []:
        # async_status results carry the launch result (and its share) in their loop variable.
        share = result.get("transit_rotation_share") or result["transit_rotation_job"]["transit_rotation_share"]
        result = dict(result, transit_rotation_share=share)
        shares.setdefault(share["consumer"]["id"], []).append(result)
    records = []
    for result in census_results or []:
        consumer = _consumer_of(result)
        record = _record(consumer, result, _failed(result))
        mine = shares.get(consumer["id"], [])
        failed = [r for r in mine if _failed(r) or not r.get("finished", True)]
        if failed:
            share = failed[0]["transit_rotation_share"]
            record.update(ok=False, error="share %s on %s: %s" % (
                share.get("range") or "whole table", share["host"],
                failed[0].get("msg") or "did not finish"))
        census_before = {}
        for share_result in mine:
            census_before = _add_census(census_before, share_result.get("census_before"))
        record["census_before"] = census_before if mine else record["census_before"]
        record["rewrapped"] = sum(r.get("rewrapped") or 0 for r in mine if not _failed(r))
        records.append(record)
    return records


_RECORDS = {"per_host": _per_host_records, "per_item": _per_item_records}


def records(loop_results, consumer_type, share_results=None):
    """Census records of one consumer type from its task file's registered results (see _consumers.py)."""
    kind = CONSUMER_TYPES[consumer_type].records
    if kind == "shared":
        return _shared_records(loop_results, share_results)
    return _RECORDS[kind](loop_results)


def shares(consumers, range_results=None):
    """The work items of consumers shared between hosts: one per host, each with its primary key range.

    ``range_results``: the registered loop that asked the consumer's module for as many ranges as
    it has hosts.  A consumer with one host is one share over the whole table.
    """
    ranges = dict((_consumer_of(r)["id"], r.get("primary_key_ranges") or []) for r in range_results or [])
    items = []
    for consumer in consumers or []:
        hosts = consumer.get("hosts") or [consumer["host"]]
        if len(hosts) == 1:
            items.append({"consumer": consumer, "host": hosts[0], "range": None})
            continue
        planned = ranges.get(consumer["id"])
        if planned is None or len(planned) != len(hosts):
            raise RotationInputError("consumer %s: no primary key ranges planned for its %d hosts"
                                     % (consumer["id"], len(hosts)))
        items.extend({"consumer": consumer, "host": host, "range": planned[index]}
                     for index, host in enumerate(hosts))
    return items


def latest_version(step1_keys, mount, name):
    """The key's latest version after step 1 (what step 2 rewraps to)."""
    for entry in step1_keys or []:
        if entry["mount"] == mount and entry["name"] == name:
            return entry["key"]["latest_version"]
    raise RotationInputError("key %s in mount %s is not in the step-1 results" % (name, mount))


def _records_of(key, records):
    """The records of ``key``'s consumers, in the order the key declares them."""
    order = dict((ident, position) for position, ident in enumerate(key["consumers"]))
    mine = [r for r in records or [] if (r["mount"], r["key"]) == (key["mount"], key["name"])]
    return sorted(mine, key=lambda record: order.get(record["id"], len(order)))


def _by_key(entries):
    return dict(((entry["mount"], entry["name"]), entry) for entry in entries or [])


def pending(rotation_plan, step1_keys):
    """The keys steps 2-4 have work for: rotated now, or with versions below the latest still decryptable,
    or (with trim) destroyable.

    A key whose min_decryption_version is already its latest version has nothing to re-encrypt: Vault decrypts no
    older ciphertext, and encrypts only with versions at or above min_decryption_version, so no consumer can hold
    an older one that still matters.  A run where no key is pending reads no consumer.
    """
    after_step1 = _by_key(step1_keys)
    names = []
    for key in rotation_plan["keys"]:
        step1 = after_step1[(key["mount"], key["name"])]
        state = step1["key"]
        if (step1.get("changed") or state["min_decryption_version"] < state["latest_version"]
                # versions start at 1; min_available_version 0 = none destroyed yet
                or (key["trim"] and max(state["min_available_version"], 1) < state["min_decryption_version"])):
            names.append(key["name"])
    return names


def decide(rotation_plan, step1_keys, records):
    """Per key: oldest version in use, blocking consumers, and the step-3/4 requests."""
    after_step1 = _by_key(step1_keys)
    decisions, raise_requests, trim_requests, unbacked = [], [], [], []
    for key in rotation_plan["keys"]:
        state = after_step1[(key["mount"], key["name"])]["key"]
        mine = _records_of(key, records)
        blocked_by = [r["id"] for r in mine if not r["ok"]]
        in_use = [r["oldest_version_in_use"] for r in mine if r["ok"] and r["oldest_version_in_use"] is not None]
        # Consumers holding nothing need nothing: then the latest version is the oldest in use.
        oldest = min(in_use) if in_use else state["latest_version"]
        decision = {"name": key["name"], "mount": key["mount"], "blocked_by": blocked_by,
                    "no_consumers": not key["consumers"], "oldest_version_in_use": oldest, "raise_to": None,
                    "trim_to": None}
        min_decryption = state["min_decryption_version"]
        if key["consumers"] and not blocked_by and oldest > min_decryption:
            decision["raise_to"] = min_decryption = oldest
            raise_requests.append({"name": key["name"], "mount": key["mount"],
                                   "min_decryption_version": oldest, "oldest_version_in_use": oldest})
        if key["trim"] and not blocked_by and min_decryption > state["min_available_version"]:
            decision["trim_to"] = min_decryption
            request = {"name": key["name"], "mount": key["mount"],
                       "min_encryption_version": max(min_decryption, state["min_encryption_version"]),
                       "min_available_version": min_decryption}
            if key.get("trim_without_backup"):
                request["allow_data_loss"] = True
            elif not (state.get("exportable") and state.get("allow_plaintext_backup")):
                # No backup can be taken first and nobody said the versions may go: not trimmed (the role fails
                # before step 4 naming the key and both ways out).
                unbacked.append("%s (mount %s)" % (key["name"], key["mount"]))
            trim_requests.append(request)
        decisions.append(decision)
    return {"keys": decisions, "raise": raise_requests, "trim": trim_requests, "trim_unbacked": unbacked}


def report(rotation_plan, step1_keys, decisions, step3_keys=None, step4_keys=None, records=None):
    """One entry per key: versions and min_decryption_version before/after, consumers, why it stopped."""
    step1, step3, step4 = _by_key(step1_keys), _by_key(step3_keys), _by_key(step4_keys)
    nothing_due = decisions is None  # steps 2-4 did not run: no key was pending (see pending())
    if nothing_due:
        decisions = decide(rotation_plan, step1_keys, [])
    decided = _by_key(decisions["keys"])
    entries = []
    for key in rotation_plan["keys"]:
        ident = (key["mount"], key["name"])
        first = step1[ident]
        after = (step4.get(ident) or step3.get(ident) or first)["key"]
        decision = decided[ident]
        if decision["no_consumers"]:
            note = "no consumers declared: min_decryption_version left as is"
        elif decision["blocked_by"]:
            note = "min_decryption_version kept: blocked by " + ", ".join(decision["blocked_by"])
        elif nothing_due:
            note = "ok: nothing due (min_decryption_version is the latest version; consumers not read)"
        else:
            note = "ok"
        trimmed = step4.get(ident)
        trim = None
        if trimmed and trimmed.get("changed"):
            # Where the backup taken before the trim is (never its content), or that there is none.
            trim = {"below": trimmed["key"]["min_available_version"], "backup": trimmed.get("backup"),
                    "irreversible": bool(trimmed.get("irreversible"))}
        entries.append({
            "name": key["name"], "mount": key["mount"], "rotated": bool(first["changed"]),
            "trim": trim,
            "version_before": first["before"]["latest_version"], "version_after": after["latest_version"],
            "min_decryption_version_before": first["before"]["min_decryption_version"],
            "min_decryption_version_after": after["min_decryption_version"],
            "min_available_version_after": after["min_available_version"],
            "oldest_version_in_use": decision["oldest_version_in_use"],
            "consumers": _records_of(key, records),
            "blocked_by": decision["blocked_by"], "note": note,
        })
    return entries


def _census_text(counts):
    return ", ".join("v%s: %s" % (version, count)
                     for version, count in sorted((counts or {}).items(), key=lambda item: int(item[0]))) or "-"


def report_markdown(entries):
    """The Markdown form of :func:`report`'s entries (what operators read after a run)."""
    lines = ["# Transit key rotation report", "",
             "| key | mount | rotated | version before → after | min_decryption_version before → after "
             "| oldest in use | status |",
             "|---|---|---|---|---|---|---|"]
    for key in entries:
        lines.append("| %s | %s | %s | %s → %s | %s → %s | %s | %s |" % (
            key["name"], key["mount"], "yes" if key["rotated"] else "no", key["version_before"],
            key["version_after"], key["min_decryption_version_before"], key["min_decryption_version_after"],
            key["oldest_version_in_use"], key["note"]))
    trims = [key for key in entries if key.get("trim")]
    if trims:
        lines += ["", "## Trims", "", "| key | mount | versions destroyed below | backup |", "|---|---|---|---|"]
        for key in trims:
            backup = key["trim"]["backup"]
            if backup:
                where = "`%s` (v%s-v%s%s, sha256 %s)" % (
                    backup["path"], backup["first_version"], backup["last_version"],
                    ", GPG-encrypted" if backup.get("encrypted") else "", backup["sha256"] or "- (check mode)")
            else:
                where = "none - IRREVERSIBLE (trim_without_backup)"
            lines.append("| %s | %s | %s | %s |" % (key["name"], key["mount"], key["trim"]["below"], where))
    lines += ["", "## Consumers", "", "| key | consumer | census before | census after | rewrapped | status |",
              "|---|---|---|---|---|---|"]
    for key in entries:
        for consumer in key["consumers"]:
            lines.append("| %s | `%s` | %s | %s | %s | %s |" % (
                key["name"], consumer["id"], _census_text(consumer["census_before"]),
                _census_text(consumer["census_after"]), consumer["rewrapped"],
                "ok" if consumer["ok"] else "BLOCKING: %s" % consumer["error"]))
    return "\n".join(lines) + "\n"
