# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transit keys: what to change (pure functions) and the thin I/O that does it.

The planning half takes the key as Vault reports it plus what the task asks for and returns
the operations to send and the key as it will look afterwards.  It raises
:class:`TransitPlanError` for anything unsafe or impossible, before a single request is
sent, so a refused task never leaves a key half-configured.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import re

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError
from ansible_collections.keyops.lifecycle.plugins.module_utils._transit_backup import check_destruction

# Key types OpenBao 2.x's transit engine accepts (checked against a live server: anything
# else answers "unknown key type").  hvac's own list predates xchacha20-poly1305.
KEY_TYPES = (
    "aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305",
    "ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521",
    "rsa-2048", "rsa-3072", "rsa-4096", "hmac",
)
DEFAULT_KEY_TYPE = "aes256-gcm96"

# Options that are sent to <mount>/keys/<name>/config.
CONFIG_OPTIONS = ("min_decryption_version", "min_encryption_version", "deletion_allowed",
                  "exportable", "allow_plaintext_backup", "auto_rotate_period")
# Options Vault accepts once enabled and then silently ignores attempts to disable.
ONE_WAY_OPTIONS = ("exportable", "allow_plaintext_backup")

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(\d+)([smhdw])")


class TransitPlanError(VaultModuleError):
    """The requested change is unsafe or impossible; nothing has been sent to Vault."""


def parse_duration(value, option="duration"):
    """``90d``, ``12h``, ``1h30m``, ``3600`` or ``3600s`` -> seconds."""
    if isinstance(value, bool):
        raise TransitPlanError("`%s` must be a duration like 90d, 12h or 1h30m (got %r)" % (option, value))
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip().lower()
        if text.isdigit():
            seconds = int(text)
        else:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise TransitPlanError("`%s` must be a duration like 90d, 12h, 30m, 2w or 1h30m (got %r)"
                                       % (option, value))
            seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds < 0:
        raise TransitPlanError("`%s` cannot be negative (got %r)" % (option, value))
    return seconds


def _iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value):
    """Vault reports version creation as unix seconds (symmetric keys) or RFC 3339 (asymmetric)."""
    if isinstance(value, dict):
        value = value.get("creation_time")
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    text = str(value)
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not match:
        raise ValueError("unrecognised time %r" % text)
    base = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    offset = match.group(3) or "Z"
    if offset == "Z":
        return base.replace(tzinfo=datetime.timezone.utc)
    sign = 1 if offset[0] == "+" else -1
    delta = datetime.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
    return (base - sign * delta).replace(tzinfo=datetime.timezone.utc)


def normalize_key(data):
    """Vault's read of a key -> the public view this collection returns (no key material)."""
    versions = {}
    for version, created in (data.get("keys") or {}).items():
        versions[str(version)] = _iso(_parse_time(created))
    return {
        "name": data.get("name"),
        "type": data.get("type"),
        "latest_version": int(data.get("latest_version") or 0),
        "min_decryption_version": int(data.get("min_decryption_version") or 0),
        "min_encryption_version": int(data.get("min_encryption_version") or 0),
        "min_available_version": int(data.get("min_available_version") or 0),
        "deletion_allowed": bool(data.get("deletion_allowed")),
        "exportable": bool(data.get("exportable")),
        "allow_plaintext_backup": bool(data.get("allow_plaintext_backup")),
        "derived": bool(data.get("derived")),
        "auto_rotate_period": int(data.get("auto_rotate_period") or 0),
        "versions": dict(sorted(versions.items(), key=lambda item: int(item[0]))),
    }


def latest_version_created(key):
    created = key["versions"].get(str(key["latest_version"]))
    return _parse_time(created) if created else None


def rotation_due(key, older_than_seconds, now):
    """True when the newest version is at least ``older_than_seconds`` old (or its age is unknown)."""
    created = latest_version_created(key)
    if created is None:
        return True
    return (now - created).total_seconds() >= older_than_seconds


