# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transit key backups before an irreversible step, and their restore (private).

``GET <mount>/backup/<name>`` answers every raw key version in plaintext (base64 of JSON:
``{"policy": {...}, "archived_keys": {...}}``).  It is key material: written only 0600 through the
atomic writer (or encrypted to a GPG public key with the ``gpg`` binary), never logged, never
returned - a task returns the file's path, its sha256 and the key versions it holds.

Vault allows a backup only when the key is ``exportable`` and ``allow_plaintext_backup`` (both
one-way), and answers refusals - and restore conflicts - with HTTP 500, which the connection layer
would otherwise retry as a server fault: these calls send the statuses worth repeating without 500
and explain the answer instead.

The file holds the blob exactly as Vault gave it, so ``bao write <mount>/restore/<name> backup=@file``
restores it too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import hashlib
import json
import os
import shutil
import tempfile

from ansible_collections.keyops.lifecycle.plugins.module_utils import _atomic
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import RETRY_STATUSES, VaultModuleError

# Backup and restore refusals are 500s: repeating them changes nothing.
BACKUP_RETRY_STATUSES = frozenset(RETRY_STATUSES - {500})

GPG_SUFFIXES = (".gpg", ".asc", ".pgp")


class TransitBackupError(VaultModuleError):
    """A backup could not be taken, written or restored; the irreversible step was not sent."""


def backup_allowed(key):
    """Will Vault hand out a backup of this key (``normalize_key`` view)?"""
    return bool(key and key.get("exportable") and key.get("allow_plaintext_backup"))


def blob_summary(blob):
    """``{"name", "latest_version", "first_version", "min_decryption_version", "min_available_version"}`` of a
    backup blob, or None when it is not one (pure; reads only configuration, never key material)."""
    try:
        policy = json.loads(base64.b64decode(blob.strip(), validate=True).decode("utf-8"))["policy"]
        latest = int(policy["latest_version"])
        available = int(policy.get("min_available_version") or 0)
        return {"name": policy.get("name"), "latest_version": latest, "first_version": max(1, available),
                "min_decryption_version": int(policy.get("min_decryption_version") or 0),
                "min_available_version": available}
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        return None


def backup_file_name(mount, name, summary, now, encrypted=False):
    """``<mount>.<name>.v<first>-v<latest>.<UTC time>.transit-backup[.gpg]`` (pure)."""
    stamp = now.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe_mount = mount.strip("/").replace("/", "_")
    return "%s.%s.v%d-v%d.%s.transit-backup%s" % (
        safe_mount, name, summary["first_version"], summary["latest_version"], stamp, ".gpg" if encrypted else "")


def backup_target(backup_path, mount, name, summary, now, encrypted=False):
    """The file to write: ``backup_path`` itself, or a file named for the key inside it when it is (or ends like)
    a directory."""
    if backup_path.endswith(os.sep) or os.path.isdir(backup_path):
        return os.path.join(backup_path, backup_file_name(mount, name, summary, now, encrypted))
    return backup_path


def explain_backup_failure(status, errors, mount, name, action):
    """Vault's 500 answers to backup/restore as sentences (pure)."""
    text = (errors or "").lower()
    if "disallowed on the policy" in text:
        return ("Vault refused to back up transit key %r in %s (%s): the key must be exportable and allow "
                "plaintext backups (exportable: true, allow_plaintext_backup: true - both one-way). Vault said: %s"
                % (name, mount, action, errors))
    if "already exists" in text:
        return ("transit key %r already exists in %s: restoring over it needs force: true (which rolls the key "
                "back to the backup's versions and settings). Vault said: %s" % (name, mount, errors))
    if "not found" in text:
        return "transit key %r does not exist in %s (%s). Vault said: %s" % (name, mount, action, errors)
    if status == 500 and ("invalid character" in text or "base64" in text):
        return "the backup is not a transit key backup Vault can read (%s): %s" % (action, errors)
    return None


def fetch_backup(connection, mount, name):
    """The backup blob of a key (key material: keep it in memory, hand it only to :func:`write_backup`)."""
    path = "%s/backup/%s" % (mount, name)
    body = connection.request("GET", path, capability="read", retry_statuses=BACKUP_RETRY_STATUSES,
                              explain=lambda status, errors: explain_backup_failure(status, errors, mount, name,
                                                                                    "GET " + path))
    blob = ((body or {}).get("data") or {}).get("backup")
    if not blob:
        raise TransitBackupError("Vault answered GET %s without a backup" % path)
    return blob


