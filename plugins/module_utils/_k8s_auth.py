# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vault/OpenBao Kubernetes auth: mount config and roles (plan pure, apply through VaultConnection), and the
the cross-cluster Kubernetes auth break risk assessment the upgrade preflight uses (private)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import re
import time

from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import parse_duration
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError

CONFIG_FIELDS = ("kubernetes_host", "kubernetes_ca_cert", "disable_local_ca_jwt", "issuer", "disable_iss_validation",
                 "pem_keys")
ROLE_LIST_FIELDS = ("bound_service_account_names", "bound_service_account_namespaces", "token_policies")
ROLE_TTL_FIELDS = ("token_ttl", "token_max_ttl")


def _pem(text):
    return (text or "").strip()


def auth_mounts(connection):
    """``{path: type}`` of every auth mount (paths without the trailing slash)."""
    answer = connection.request("GET", "sys/auth", capability="read")
    table = answer.get("data") or answer
    return dict((path.strip("/"), entry.get("type")) for path, entry in table.items() if isinstance(entry, dict))


def config_view(data):
    """The comparable part of ``auth/<mount>/config`` (Vault never returns the reviewer JWT, only whether it is set)."""
    if data is None:
        return None
    view = {"kubernetes_host": data.get("kubernetes_host") or "",
            "kubernetes_ca_cert": _pem(data.get("kubernetes_ca_cert")),
            "disable_local_ca_jwt": bool(data.get("disable_local_ca_jwt")),
            "issuer": data.get("issuer") or "",
            "disable_iss_validation": bool(data.get("disable_iss_validation", True)),
            "pem_keys": sorted(_pem(k) for k in data.get("pem_keys") or []),
            "token_reviewer_jwt_set": bool(data.get("token_reviewer_jwt_set"))}
    return view


def plan_config(current, params):
    """``(payload or None, after_view)``: what to write to ``auth/<mount>/config``."""
    desired = dict(current or config_view({}))
    for field in CONFIG_FIELDS:
        value = params.get(field)
        if value is None:
            continue
        if field == "kubernetes_ca_cert":
            value = _pem(value)
        if field == "pem_keys":
            value = sorted(_pem(k) for k in value)
        desired[field] = value
    if not desired["kubernetes_host"]:
        raise VaultModuleError("kubernetes_host is required: the API server URL of the cluster whose service "
                               "accounts log in (for example https://green.example.com:6443)")
    if desired["disable_local_ca_jwt"] and not desired["kubernetes_ca_cert"]:
        raise VaultModuleError("kubernetes_ca_cert must be given when disable_local_ca_jwt is true (Vault then has "
                               "no local CA to verify the cluster with)")
    jwt = params.get("token_reviewer_jwt")
    write_jwt = jwt is not None and (not (current or {}).get("token_reviewer_jwt_set")
                                     or params.get("update_token_reviewer_jwt"))
    desired["token_reviewer_jwt_set"] = bool(jwt) or bool((current or {}).get("token_reviewer_jwt_set"))
    if jwt == "":
        desired["token_reviewer_jwt_set"] = False
        write_jwt = bool((current or {}).get("token_reviewer_jwt_set"))
    if current is not None and desired == current and not write_jwt:
        return None, desired
    payload = dict((field, desired[field]) for field in CONFIG_FIELDS)
    if not payload["pem_keys"]:
        payload.pop("pem_keys")
    if write_jwt:
        payload["token_reviewer_jwt"] = jwt
    return payload, desired


def role_view(data):
    if data is None:
        return None
    view = dict((field, sorted(data.get(field) or [])) for field in ROLE_LIST_FIELDS)
    view.update((field, int(data.get(field) or 0)) for field in ROLE_TTL_FIELDS)
    view["audience"] = data.get("audience") or ""
    return view


def plan_role(current, params):
    desired = dict(current or role_view({}))
    for field in ROLE_LIST_FIELDS:
        if params.get(field) is not None:
            desired[field] = sorted(params[field])
    for field in ROLE_TTL_FIELDS:
        if params.get(field) is not None:
            desired[field] = parse_duration(params[field], field)
    if params.get("audience") is not None:
        desired["audience"] = params["audience"]
    if not (desired["bound_service_account_names"] and desired["bound_service_account_namespaces"]):
        raise VaultModuleError("bound_service_account_names and bound_service_account_namespaces are required "
                               "(use [\"*\"] deliberately if every account may log in)")
    if current == desired:
        return None, desired
    return dict(desired), desired