def check_min_decryption_version(current, requested, latest, oldest_version_in_use=None, force=False):
    """Refuse a min_decryption_version that would strand ciphertext.  Returns None when safe.

    Raising the minimum makes every ciphertext under an older version undecryptable, so it is
    allowed only up to the oldest version a consumer still uses (``oldest_version_in_use``), or
    with ``force``.  Lowering it (undoing a raise) is always allowed.
    """
    if requested < 1:
        raise TransitPlanError("min_decryption_version must be 1 or more (got %d)" % requested)
    if requested > latest:
        raise TransitPlanError("min_decryption_version %d is above the latest key version %d" % (requested, latest))
    if requested <= current or force:
        return
    if oldest_version_in_use is None:
        raise TransitPlanError(
            "refusing to raise min_decryption_version from %d to %d: ciphertext still encrypted under versions "
            "%d..%d would become undecryptable. Re-encrypt every consumer first (vault_transit_rewrap), then pass "
            "oldest_version_in_use (the oldest key version any consumer still uses) or force: true"
            % (current, requested, current, requested - 1))
    if requested > oldest_version_in_use:
        raise TransitPlanError(
            "refusing to raise min_decryption_version to %d: consumers still use key version %d "
            "(oldest_version_in_use). Re-encrypt them first; at most %d is safe now"
            % (requested, oldest_version_in_use, max(current, oldest_version_in_use)))


def _new_key(name, key_type, now):
    return {
        "name": name, "type": key_type, "latest_version": 1, "min_decryption_version": 1,
        "min_encryption_version": 0, "min_available_version": 0, "deletion_allowed": False,
        "exportable": False, "allow_plaintext_backup": False, "derived": False, "auto_rotate_period": 0,
        "versions": {"1": _iso(now)},
    }


def _drop_versions_below(key, version):
    key["versions"] = dict((v, t) for v, t in key["versions"].items() if int(v) >= version)


def _guard(ops, name, operation, key, backups, desired):
    """Before an irreversible operation: a backup operation, or the acknowledgement, or a refusal."""
    coverage = check_destruction(name, operation, key, backups, desired.get("allow_data_loss"))
    if coverage == "backup":
        ops.append(("backup", {}, "backed up versions %d-%d before the %s" % (
            max(1, key["min_available_version"]), key["latest_version"], operation)))
    return coverage


def plan_transit_key(current, desired, now, backups=None):
    """Decide what to send to Vault.

    ``current``: :func:`normalize_key` output or None.  ``desired``: the module's parameters.
    ``backups``: :class:`_transit_backup.BackupSettings` (or None): a trim or delete of a key that allows
    backups is preceded by a ``backup`` operation; without one it needs ``desired["allow_data_loss"]``.
    Returns ``(operations, predicted)``: a list of ``(operation, payload, action)`` with
    operation one of create/rotate/config/trim/delete and ``action`` a secret-free sentence
    for the result, and the key as it will read afterwards (None when deleted).  Raises :class:`TransitPlanError` before anything is sent.
    """
    ops = []
    name = desired["name"]
    _validate_numbers(desired)
    older_than = desired.get("rotate_older_than")
    if older_than is not None:
        older_than = parse_duration(older_than, "rotate_older_than")
    if desired.get("state") == "absent":
        if current is None:
            return ops, None
        if not current["deletion_allowed"]:
            if desired.get("deletion_allowed") is not True:
                raise TransitPlanError(
                    "refusing to delete transit key %r: its deletion_allowed is false. Deleting destroys every "
                    "version and makes all its ciphertext undecryptable forever; set deletion_allowed: true in "
                    "this task to confirm" % name)
            ops.append(("config", {"deletion_allowed": True}, "configured: deletion_allowed False -> True"))
        _guard(ops, name, "delete", current, backups, desired)
        ops.append(("delete", {}, "deleted"))
        return ops, None

    predicted = copy.deepcopy(current)
    if current is None:
        key_type = desired.get("type") or DEFAULT_KEY_TYPE
        create = {"type": key_type}
        predicted = _new_key(name, key_type, now)
        for option in ("exportable", "allow_plaintext_backup", "derived"):
            if desired.get(option):
                create[option] = True
                predicted[option] = True
        if desired.get("key_size") is not None:
            create["key_size"] = desired["key_size"]
        if desired.get("auto_rotate_period") is not None:
            period = parse_duration(desired["auto_rotate_period"], "auto_rotate_period")
            _check_auto_rotate(period)
            if period:
                create["auto_rotate_period"] = "%ds" % period
                predicted["auto_rotate_period"] = period
        if key_type == "hmac" and desired.get("key_size") is None:
            raise TransitPlanError("type hmac needs key_size (bytes, 32 to 512)")
        ops.append(("create", create, "created (%s)" % key_type))
    else:
        if desired.get("type") and desired["type"] != current["type"]:
            raise TransitPlanError(
                "transit key %r is of type %s, not %s: a key's type cannot change. Create a new key "
                "under another name and re-encrypt its consumers" % (name, current["type"], desired["type"]))
        if desired.get("derived") is not None and bool(desired["derived"]) != current["derived"]:
            raise TransitPlanError("`derived` is fixed when a key is created (key %r has derived=%s)"
                                   % (name, current["derived"]))

    # Step: rotate.
    rotate = bool(desired.get("rotate"))
    if not rotate and older_than is not None and current is not None:
        rotate = rotation_due(predicted, older_than, now)
    if rotate:
        ops.append(("rotate", {"expect_latest_version": predicted["latest_version"] + 1},
                    "rotated to version %d" % (predicted["latest_version"] + 1)))
        predicted["latest_version"] += 1
        predicted["versions"][str(predicted["latest_version"])] = _iso(now)

    # Step: configuration.
    before_config = dict(predicted)
    config = _plan_config(current, predicted, desired)
    if config:
        ops.append(("config", config, _describe_config(config, before_config)))

    # Step: trim (irreversible, so checked against the state after the config above).
    wanted_available = desired.get("min_available_version")
    if wanted_available is not None and wanted_available > predicted["min_available_version"]:
        if predicted["min_encryption_version"] == 0:
            raise TransitPlanError(
                "cannot trim key %r to version %d: Vault requires min_encryption_version to be set first "
                "(set min_encryption_version >= %d in the same task)" % (name, wanted_available, wanted_available))
        limit = min(predicted["min_encryption_version"], predicted["min_decryption_version"])
        if wanted_available > limit:
            raise TransitPlanError(
                "cannot trim key %r to version %d: min_available_version may not exceed min_decryption_version "
                "(%d) or min_encryption_version (%d)" % (name, wanted_available,
                                                         predicted["min_decryption_version"],
                                                         predicted["min_encryption_version"]))
        _guard(ops, name, "trim", predicted, backups, desired)
        ops.append(("trim", {"min_available_version": wanted_available},
                    "trimmed versions below %d" % wanted_available))
        predicted["min_available_version"] = wanted_available
        _drop_versions_below(predicted, wanted_available)
    return ops, predicted


