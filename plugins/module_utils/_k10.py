# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kasten K10 passkeys and migration strings (private).

The pure functions decide (what a passkey's status means, whether a delete is safe, what to patch, which
of the K10 migration-string failure's two failure cases an import hit); :class:`K10` does the API calls through ``_k8s``.
Both passkey status shapes are understood: 7.x (``status.inuse``, one passkey in use) and 8.x
(``status.valid``, every passkey that decrypts the primary key).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import K8sModuleError, resource_path

PASSKEY_API = ("vault.kio.kasten.io", "v1alpha1", "passkeys")
POLICY_API = ("config.kio.kasten.io", "v1alpha1", "policies")
RUN_ACTION_API = ("actions.kio.kasten.io", "v1alpha1", "runactions")
VERSION_ANNOTATION = "keyops.io/transit-key-version"
MANAGED_ANNOTATION = "keyops.io/managed-by"
AUTH_FAILED = "message authentication failed"
HIDDEN = "(hidden)"


# ------------------------------------------------------------------ passkeys: pure
def passkey_spec(params):
    """The Passkey spec the module options describe; exactly one key source must be given."""
    sources = [key for key in ("vault_transit_key_name", "aws_cmk_key_id", "passphrase_secret") if params.get(key)]
    if len(sources) != 1:
        raise K8sModuleError("state=present needs exactly one of vault_transit_key_name, aws_cmk_key_id or "
                             "passphrase_secret (got %s)" % (", ".join(sources) or "none"))
    spec = {}
    if params.get("vault_transit_key_name"):
        spec["vaulttransitkeyname"] = params["vault_transit_key_name"]
        spec["vaulttransitpath"] = params.get("vault_transit_path") or "transit"
    elif params.get("aws_cmk_key_id"):
        spec["awscmkkeyid"] = params["aws_cmk_key_id"]
    else:
        ref = params["passphrase_secret"]
        spec["passphrase"] = {"name": ref["name"], "namespace": ref.get("namespace") or "kasten-io"}
    if params.get("usenow"):
        spec["usenow"] = True
    return spec


def _normal(spec):
    spec = dict(spec or {})
    if spec.get("vaulttransitpath"):
        spec["vaulttransitpath"] = spec["vaulttransitpath"].strip("/")
    if not spec.get("usenow"):
        spec.pop("usenow", None)
    return spec


def spec_differences(current, desired):
    """Spec fields that differ (``usenow`` counts only when asked for: K10 may clear it once applied)."""
    have, want = _normal(current), _normal(desired)
    fields = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if "usenow" in fields and not want.get("usenow"):
        fields.remove("usenow")
    return fields


def shape(passkey):
    """7 or 8: which K10 status shape this passkey carries (None before K10 wrote a status)."""
    status = passkey.get("status") or {}
    if "valid" in status:
        return 8
    if "inuse" in status:
        return 7
    return None


def summary(passkey):
    """What an operator needs about a passkey; never a secret (a spec only names keys and Secrets)."""
    status = passkey.get("status") or {}
    annotations = (passkey.get("metadata") or {}).get("annotations") or {}
    version = annotations.get(VERSION_ANNOTATION)
    spec = passkey.get("spec") or {}
    return {"name": passkey["metadata"]["name"], "keytype": status.get("keytype") or _keytype(spec),
            "shape": shape(passkey), "in_use": bool(status.get("inuse")), "valid": is_valid(passkey),
            "error": status.get("error"), "transit_key_version": int(version) if version else None,
            "vault_transit_key_name": spec.get("vaulttransitkeyname"),
            "vault_transit_path": (spec.get("vaulttransitpath") or "").strip("/") or None,
            "aws_cmk_key_id": spec.get("awscmkkeyid"), "spec": spec}


def _keytype(spec):
    for field, keytype in (("vaulttransitkeyname", "vault"), ("awscmkkeyid", "awscmk"), ("passphrase", "passphrase")):
        if spec.get(field):
            return keytype
    return None


def is_valid(passkey):
    """8.x: ``status.valid``; 7.x: K10 wrote a status without an error."""
    status = passkey.get("status") or {}
    if "valid" in status:
        return bool(status["valid"]) and not status.get("error")
    return bool(status) and not status.get("error")


def ready(passkey, usenow):
    """True when K10 has taken the passkey: valid, and in use when ``usenow`` on a 7.x K10."""
    if not is_valid(passkey):
        return False
    return not (usenow and shape(passkey) == 7) or bool(passkey["status"].get("inuse"))


def failed(passkey):
    """K10's reason when it could not take the passkey, else None."""
    return (passkey.get("status") or {}).get("error")


def delete_refusal(name, passkeys):
    """Why deleting ``name`` would be unsafe (the passkey in use; the last valid passkey), or None."""
    target = next((p for p in passkeys if p["metadata"]["name"] == name), None)
    if target is None:
        return None
    if (target.get("status") or {}).get("inuse"):
        return ("passkey %s is the one K10 uses now: deleting it would leave the primary key without its key. "
                "Create a new passkey with usenow: true, wait until it is in use, then delete this one" % name)
    others = [p for p in passkeys if p["metadata"]["name"] != name and is_valid(p)]
    if is_valid(target) and not others:
        return ("passkey %s is the last valid passkey: without it K10 cannot decrypt its primary key. Create "
                "another passkey and wait until it is valid first" % name)
    return None


def replacement_name(name):
    """The stand-in passkey that keeps a valid key in place while ``name`` is recreated (crash-safe)."""
    return "%s-keyops-replace" % name


def passkey_body(name, spec, transit_key_version=None):
    annotations = {MANAGED_ANNOTATION: "keyops.lifecycle"}
    if transit_key_version is not None:
        annotations[VERSION_ANNOTATION] = str(transit_key_version)
    return {"apiVersion": "vault.kio.kasten.io/v1alpha1", "kind": "Passkey",
            "metadata": {"name": name, "annotations": annotations}, "spec": spec}


def passkey_diff_view(passkey):
    if passkey is None:
        return {}
    view = {"name": passkey["metadata"]["name"], "spec": passkey.get("spec") or {}}
    annotations = (passkey.get("metadata") or {}).get("annotations") or {}
    if annotations.get(VERSION_ANNOTATION):
        view["transit_key_version"] = annotations[VERSION_ANNOTATION]
    return view


# ------------------------------------------------------------------ migration strings: pure
def actions_of(policy, action):
    return [(index, item) for index, item in enumerate((policy.get("spec") or {}).get("actions") or [])
            if item.get("action") == action]


def export_receive_string(policy):
    exports = actions_of(policy, "export")
    if not exports:
        raise K8sModuleError("policy %s/%s has no export action: give the source cluster's export policy"
                             % (policy["metadata"].get("namespace"), policy["metadata"]["name"]))
    value = (exports[0][1].get("exportParameters") or {}).get("receiveString")
    if not value:
        raise K8sModuleError("export policy %s/%s has no exportParameters.receiveString yet: K10 writes it once "
                             "the policy is validated; check the policy's status on the source cluster"
                             % (policy["metadata"].get("namespace"), policy["metadata"]["name"]))
    return value


def import_index(policy):
    imports = actions_of(policy, "import")
    if not imports:
        raise K8sModuleError("policy %s/%s has no import action: name the destination's import policy"
                             % (policy["metadata"].get("namespace"), policy["metadata"]["name"]))
    return imports[0]


def receive_string_patch(policy, receive_string):
    """A JSON patch that sets the import action's receiveString, only if nobody changed the policy meanwhile."""
    index, action = import_index(policy)
    path = "/spec/actions/%d/importParameters" % index
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": policy["metadata"]["resourceVersion"]}]
    if "importParameters" not in action:
        ops.append({"op": "add", "path": path, "value": {"receiveString": receive_string}})
    else:
        ops.append({"op": "add", "path": path + "/receiveString", "value": receive_string})
    return ops


def flatten_error(error):
    """K10's nested error chain -> 'outer: cause: root'."""
    messages = []
    while isinstance(error, dict):
        if error.get("message"):
            messages.append(error["message"])
        error = error.get("cause")
    if isinstance(error, str):
        messages.append(error)
    return ": ".join(messages)


def classify_failure(message, string_was_current):
    """Which of the K10 migration-string failure's cases an import failure is: ``stale_string``, ``source_reinstalled`` or ``other``.

    ``string_was_current``: the import ran with the source's current migration string (None: unknown, the
    string was given directly rather than read from the source).
    """
    if AUTH_FAILED not in (message or ""):
        return "other"
    if string_was_current is None:
        return "authentication_failed"
    return "source_reinstalled" if string_was_current else "stale_string"


CASE_ADVICE = {
    "stale_string": "the import policy held a stale migration string (the source's export policy has a newer one, "
                    "e.g. after a K10 upgrade on the source): run this module with source= (or the current "
                    "receive_string) to copy it and run the import again",
    "source_reinstalled": "the import used the source's current migration string and still cannot open a "
                          "collection: K10 on the source was reinstalled without its disaster-recovery restore, so "
                          "its new primary key cannot open the collections exported before. Restore K10 on the "
                          "source with K10 DR (then propagate the string again), or delete the collections that "
                          "cannot be decrypted from the location profile",
    "authentication_failed": "the collection could not be opened with the given migration string: either the string "
                             "is stale (copy the source export policy's current one: give source= and this module "
                             "does it) or K10 on the source was reinstalled without DR (restore it with K10 DR)",
}


# ------------------------------------------------------------------ I/O
class K10:
    def __init__(self, client):
        self.client = client

    def passkeys(self):
        path = resource_path(*PASSKEY_API)
        return self.client.request("GET", path, what="passkeys.vault.kio.kasten.io").get("items") or []

    def passkey(self, name):
        return self.client.request("GET", resource_path(*PASSKEY_API, name=name), missing_ok=True,
                                   what="passkey %s" % name)

    def create_passkey(self, body):
        return self.client.request("POST", resource_path(*PASSKEY_API), body=body,
                                   what="passkey %s" % body["metadata"]["name"])

    def delete_passkey(self, name):
        return self.client.request("DELETE", resource_path(*PASSKEY_API, name=name), missing_ok=True,
                                   what="passkey %s" % name)

    def policy(self, namespace, name, missing_ok=False):
        return self.client.request("GET", resource_path(POLICY_API[0], POLICY_API[1], POLICY_API[2], namespace, name),
                                   missing_ok=missing_ok, what="policy %s/%s" % (namespace, name))

    def patch_policy(self, namespace, name, ops):
        return self.client.request("PATCH", resource_path(POLICY_API[0], POLICY_API[1], POLICY_API[2], namespace,
                                                          name),
                                   body=ops, content_type="application/json-patch+json",
                                   what="policy %s/%s" % (namespace, name))

    def run_policy(self, namespace, name):
        body = {"apiVersion": "actions.kio.kasten.io/v1alpha1", "kind": "RunAction",
                "metadata": {"generateName": "%s-keyops-" % name[:40], "namespace": namespace,
                             "labels": {"keyops.io/policy": name}},
                "spec": {"subject": {"apiVersion": "config.kio.kasten.io/v1alpha1", "kind": "Policy",
                                     "name": name, "namespace": namespace}}}
        return self.client.request("POST", resource_path(RUN_ACTION_API[0], RUN_ACTION_API[1], RUN_ACTION_API[2],
                                                         namespace), body=body,
                                   what="a RunAction for policy %s/%s" % (namespace, name))

    def run_action(self, namespace, name):
        return self.client.request("GET", resource_path(RUN_ACTION_API[0], RUN_ACTION_API[1], RUN_ACTION_API[2],
                                                        namespace, name), what="runaction %s/%s" % (namespace, name))


class PasskeyRunner:
    """``k10_passkey``: make one passkey present or absent, safely, in check mode too."""

    def __init__(self, k10, params, check_mode, wait_for):
        self.k10, self.params, self.check_mode, self.wait_for = k10, params, check_mode, wait_for
        self.name = params["name"]
        self.actions = []

    def _wait_ready(self, name, usenow):
        ok, passkey = self.wait_for(lambda: self.k10.passkey(name),
                                    lambda p: p is None or failed(p) or ready(p, usenow), self.params["wait_timeout"])
        if passkey is None:
            raise K8sModuleError("passkey %s disappeared while waiting for K10 to take it" % name,
                                 actions=self.actions)
        if failed(passkey):
            raise K8sModuleError("K10 could not use passkey %s: %s" % (name, failed(passkey)), actions=self.actions,
                                 passkey=summary(passkey))
        if not ok:
            raise K8sModuleError("passkey %s was not %s within %ss (status: %s)"
                                 % (name, "in use" if usenow else "valid", self.params["wait_timeout"],
                                    passkey.get("status") or "none yet"), actions=self.actions,
                                 passkey=summary(passkey))
        return passkey

    def _create(self, name, spec, wait):
        self.actions.append("create passkey %s" % name)
        body = passkey_body(name, spec, self.params.get("transit_key_version"))
        if self.check_mode:
            return body
        self.k10.create_passkey(body)
        return self._wait_ready(name, bool(spec.get("usenow"))) if wait else self.k10.passkey(name)

    def _delete(self, name, after_a_planned_create=False):
        """``after_a_planned_create``: the passkey taking over was only predicted in check mode, so K10's
        passkeys do not show it yet and the refusal would be about a state the real run never reaches."""
        refusal = delete_refusal(name, self.k10.passkeys())
        if refusal and not (self.check_mode and after_a_planned_create):
            raise K8sModuleError(refusal, actions=self.actions)
        self.actions.append("delete passkey %s" % name)
        if self.check_mode:
            return
        self.k10.delete_passkey(name)
        ok, _passkey = self.wait_for(lambda: self.k10.passkey(name), lambda p: p is None, self.params["wait_timeout"])
        if not ok:
            raise K8sModuleError("passkey %s still exists %ss after it was deleted" % (name, self.params["wait_timeout"]),
                                 actions=self.actions)

    def present(self):
        desired = passkey_spec(self.params)
        current = self.k10.passkey(self.name)
        stand_in_name = replacement_name(self.name)
        stand_in = self.k10.passkey(stand_in_name)
        before = passkey_diff_view(current)
        taking_over = stand_in is not None
        if current is not None and failed(current) and not is_valid(current) \
                and not (current.get("status") or {}).get("inuse"):
            # K10 never took it (e.g. Vault refused to encrypt): once the cause is fixed, a new one can work.
            self._delete(self.name)
            current = None
        if current is not None and spec_differences(current.get("spec"), desired):
            fields = ", ".join(spec_differences(current.get("spec"), desired))
            if not self.params["replace"]:
                raise K8sModuleError(
                    "passkey %s exists with a different spec (%s) and K10 passkeys cannot be changed. Create a new "
                    "passkey under another name with usenow: true, wait until K10 uses it, then delete this one - "
                    "or set replace: true to let this module do exactly that" % (self.name, fields))
            # Replace without ever leaving K10 without a usable passkey: a stand-in takes over first.
            if stand_in is None:
                stand_in = self._create(stand_in_name, dict(desired, usenow=True), wait=True)
            self._delete(self.name, after_a_planned_create=True)
            current, taking_over = None, True
        if current is None:
            spec = dict(desired, usenow=True) if taking_over else desired
            current = self._create(self.name, spec, wait=self.params["wait"] or taking_over)
        elif self.params["wait"] and not self.check_mode:
            current = self._wait_ready(self.name, bool(desired.get("usenow")))
        if stand_in is not None:
            self._delete(stand_in_name, after_a_planned_create=True)
        return self._result(before, current)

    def absent(self, after_a_planned_create=False):
        current = self.k10.passkey(self.name)
        if current is not None:
            self._delete(self.name, after_a_planned_create)
        return self._result(passkey_diff_view(current), None)

    def _result(self, before, after):
        result = {"changed": bool(self.actions), "actions": self.actions,
                  "passkey": summary(after) if after and "metadata" in after else {}}
        result["diff"] = {"before": before, "after": passkey_diff_view(after) if after else {}}
        return result


FINAL_STATES = ("Complete", "Failed", "Skipped", "Cancelled")


def action_view(action):
    status = action.get("status") or {}
    error = status.get("error")
    return {"name": action["metadata"]["name"], "state": status.get("state") or "Pending",
            "error": flatten_error(error) if error else None}


class MigrationRunner:
    """``k10_import_policy``: copy the export policy's migration string into the import policy, run, verify."""

    def __init__(self, destination, source, params, check_mode, wait_for):
        self.destination, self.source = destination, source
        self.params, self.check_mode, self.wait_for = params, check_mode, wait_for

    def receive_string(self):
        if self.params.get("receive_string"):
            return self.params["receive_string"], None
        src = self.params["source"]
        if not src or not src.get("policy") or self.source is None:
            raise K8sModuleError("no migration string to propagate: receive_string is empty and no source export "
                                 "policy is named; set source (context, policy) or a non-empty receive_string")
        policy = self.source.policy(src.get("namespace") or "kasten-io", src["policy"])
        return export_receive_string(policy), "%s/%s" % (policy["metadata"]["namespace"], policy["metadata"]["name"])

    def run(self):
        namespace, name = self.params["namespace"], self.params["name"]
        wanted, source_name = self.receive_string()
        policy = self.destination.policy(namespace, name, missing_ok=True)
        if policy is None:
            raise K8sModuleError("import policy %s/%s does not exist on the destination cluster: create it (a "
                                 "config.kio.kasten.io Policy with an import action) first" % (namespace, name))
        current = (import_index(policy)[1].get("importParameters") or {}).get("receiveString")
        changed_string = current != wanted
        result = {"changed": changed_string, "receive_string_changed": changed_string, "action": None,
                  "diff": {"before": {"importParameters.receiveString": HIDDEN + (" old" if changed_string else "")},
                           "after": {"importParameters.receiveString": HIDDEN + (
                               " new, from %s" % source_name if source_name else " new") if changed_string
                               else HIDDEN}}}
        if changed_string and source_name:
            result["diagnosis"] = ("the import policy held a stale migration string (the K10 migration-string failure's first case); it now "
                                   "holds the current one of %s" % source_name)
        if changed_string and not self.check_mode:
            try:
                self.destination.patch_policy(namespace, name, receive_string_patch(policy, wanted))
            except K8sModuleError as exc:
                if exc.status in (409, 422):
                    raise K8sModuleError("import policy %s/%s changed while this task ran; run it again (%s)"
                                         % (namespace, name, exc.msg))
                raise
        if not self.params["run"]:
            return result
        result["changed"] = True
        if self.check_mode:
            result["action"] = {"name": None, "state": "would run", "error": None}
            return result
        created = self.destination.run_policy(namespace, name)
        action_name = created["metadata"]["name"]
        result["action"] = action_view(created)
        if not self.params["wait"]:
            return result
        ok, action = self.wait_for(lambda: self.destination.run_action(namespace, action_name),
                                   lambda a: (a.get("status") or {}).get("state") in FINAL_STATES,
                                   self.params["wait_timeout"])
        view = result["action"] = action_view(action)
        if not ok:
            raise K8sModuleError("the import %s did not finish within %ss (state %s)"
                                 % (action_name, self.params["wait_timeout"], view["state"]), action=view)
        if view["state"] != "Complete":
            string_was_current = True if source_name else None
            case = classify_failure(view["error"], string_was_current)
            advice = CASE_ADVICE.get(case, "see the action's error")
            raise K8sModuleError("the import %s of policy %s/%s failed (%s): %s. %s"
                                 % (action_name, namespace, name, case, view["error"], advice),
                                 action=view, case=case, receive_string_changed=changed_string)
        return result


def vault_passkeys(passkeys, key_name, path):
    """The passkeys that use Vault transit key ``path``/``key_name``."""
    path = (path or "transit").strip("/")
    return [p for p in passkeys if (p.get("spec") or {}).get("vaulttransitkeyname") == key_name
            and ((p.get("spec") or {}).get("vaulttransitpath") or "transit").strip("/") == path]


def vault_passkey_census(passkeys, key_name, path):
    """Which transit key versions K10 still needs: the versions recorded on its usable passkeys of this key.

    Returns ``(census, oldest_version_in_use, error)``.  A usable passkey without a recorded version makes the
    census unprovable: then ``error`` says so and the rotation must not raise min_decryption_version.
    """
    census, unknown = {}, []
    for passkey in vault_passkeys(passkeys, key_name, path):
        info = summary(passkey)
        if not (info["valid"] or info["in_use"]):
            continue  # it cannot decrypt the primary key now; nothing depends on it
        if info["transit_key_version"] is None:
            unknown.append(info["name"])
            continue
        version = str(info["transit_key_version"])
        census[version] = census.get(version, 0) + 1
    if unknown:
        return census, None, ("passkey(s) %s use transit key %s/%s but record no %s annotation, so the version "
                              "they need is unknown; replace them with k10_passkey (transit_key_version set)"
                              % (", ".join(unknown), path, key_name, VERSION_ANNOTATION))
    return census, min(int(v) for v in census) if census else None, None


def rotated_passkey_name(prefix, version):
    return "%s-v%d" % (prefix, version)


def rotate_passkeys(k10, params, check_mode, wait_for):
    """Step 2 of the K10 transit-key rotation for K10: a passkey at the latest version, in use, then the older ones deleted."""
    key_name, path, version = params["name"], params["mount"], params["key_version"]
    before, min_before, error_before = vault_passkey_census(k10.passkeys(), key_name, path)
    new_name = rotated_passkey_name(params["passkey_prefix"], version)
    runner = PasskeyRunner(k10, dict(name=new_name, vault_transit_key_name=key_name, vault_transit_path=path,
                                     aws_cmk_key_id=None, passphrase_secret=None, usenow=True,
                                     transit_key_version=version, wait=True, wait_timeout=params["wait_timeout"],
                                     replace=False), check_mode, wait_for)
    runner.present()
    for old in vault_passkeys(k10.passkeys(), key_name, path):
        name = old["metadata"]["name"]
        if name != new_name:
            runner.name = name
            runner.absent(after_a_planned_create=True)  # the new passkey is in use first (or, in check mode, planned)
    if check_mode:  # nothing changed: the passkeys read before are the state after (the consumer contract)
        census, min_version, error = before, min_before, error_before
    else:
        census, min_version, error = vault_passkey_census(k10.passkeys(), key_name, path)
    if error:
        raise K8sModuleError(error, actions=runner.actions, census_before=before)
    return {"changed": bool(runner.actions), "actions": runner.actions, "passkey": new_name,
            "census_before": before, "census_after": census, "oldest_version_in_use": min_version,
            "rewrapped": 1 if runner.actions else 0}


def migration_results(loop_results):
    """One entry per pair of the k10_migration role's loop (``register`` of the k10_import_policy loop)."""
    entries = []
    for run in loop_results or []:
        pair = run.get("k10_migration_pair") or run.get("item") or {}
        failed = bool(run.get("failed"))
        entries.append({"name": pair.get("name") or (pair.get("destination") or {}).get("policy"),
                        "ok": not failed, "receive_string_changed": bool(run.get("receive_string_changed")),
                        "action": run.get("action"), "case": run.get("case"),
                        "msg": run.get("msg", "") if failed else run.get("diagnosis", "")})
    return entries