def _gpg(run_command, argv, what, data=None, environ_update=None):
    """gpg through the module's ``run_command`` (``AnsibleModule.run_command``): stdout as bytes."""
    try:
        rc, out, err = run_command(argv, data=data, binary_data=True, environ_update=environ_update or {},
                                   encoding=None, handle_exceptions=False,
                                   expand_user_and_vars=False)
    except (IOError, OSError) as exc:
        raise TransitBackupError("cannot run %s to %s (%s): install gnupg" % (argv[0], what, exc))
    return rc, out, err.decode("utf-8", "replace").strip()[-500:] if isinstance(err, bytes) else str(err)


def _gpg_encrypt(blob, run_command, recipient=None, key_file=None, gpg="gpg"):
    """``blob`` encrypted (binary OpenPGP) to ``recipient`` (in the keyring) or to the public key in ``key_file``."""
    argv = [gpg, "--batch", "--yes", "--quiet", "--no-tty", "--trust-model", "always", "--encrypt"]
    home = None
    environ_update = {}
    try:
        if key_file:
            # A throwaway home: the key file's key is used, nothing is imported into any keyring.
            home = tempfile.mkdtemp(prefix="keyops-gpg-")
            environ_update["GNUPGHOME"] = home
            argv += ["--no-autostart", "--recipient-file", key_file]
        else:
            argv += ["--recipient", recipient]
        rc, out, err = _gpg(run_command, argv + ["--output", "-"], "encrypt the backup (or leave "
                            "backup_gpg_recipient/backup_gpg_key_file unset)", blob.encode("ascii"), environ_update)
        if rc != 0 or not out:
            raise TransitBackupError("gpg could not encrypt the backup to %s: %s" % (
                key_file or recipient, err or "no output"))
        return out
    finally:
        if home:
            shutil.rmtree(home, ignore_errors=True)


def gpg_decrypt(path, run_command, gpg="gpg"):
    """The blob inside a GPG-encrypted backup file, decrypted with the private key of $GNUPGHOME's keyring."""
    rc, out, err = _gpg(run_command, [gpg, "--batch", "--quiet", "--no-tty", "--decrypt", path], "decrypt %s" % path)
    if rc != 0:
        raise TransitBackupError("gpg could not decrypt %s (is the private key in the keyring of GNUPGHOME?): %s"
                                 % (path, err))
    return out.decode("ascii", "replace").strip()


def write_backup(blob, target, gpg_recipient=None, gpg_key_file=None, run_command=None):
    """Write the blob (or its GPG encryption, through ``run_command``) to ``target`` 0600 through the atomic
    writer, directories 0700.

    Returns ``(path, sha256 of the bytes written)``.
    """
    content = _gpg_encrypt(blob, run_command, gpg_recipient, gpg_key_file) if (gpg_recipient or gpg_key_file) \
        else blob.encode("ascii")
    try:
        path = _atomic.write_file(target, content, mode=0o600, make_dirs=True)
    except (IOError, OSError) as exc:
        raise TransitBackupError("cannot write the backup to %s: %s" % (target, exc))
    return path, hashlib.sha256(content).hexdigest()


class BackupSettings:
    """Where and how backups go: ``path`` (directory or file), optional GPG recipient or public key file;
    ``run_command``: the module's ``run_command``, which runs gpg."""

    def __init__(self, path=None, gpg_recipient=None, gpg_key_file=None, run_command=None):
        self.path = path
        self.gpg_recipient = gpg_recipient
        self.gpg_key_file = gpg_key_file
        self.run_command = run_command
        if gpg_key_file and not os.path.isfile(gpg_key_file):
            raise TransitBackupError("backup_gpg_key_file %r is not a readable file" % gpg_key_file)

    @classmethod
    def from_module(cls, module):
        params = module.params
        return cls(params.get("backup_path"), params.get("backup_gpg_recipient"), params.get("backup_gpg_key_file"),
                   module.run_command)

    @property
    def encrypted(self):
        return bool(self.gpg_recipient or self.gpg_key_file)

    def predict(self, mount, name, key, now):
        """What a backup of ``key`` would be (check mode): the path and the versions, nothing written."""
        summary = {"first_version": max(1, key["min_available_version"]), "latest_version": key["latest_version"]}
        return {"path": os.path.abspath(backup_target(self.path, mount, name, summary, now, self.encrypted)),
                "sha256": None, "encrypted": self.encrypted, "first_version": summary["first_version"],
                "last_version": summary["latest_version"]}

    def take(self, connection, mount, name, now):
        """Fetch and write a backup of the key as it is now; returns what the task reports (no key material)."""
        blob = fetch_backup(connection, mount, name)
        summary = blob_summary(blob)
        if summary is None:
            raise TransitBackupError("Vault's backup of %r in %s is not in the expected format; nothing was "
                                     "written and the irreversible step was not sent" % (name, mount))
        target = backup_target(self.path, mount, name, summary, now, self.encrypted)
        path, digest = write_backup(blob, target, self.gpg_recipient, self.gpg_key_file, self.run_command)
        return {"path": path, "sha256": digest, "encrypted": self.encrypted,
                "first_version": summary["first_version"], "last_version": summary["latest_version"]}