# ------------------------------------------------------------------ the cross-cluster Kubernetes auth break: does a login depend on the fallback?
def assess(config, vault_cluster_host=None, reviewer_jwt_expires_in=None, soon_seconds=7 * 86400):
    """Risk of one kubernetes auth mount: ``(status, reasons, fix)`` with status ``ok`` or ``at risk``.

    Without a reviewer JWT and with ``disable_local_ca_jwt`` false, Vault reviews a login with its *own* local
    service-account token (Vault >= 1.9 / OpenBao).  That works only when Vault runs in the cluster the mount
    points at; anywhere else the TokenReview is refused (401) and the login fails with 403.
    ``vault_cluster_host``: the API server of the cluster Vault runs in (None: not in a cluster).
    """
    reasons = []
    fix = None
    if not config["token_reviewer_jwt_set"] and not config["disable_local_ca_jwt"]:
        same_cluster = vault_cluster_host is not None and \
            vault_cluster_host.rstrip("/") == config["kubernetes_host"].rstrip("/")
        if not same_cluster:
            where = "outside any cluster" if vault_cluster_host is None else "in %s" % vault_cluster_host
            reasons.append("no token_reviewer_jwt and disable_local_ca_jwt=false: Vault reviews logins with its own "
                           "service-account token (Vault runs %s), which %s will reject"
                           % (where, config["kubernetes_host"]))
            fix = {"disable_local_ca_jwt": True}
    if config["token_reviewer_jwt_set"] and reviewer_jwt_expires_in is not None \
            and reviewer_jwt_expires_in < soon_seconds:
        reasons.append("the token_reviewer_jwt expires in %d s: logins fail from then on" % reviewer_jwt_expires_in)
        fix = fix or {"token_reviewer_jwt": "a new long-lived reviewer token"}
    return ("at risk" if reasons else "ok"), reasons, fix


def jwt_claims(jwt):
    """The claims of a JWT, unverified - only to read its issuer or lifetime; {} when it is not a JWT."""
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, AttributeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def seconds_left(jwt, now=None):
    """Seconds until a JWT's ``exp``; None without ``exp``."""
    claims = jwt_claims(jwt)
    if not claims:
        raise VaultModuleError("a reviewer JWT given in token_reviewer_jwts is not a JWT")
    if "exp" not in claims:
        return None
    return int(claims["exp"] - (now if now is not None else time.time()))


def issuer_mismatch(config, token_issuer):
    """A mount that validates ``iss`` against another issuer than the cluster's tokens carry."""
    if config["disable_iss_validation"] or not config["issuer"] or not token_issuer:
        return None
    if config["issuer"] != token_issuer:
        return ("the mount validates iss=%r but the cluster's service-account tokens carry iss=%r: every login fails"
                % (config["issuer"], token_issuer))
    return None


# ------------------------------------------------------------------ seal/storage against a target version
# (seal or storage type, first version without it built in, what to do instead)
REMOVED = {
    "openbao": [
        ("seal", "awskms", (2, 7, 0),
         "OpenBao 2.7 dropped the built-in awskms seal: configure the awskms KMS plugin (plugin_directory + the "
         "seal's plugin stanza) before upgrading, or the server comes up sealed"),
    ],
}


def parse_version(text):
    parts = []
    for piece in str(text).lstrip("v").split("-", 1)[0].split(".")[:3]:
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def config_stanzas(hcl):
    """``[(kind, type, body)]`` of the top-level seal and storage stanzas of a server config (HCL, comments off)."""
    text = re.sub(r"(?m)^\s*(#|//).*$", "", hcl or "")
    found = []
    for match in re.finditer(r'(?m)^\s*(seal|storage)\s+"([\w-]+)"\s*\{', text):
        depth, index = 1, match.end()
        while depth and index < len(text):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        found.append((match.group(1), match.group(2), text[match.end():index - 1]))
    return found


def seal_storage_findings(hcl, current_version, target_version, flavor="openbao"):
    """``(status, findings)``: ``broken`` when the target version lacks a seal/storage this config uses built in."""
    findings = []
    target, current = parse_version(target_version), parse_version(current_version)
    for kind, kind_type, body in config_stanzas(hcl):
        for removed_kind, removed_type, since, advice in REMOVED.get(flavor, []):
            uses_plugin = "plugin" in body
            if kind == removed_kind and kind_type == removed_type and target >= since > current and not uses_plugin:
                findings.append("%s \"%s\": %s" % (kind, kind_type, advice))
    return ("broken" if findings else "ok"), findings


def preflight_report(mounts, probes=None):
    """Per mount: ``ok`` / ``at risk`` / ``broken`` with reasons and the exact fix, from the static assessment
    (vault_k8s_auth_info) and the real logins (vault_k8s_auth_probe results, optional)."""
    by_mount = {}
    for probe in probes or []:
        item = probe.get("item") or probe.get("vault_upgrade_preflight_probe") or {}
        by_mount.setdefault(item.get("mount", "kubernetes"), []).append(probe)
    report = []
    for entry in mounts:
        status, reasons, fix = entry["status"], list(entry["reasons"]), entry["fix"]
        for probe in by_mount.get(entry["mount"], []):
            mismatch = issuer_mismatch(entry["config"], probe.get("token_issuer"))
            if mismatch:
                reasons.append(mismatch)
                fix = fix or {"disable_iss_validation": True}
            if probe.get("failed") or probe.get("login") == "failed":
                status = "broken"
                reasons.append("a real login failed: %s" % (probe.get("error") or probe.get("msg")))
            elif mismatch and status == "ok":
                status = "at risk"
        report.append({"mount": entry["mount"], "status": status, "reasons": reasons, "fix": fix,
                       "probed": bool(by_mount.get(entry["mount"]))})
    return report