def _validate_numbers(desired):
    for option, lowest in (("min_decryption_version", 1), ("oldest_version_in_use", 1),
                           ("min_encryption_version", 0), ("min_available_version", 0)):
        value = desired.get(option)
        if value is not None and value < lowest:
            raise TransitPlanError("`%s` must be %d or more (got %d)" % (option, lowest, value))
    key_size = desired.get("key_size")
    if key_size is not None and not 32 <= key_size <= 512:
        raise TransitPlanError("`key_size` must be between 32 and 512 bytes (got %d)" % key_size)


def _check_auto_rotate(period):
    if period and period < 3600:
        raise TransitPlanError("auto_rotate_period must be 0 (off) or at least 1h (got %ds)" % period)


def _plan_config(current, predicted, desired):
    config = {}
    for option in ONE_WAY_OPTIONS:
        wanted = desired.get(option)
        if wanted is None or wanted == predicted[option]:
            continue
        if not wanted:
            raise TransitPlanError("`%s` cannot be turned off once enabled (key %r has it on; Vault ignores the "
                                   "request). Create a new key if it must not be %s"
                                   % (option, desired["name"], option.replace("_", " ")))
        config[option] = True
        predicted[option] = True

    if desired.get("deletion_allowed") is not None and bool(desired["deletion_allowed"]) != predicted["deletion_allowed"]:
        config["deletion_allowed"] = bool(desired["deletion_allowed"])
        predicted["deletion_allowed"] = config["deletion_allowed"]

    if desired.get("auto_rotate_period") is not None and current is not None:
        period = parse_duration(desired["auto_rotate_period"], "auto_rotate_period")
        _check_auto_rotate(period)
        if period != predicted["auto_rotate_period"]:
            config["auto_rotate_period"] = "%ds" % period
            predicted["auto_rotate_period"] = period

    latest = predicted["latest_version"]
    wanted_min_dec = desired.get("min_decryption_version")
    if wanted_min_dec is not None and wanted_min_dec != predicted["min_decryption_version"]:
        check_min_decryption_version(predicted["min_decryption_version"], wanted_min_dec, latest,
                                     desired.get("oldest_version_in_use"), bool(desired.get("force")))
        if wanted_min_dec < predicted["min_available_version"]:
            raise TransitPlanError("min_decryption_version %d is below min_available_version %d: versions below "
                                   "it were trimmed and cannot come back" % (wanted_min_dec, predicted["min_available_version"]))
        config["min_decryption_version"] = wanted_min_dec
        predicted["min_decryption_version"] = wanted_min_dec
        _drop_versions_below(predicted, wanted_min_dec)
        if current is not None:
            # Vault lists only versions >= min_decryption_version; lowering it shows older ones again.
            for version, created in current["versions"].items():
                if int(version) >= wanted_min_dec:
                    predicted["versions"].setdefault(version, created)
            predicted["versions"] = dict(sorted(predicted["versions"].items(), key=lambda item: int(item[0])))

    wanted_min_enc = desired.get("min_encryption_version")
    if wanted_min_enc is not None and wanted_min_enc != predicted["min_encryption_version"]:
        if wanted_min_enc < 0:
            raise TransitPlanError("min_encryption_version must be 0 (use the latest) or a key version (got %d)"
                                   % wanted_min_enc)
        if wanted_min_enc > latest:
            raise TransitPlanError("min_encryption_version %d is above the latest key version %d" % (wanted_min_enc, latest))
        if wanted_min_enc and wanted_min_enc < predicted["min_decryption_version"]:
            raise TransitPlanError("min_encryption_version %d is below min_decryption_version %d: Vault would "
                                   "encrypt with a version it refuses to decrypt"
                                   % (wanted_min_enc, predicted["min_decryption_version"]))
        config["min_encryption_version"] = wanted_min_enc
        predicted["min_encryption_version"] = wanted_min_enc
    return config