def check_destruction(name, operation, key, settings, allow_data_loss):
    """Decide how an irreversible operation (trim, delete) is covered (pure).

    Returns ``"backup"`` (a backup is taken first) or ``"irreversible"`` (acknowledged, no backup); raises
    :class:`TransitBackupError` when there would be no backup and no acknowledgement.
    """
    if backup_allowed(key) and settings is not None and settings.path:
        return "backup"
    if allow_data_loss:
        return "irreversible"
    what = {"trim": "trim transit key %r (destroying versions below the new min_available_version)",
            "delete": "delete transit key %r (destroying every version)"}[operation] % name
    if backup_allowed(key):
        raise TransitBackupError(
            "refusing to %s without a backup: the key allows backups, so give backup_path (a directory or file "
            "for a 0600 backup; with backup_gpg_recipient/backup_gpg_key_file it is GPG-encrypted), or set "
            "allow_data_loss: true to do it without one" % what)
    raise TransitBackupError(
        "refusing to %s: the key does not allow backups (exportable=%s, allow_plaintext_backup=%s), so this cannot "
        "be undone. Either make it backup-able first (exportable: true and allow_plaintext_backup: true - both "
        "one-way, they expose the key material to whoever may read <mount>/backup or <mount>/export) and give "
        "backup_path, or set allow_data_loss: true to acknowledge that the versions are lost for good"
        % (what, key.get("exportable"), key.get("allow_plaintext_backup")))


def read_backup_file(path, run_command=None):
    """The blob in a backup file written by :func:`write_backup` (decrypted with gpg, through the module's
    ``run_command``, for .gpg/.asc/.pgp)."""
    if path.endswith(GPG_SUFFIXES):
        blob = gpg_decrypt(path, run_command)
    else:
        try:
            with open(path, "rb") as handle:
                blob = handle.read().decode("ascii", "replace").strip()
        except (IOError, OSError) as exc:
            raise TransitBackupError("cannot read backup_file %s: %s" % (path, exc))
    summary = blob_summary(blob)
    if summary is None:
        raise TransitBackupError("backup_file %s is not a transit key backup (base64 of Vault's backup JSON%s)"
                                 % (path, "" if path.endswith(GPG_SUFFIXES) else "; an encrypted one must end in "
                                    ".gpg, .asc or .pgp"))
    return blob, summary


def plan_restore(name, current, summary, force, older_ok):
    """Whether to restore, and the refusals (pure).  Returns an action sentence, or None when the key already
    holds what the backup holds."""
    span = "versions %d-%d" % (summary["first_version"], summary["latest_version"])
    if current is None:
        return "restored from backup (%s)" % span
    same = (current["latest_version"] == summary["latest_version"]
            and current["min_available_version"] == summary["min_available_version"]
            and current["min_decryption_version"] == summary["min_decryption_version"])
    if same:
        return None
    if not force:
        raise TransitBackupError(
            "transit key %r exists: restoring the backup over it needs force: true. It rolls the key back to the "
            "backup (%s, min_decryption_version %d), undoing later trims and configuration"
            % (name, span, summary["min_decryption_version"]))
    if summary["latest_version"] < current["latest_version"] and not older_ok:
        raise TransitBackupError(
            "refusing to restore a backup of transit key %r that ends at version %d over the key, which is at "
            "version %d: a forced restore deletes versions %d-%d, and every ciphertext encrypted with them becomes "
            "undecryptable. Take a newer backup, restore under another name, or set allow_older_backup: true "
            "if those versions must go" % (name, summary["latest_version"], current["latest_version"],
                                           summary["latest_version"] + 1, current["latest_version"]))
    return "restored from backup over the existing key (%s)" % span


def restore(connection, mount, name, blob, force):
    path = "%s/restore/%s" % (mount, name)
    connection.request("POST", path, data={"backup": blob, "force": bool(force)}, capability="update",
                       retry_statuses=BACKUP_RETRY_STATUSES,
                       explain=lambda status, errors: explain_backup_failure(status, errors, mount, name,
                                                                             "POST " + path))
