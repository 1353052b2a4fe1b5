# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the three-step transit rotation (the transit_rotation role), as pure functions.

The role runs a fixed number of bulk tasks whatever the number of keys; between them, these
functions (exposed as filters) decide what the next task sends:

* :func:`plan` - normalise the key list; the step-1 requests; consumers grouped by type.
* :func:`file_records` - one census record per file consumer from the bulk rewrap results.
* :func:`decide` - per key, the oldest version still in use and how far min_decryption_version
  may go: never above that version, and not at all when a consumer could not be read/rewrapped.
* :func:`report` - one report entry per key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Consumer type -> the consumer fields passed on to its step-2 module (tasks/consumer_<type>.yml).
CONSUMER_ARGS = {
    "file": ("path", "field"),
    "k10_passkey": ("passkey_prefix", "kubeconfig", "context"),
    "k8s_secret": ("secret", "secret_namespace", "data_keys", "kubeconfig", "context"),
}
REQUIRED_CONSUMER_ARGS = {"file": ("path",), "k10_passkey": ("passkey_prefix",), "k8s_secret": ("secret",)}


class RotationInputError(ValueError):
    pass


def consumer_id(consumer_type, host, consumer):
    if consumer_type == "file":
        field = consumer.get("field")
        return "file:%s:%s%s" % (host, consumer.get("path"), "[%s]" % field if field else "")
    if consumer_type == "k10_passkey":
        return "k10_passkey:%s:%s" % (consumer.get("context") or "default", consumer.get("passkey_prefix"))
    if consumer_type == "k8s_secret":
        return "k8s_secret:%s:%s/%s" % (consumer.get("context") or "default", consumer.get("secret_namespace")
                                        or "default", consumer.get("secret"))
    return "%s:%s" % (consumer_type, consumer.get("name") or consumer.get("path"))


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
                 "rotate_older_than": key.get("rotate_older_than"), "consumers": []}
        request = {"name": key["name"], "mount": mount}
        if key.get("rotate_older_than"):
            request["rotate_older_than"] = str(key["rotate_older_than"])
        else:
            request["rotate"] = True  # no schedule given: rotate on every run
        step1.append(request)
        for position, consumer in enumerate(key.get("consumers") or []):
            consumer_type = consumer.get("type")
            if consumer_type not in CONSUMER_ARGS:
                raise RotationInputError("key %s consumer %d: unknown type %r (known: %s)"
                                         % (key["name"], position, consumer_type, ", ".join(sorted(CONSUMER_ARGS))))
            missing = [arg for arg in REQUIRED_CONSUMER_ARGS[consumer_type] if not consumer.get(arg)]
            if missing:
                raise RotationInputError("key %s consumer %d (%s) needs %s"
                                         % (key["name"], position, consumer_type, ", ".join(missing)))
            host = consumer.get("host") or default_host
            record = {"id": consumer_id(consumer_type, host, consumer), "type": consumer_type, "host": host,
                      "key": key["name"], "mount": mount,
                      "args": dict(name=key["name"], mount=mount,
                                   **dict((arg, consumer.get(arg)) for arg in CONSUMER_ARGS[consumer_type]))}
            entry["consumers"].append(record["id"])
            consumers.setdefault(consumer_type, []).append(record)
        normalised.append(entry)
    return {"keys": normalised, "step1": step1, "consumers": consumers}


def _empty_record(consumer, error):
    return {"id": consumer["id"], "type": consumer["type"], "key": consumer["key"], "mount": consumer["mount"],
            "ok": False, "error": error, "census_before": {}, "census_after": {}, "rewrapped": 0,
            "min_version_in_use": None}


def file_records(loop_results):
    """Census records from the per-host bulk rewrap loop (``register`` of a loop over host groups)."""
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
            record = _empty_record(consumer, outcome.get("error"))
            record.update(ok=bool(outcome.get("ok")))
            for name in ("census_before", "census_after", "rewrapped", "min_version_in_use"):
                if outcome.get(name) is not None:
                    record[name] = outcome[name]
            records.append(record)
    return records