def _describe_config(config, before):
    """A short, secret-free sentence for the ``actions`` result."""
    return "configured: " + ", ".join("%s %s -> %s" % (option, before.get(option), config[option])
                                      for option in sorted(config))


def diff_view(key):
    """What ``--diff`` shows: configuration and the version list, never key material."""
    if key is None:
        return {}
    return dict((k, v) for k, v in key.items() if k != "name")


class TransitBackend:
    """The I/O half: read keys and send planned operations through a VaultConnection."""

    def __init__(self, connection, mount, backups=None):
        self.connection = connection
        self.mount = mount.strip("/")
        self.backups = backups

    def _path(self, name, suffix=""):
        return "%s/keys/%s%s" % (self.mount, name, suffix)

    def get_info(self, name):
        data = self.connection.read(self._path(name))
        return normalize_key(data) if data else None

    def list_names(self):
        return sorted(self.connection.list("%s/keys" % self.mount))

    def apply(self, name, operations, taken=None):
        """Send ``operations`` in order; return ``(actions done, key after)``.

        A ``backup`` operation writes the backup (see _transit_backup) and appends what it wrote (path,
        sha256, versions - never the blob) to ``taken``; when it fails, nothing after it is sent.

        The key after is taken from the last answer when it carries the key (OpenBao and recent
        Vault answer rotate/config/trim with it), otherwise read back.  On failure the error
        carries the actions already done.
        """
        actions, answer = [], None
        try:
            for operation, payload, action in operations:
                if operation == "backup":
                    written = self.backups.take(self.connection, self.mount, name,
                                                datetime.datetime.now(datetime.timezone.utc))
                    if taken is not None:
                        taken.append(written)
                    actions.append(action)
                    continue
                answer = self._send(name, operation, payload)
                actions.append(action)
        except VaultModuleError as exc:
            if taken:
                exc.details.setdefault("backup", taken[-1])
            exc.details.setdefault("actions", actions)
            if actions:
                exc.msg += " (already done before the failure: %s; re-running the task completes it)" % "; ".join(actions)
            raise
        if operations and operations[-1][0] == "delete":
            return actions, None
        data = (answer or {}).get("data")
        if isinstance(data, dict) and "latest_version" in data and "keys" in data:
            return actions, normalize_key(data)
        return actions, self.get_info(name)

    def _send(self, name, operation, payload):
        if operation == "create":
            return self.connection.write(self._path(name), payload)
        if operation == "rotate":
            return self._rotate(name, payload["expect_latest_version"])
        if operation == "config":
            return self.connection.write(self._path(name, "/config"), payload)
        if operation == "trim":
            return self.connection.write(self._path(name, "/trim"), payload)
        return self.connection.delete(self._path(name))

    def _rotate(self, name, expected):
        """Rotate exactly once: a lost answer is resolved by reading the key back, not by rotating again."""
        try:
            return self.connection.write(self._path(name, "/rotate"), {}, idempotent=False)
        except VaultModuleError as exc:
            if exc.status is not None and exc.status < 500:
                raise
            after = self.get_info(name)
            if after is None or after["latest_version"] < expected:
                raise
            return None