def module_records(loop_results):
    """Census records from a step-2 loop whose module returns census_before/after and min_version_in_use.

    A failed item (module error, timeout, refused delete) blocks its key: its record is not ok.
    """
    records = []
    for result in loop_results or []:
        consumer = result.get("transit_rotation_consumer") or result["item"]
        failed = bool(result.get("failed") or result.get("unreachable"))
        record = _empty_record(consumer, result.get("msg") if failed else None)
        record["ok"] = not failed
        for name in ("census_before", "census_after", "rewrapped", "min_version_in_use"):
            if not failed and result.get(name) is not None:
                record[name] = result[name]
        records.append(record)
    return records


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


def decide(rotation_plan, step1_keys, records):
    """Per key: oldest version in use, blocking consumers, and the step-3/4 requests."""
    after_step1 = _by_key(step1_keys)
    decisions, raise_requests, trim_requests = [], [], []
    for key in rotation_plan["keys"]:
        state = after_step1[(key["mount"], key["name"])]["key"]
        mine = _records_of(key, records)
        blocked_by = [r["id"] for r in mine if not r["ok"]]
        in_use = [r["min_version_in_use"] for r in mine if r["ok"] and r["min_version_in_use"] is not None]
        # Consumers holding nothing need nothing: then the latest version is the oldest in use.
        oldest = min(in_use) if in_use else state["latest_version"]
        decision = {"name": key["name"], "mount": key["mount"], "blocked_by": blocked_by,
                    "no_consumers": not key["consumers"], "oldest_in_use": oldest, "raise_to": None,
                    "trim_to": None}
        min_decryption = state["min_decryption_version"]
        if key["consumers"] and not blocked_by and oldest > min_decryption:
            decision["raise_to"] = min_decryption = oldest
            raise_requests.append({"name": key["name"], "mount": key["mount"],
                                   "min_decryption_version": oldest, "in_use_min_version": oldest})
        if key["trim"] and not blocked_by and min_decryption > state["min_available_version"]:
            decision["trim_to"] = min_decryption
            trim_requests.append({"name": key["name"], "mount": key["mount"],
                                  "min_encryption_version": max(min_decryption, state["min_encryption_version"]),
                                  "min_available_version": min_decryption})
        decisions.append(decision)
    return {"keys": decisions, "raise": raise_requests, "trim": trim_requests}


def report(rotation_plan, step1_keys, decisions, step3_keys=None, step4_keys=None, records=None):
    """One entry per key: versions and min_decryption_version before/after, consumers, why it stopped."""
    step1, step3, step4 = _by_key(step1_keys), _by_key(step3_keys), _by_key(step4_keys)
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
        else:
            note = "ok"
        entries.append({
            "name": key["name"], "mount": key["mount"], "rotated": bool(first["changed"]),
            "version_before": first["before"]["latest_version"], "version_after": after["latest_version"],
            "min_decryption_version_before": first["before"]["min_decryption_version"],
            "min_decryption_version_after": after["min_decryption_version"],
            "min_available_version_after": after["min_available_version"],
            "oldest_in_use": decision["oldest_in_use"],
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
            key["oldest_in_use"], key["note"]))
    lines += ["", "## Consumers", "", "| key | consumer | census before | census after | rewrapped | status |",
              "|---|---|---|---|---|---|"]
    for key in entries:
        for consumer in key["consumers"]:
            lines.append("| %s | `%s` | %s | %s | %s | %s |" % (
                key["name"], consumer["id"], _census_text(consumer["census_before"]),
                _census_text(consumer["census_after"]), consumer["rewrapped"],
                "ok" if consumer["ok"] else "BLOCKING: %s" % consumer["error"]))
    return "\n".join(lines) + "\n"
