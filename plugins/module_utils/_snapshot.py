# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Raft snapshots of Vault/OpenBao: save (streamed, checked, retained) and restore (verified, with a way back).

Private to the collection.  The first half is pure decisions (names, retention, what a snapshot must
contain, which node to talk to, when a restore is refused, what the result says), unit-tested without a
server; the second half is the one thin I/O layer (:func:`save` and :func:`restore`) over a
:class:`VaultConnection`.

What the server does (measured on OpenBao 2.6/2.7, see docs/vault-server.md "Snapshots and restore"):

* ``GET sys/storage/raft/snapshot`` on a *standby* answers 200 with that standby's own, possibly stale,
  snapshot - it is neither forwarded nor redirected.  So the snapshot is taken from the active node only.
* ``POST sys/storage/raft/snapshot`` on a standby answers 204, restores nothing and seals the standby.  So a
  restore is sent to the active node only, and the 204 proves nothing: the node is watched afterwards.
* A snapshot of another cluster (other unseal keys) is refused with 400 ``could not verify hash file`` unless
  sent to ``snapshot-force``; after a force restore every node seals and opens only with the ORIGINAL keys.

Snapshots are the whole storage of the server (encrypted by the barrier): files are 0600, contents are never
read into memory whole and never printed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import time
import zlib

from ansible_collections.keyops.lifecycle.plugins.module_utils import _atomic
from ansible_collections.keyops.lifecycle.plugins.module_utils._retry import Retry, with_retries
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultConnection, VaultModuleError, explain_failure)

try:
    import requests
except ImportError:  # pragma: no cover - reported by VaultConnection
    requests = None

SNAPSHOT_PATH = "sys/storage/raft/snapshot"
FORCE_PATH = "sys/storage/raft/snapshot-force"
REQUIRED_MEMBERS = ("meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed")
SUFFIX = ".snap"
SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "keyops.lifecycle.vault_raft_snapshot/1"
CHUNK = 1024 * 1024
STAMP = "%Y%m%dT%H%M%SZ"


class SnapshotError(VaultModuleError):
    """A snapshot file, its sidecar or a restore decision that the operator has to act on."""


# -- pure: names, retention -------------------------------------------------------------------------


def validate_prefix(prefix):
    if not prefix or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", prefix):
        raise SnapshotError("`prefix` must be a plain file name start (letters, digits, '.', '_', '-'), got %r"
                            % (prefix,))
    return prefix


def _name_pattern(prefix):
    return re.compile(r"^%s-(\d{8}T\d{6}Z)(?:-(\d+))?%s$" % (re.escape(prefix), re.escape(SUFFIX)))


def snapshot_name(prefix, when, existing=()):
    """``<prefix>-<UTC timestamp>.snap``; ``-2``, ``-3`` ... when that second already has snapshots (pure).

    The sequence goes past the highest one of that second, not into a gap: retention may just have removed
    ``<stamp>.snap``, and a new snapshot given that name would sort older than ``<stamp>-3.snap`` and be the
    first one the next retention removes.
    """
    stamp = when.strftime(STAMP)
    pattern = _name_pattern(prefix)
    sequences = []
    for name in existing:
        if name.endswith(SIDECAR_SUFFIX):
            name = name[:-len(SIDECAR_SUFFIX)]
        match = pattern.match(name)
        if match and match.group(1) == stamp:
            sequences.append(int(match.group(2) or 1))
    if not sequences:
        return "%s-%s%s" % (prefix, stamp, SUFFIX)
    return "%s-%s-%d%s" % (prefix, stamp, max(sequences) + 1, SUFFIX)


def snapshots_newest_first(names, prefix):
    """The snapshot files of ``prefix`` among ``names``, newest first (by the timestamp in the name; pure)."""
    pattern = _name_pattern(prefix)
    found = []
    for name in names:
        match = pattern.match(name)
        if match:
            found.append(((match.group(1), int(match.group(2) or 1)), name))
    return [name for _key, name in sorted(found, reverse=True)]


def retention_plan(names, prefix, retain):
    """``(keep, remove)`` snapshot names when the newest ``retain`` are kept (pure)."""
    ordered = snapshots_newest_first(names, prefix)
    if retain is None:
        return ordered, []
    return ordered[:retain], ordered[retain:]


def destination(path, prefix, when, exists, is_dir, names):
    """Where a new snapshot goes: ``(directory, file name, directory_mode)`` (pure).

    ``path`` is a directory when it is one, ends with ``/``, or does not end in ``.snap``; otherwise a file.
    """
    if is_dir or path.endswith("/") or (not path.endswith(SUFFIX) and not exists):
        directory = path.rstrip("/") or "/"
        return directory, snapshot_name(prefix, when, names), True
    if exists and not is_dir and not path.endswith(SUFFIX):
        raise SnapshotError("`path` %s exists and is not a directory or a .snap file: give a directory or a "
                            "file name ending in .snap" % path)
    return os.path.dirname(path) or ".", os.path.basename(path), False


def backup_name(prefix, when, existing=()):
    """Name of the snapshot taken just before a restore: outside the retention/newest pattern on purpose,
    so restoring "the newest in a directory" again never picks the pre-restore copy (pure)."""
    return snapshot_name(prefix + "-pre-restore", when, existing)


# -- pure: what a snapshot must contain ---------------------------------------------------------------


def inspect_snapshot(handle):
    """Check a snapshot stream (gzipped tar) and return its ``meta.json`` (pure over a file object).

    The tar must be complete (gzip trailer and CRC included), hold ``meta.json``, ``state.bin``,
    ``SHA256SUMS`` and ``SHA256SUMS.sealed``, and the sums must match the members.  Never returns content.
    """
    digests, meta, sums = {}, None, None
    try:
        unzipped = gzip.GzipFile(fileobj=handle, mode="rb")
        with tarfile.open(fileobj=unzipped, mode="r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                extracted = archive.extractfile(member)
                digest = hashlib.sha256()
                small = io.BytesIO() if member.name in ("meta.json", "SHA256SUMS") else None
                while True:
                    chunk = extracted.read(CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    if small is not None and small.tell() < 65536:
                        small.write(chunk)
                digests[member.name] = digest.hexdigest()
                if member.name == "meta.json":
                    meta = small.getvalue()
                elif member.name == "SHA256SUMS":
                    sums = small.getvalue()
        while unzipped.read(CHUNK):  # to the gzip trailer: its CRC and length prove the stream complete
            pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise SnapshotError("not a complete raft snapshot (a gzipped tar): %s" % _short(exc))
    missing = [name for name in REQUIRED_MEMBERS if name not in digests]
    if missing:
        raise SnapshotError("incomplete raft snapshot: %s missing (a snapshot holds %s)"
                            % (", ".join(missing), ", ".join(REQUIRED_MEMBERS)))
    for line in sums.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") in digests and digests[parts[1].lstrip("*")] != parts[0].lower():
            raise SnapshotError("corrupt raft snapshot: %s does not match its SHA256SUMS entry" % parts[1])
    try:
        document = json.loads(meta.decode("utf-8"))
    except ValueError:
        raise SnapshotError("corrupt raft snapshot: meta.json is not JSON")
    if not isinstance(document, dict):
        raise SnapshotError("corrupt raft snapshot: meta.json is not an object")
    return {"raft_index": document.get("Index"), "raft_term": document.get("Term"), "id": document.get("ID"),
            "format_version": document.get("Version")}


def _short(exc):
    return ("%s: %s" % (exc.__class__.__name__, exc))[:200]


def sidecar_document(sha256, size, status, meta, node, when, file_name):
    """The metadata kept beside a snapshot (no secret in it; pure)."""
    return {
        "format": SIDECAR_FORMAT,
        "file": file_name,
        "sha256": sha256,
        "size": size,
        "version": status.get("version"),
        "cluster_id": status.get("cluster_id"),
        "cluster_name": status.get("cluster_name"),
        "storage_type": status.get("storage_type"),
        "raft_index": meta.get("raft_index"),
        "raft_term": meta.get("raft_term"),
        "node": node,
        "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def check_checksum(path, sidecar, sha256, size, verify):
    """Raise unless the file matches its sidecar (or ``verify`` is off); pure."""
    if not verify:
        return
    if sidecar is None:
        raise SnapshotError("%s has no sidecar %s with its sha256: nothing was sent. Restore only snapshots taken "
                            "by vault_raft_snapshot, or set verify_checksum: false after checking the file yourself"
                            % (path, path + SIDECAR_SUFFIX))
    expected = str(sidecar.get("sha256") or "").lower()
    if expected != sha256:
        raise SnapshotError("%s does not match its sidecar: sha256 %s, the sidecar says %s (size %s, sidecar %s). "
                            "The file was changed or damaged after it was saved; nothing was sent"
                            % (path, sha256, expected or "nothing", size, sidecar.get("size")))


# -- pure: which node, when a restore is refused ------------------------------------------------------


def pick_active(leader, url, follow_leader, action):
    """The address to send ``action`` to, from ``sys/leader`` asked of ``url`` (pure).

    Returns ``url`` when it is the active node, the ``leader_address`` with ``follow_leader``; raises otherwise.
    """
    if leader.get("ha_enabled") is False:
        return url
    if leader.get("is_self"):
        return url
    address = (leader.get("leader_address") or "").rstrip("/")
    if not address:
        raise SnapshotError("%s is a standby and names no active node (an election is under way, or quorum is "
                            "lost): nothing was %s. Retry when the cluster has a leader" % (url, action))
    if not follow_leader:
        raise SnapshotError("%s is a standby; the active node is %s. A standby answers a snapshot request with its "
                            "own, possibly stale data (and seals itself on a restore), so nothing was %s: point `url` "
                            "at the active node or set follow_leader: true" % (url, address, action))
    return address


def cross_cluster_refusal(sidecar, target_status, force):
    """A sentence when the snapshot belongs to another cluster and ``force`` is off, else None (pure)."""
    if force or not sidecar:
        return None
    source = sidecar.get("cluster_id")
    target = target_status.get("cluster_id")
    if source and target and source != target:
        return ("the snapshot comes from cluster %s (%s) and the target is cluster %s (%s): restoring it replaces "
                "all of the target's data, seals every node, and only the snapshot cluster's ORIGINAL unseal keys "
                "open it again. Nothing was sent; set force: true if that is what you want"
                % (sidecar.get("cluster_name"), source, target_status.get("cluster_name"), target))
    return None


def explain_restore_refusal(status, errors, path):
    """The operator's sentence for a refused restore POST (pure)."""
    text = errors or ""
    if status == 400 and "hash file" in text:
        return ("the target refused the snapshot: it was taken by a cluster with other unseal keys (Vault said: %s). "
                "Restoring it replaces all of the target's data and seals every node; set force: true to use "
                "snapshot-force, then unseal with the ORIGINAL keys" % text)
    return None


def restore_message(sealed, cross_cluster, answered, address):
    """What the operator must do after a restore (pure)."""
    if sealed:
        return ("restored on %s; the cluster is now sealed, as every node is after restoring a snapshot of a "
                "cluster with other unseal keys: unseal EVERY node with the ORIGINAL unseal keys (those of the "
                "snapshot's cluster; its root token is valid again, this cluster's old keys and tokens are not), "
                "then wait until one of THIS cluster's nodes says sys/leader is_self before sending clients: until "
                "the first election (~20 s on 3 nodes) the nodes forward requests to the snapshot's cluster if it "
                "is reachable. A node that still says sealed: false a minute after the restore missed it (standbys apply a "
                "restore on a best-effort basis): restart its service, then unseal it with the ORIGINAL keys too"
                % address)
    if not answered:
        return ("restore sent to %s, but the node did not answer again within wait_timeout: check it (sys/seal-status, "
                "its log) before sending clients" % address)
    if cross_cluster:
        return ("restored on %s and it did not seal; authenticate with the snapshot cluster's tokens from now on"
                % address)
    return "restored on %s; the node answers with the restored data" % address


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


# -- I/O: connections -------------------------------------------------------------------------------


def connection_to(connection, address, params):
    """A connection to ``address`` with the same token and TLS settings as ``connection``."""
    if address == connection.url:
        return connection
    return VaultConnection(url=address, token=connection.client.token, auth_method="token",
                           namespace=params.get("namespace") or None, ca_cert=params.get("ca_cert") or None,
                           validate_certs=params.get("validate_certs"), timeout=params.get("timeout") or 30,
                           retries=connection.retries, sleep=connection._sleep)  # pylint: disable=protected-access


def active_connection(connection, params, follow_leader, action):
    """``(connection to the active node, its seal-status)``; refuses standbys, sealed nodes, non-raft storage."""
    leader = connection.request("GET", "sys/leader")
    address = pick_active(leader, connection.url, follow_leader, action)
    active = connection_to(connection, address, params)
    if active is not connection:
        confirm = active.request("GET", "sys/leader")
        if not confirm.get("is_self"):
            raise SnapshotError("%s names %s as the active node, but %s does not say it is active (an election is "
                                "under way): nothing was %s. Retry when the cluster has a leader"
                                % (connection.url, address, address, action))
    status = active.request("GET", "sys/seal-status")
    if status.get("sealed"):
        raise SnapshotError("%s is sealed: unseal it first; nothing was %s" % (address, action))
    storage = status.get("storage_type")
    if storage and storage != "raft":
        raise SnapshotError("%s uses %r storage, not raft: raft snapshots exist only with integrated (raft) storage; "
                            "back up that storage backend instead. Nothing was %s" % (address, storage, action))
    return active, status


# -- I/O: save --------------------------------------------------------------------------------------


def _stream_into(connection, writer):
    """GET the snapshot into ``writer`` (an open AtomicFile), hashing while streaming; returns (sha256, size)."""
    url = "/v1/" + SNAPSHOT_PATH

    def attempt():
        writer.handle.seek(0)
        writer.handle.truncate()
        digest, size = hashlib.sha256(), 0
        try:
            response = connection.client.adapter.request("GET", url, raise_exception=False, stream=True)
        except requests.exceptions.RequestException as exc:
            raise Retry(VaultModuleError(connection._unreachable(exc)))  # pylint: disable=protected-access
        try:
            if response.status_code >= 400:
                connection._answer(response, "GET", SNAPSHOT_PATH, True, "read", False)  # pylint: disable=protected-access
            try:
                for chunk in response.iter_content(chunk_size=CHUNK):
                    if chunk:
                        writer.handle.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            except requests.exceptions.RequestException as exc:
                raise Retry(VaultModuleError("the snapshot stream from %s broke off after %d bytes: %s"
                                             % (connection.url, size, _short(exc))))
        finally:
            response.close()
        return digest.hexdigest(), size

    return with_retries(attempt, connection.retries, connection._sleep)  # pylint: disable=protected-access


def take_snapshot(active, status, target, when):
    """Stream a snapshot of ``active`` to ``target`` atomically, check it, write its sidecar; returns the sidecar."""
    directory = os.path.dirname(target)
    _atomic.ensure_private_directory(directory)
    writer = _atomic.AtomicFile(target, mode=0o600, binary=True)
    writer.open()
    try:
        sha256, size = _stream_into(active, writer)
        writer.handle.flush()
        with open(writer.temp, "rb") as handle:
            meta = inspect_snapshot(handle)
        writer.commit()
    except SnapshotError as exc:
        writer.discard()
        raise SnapshotError("the snapshot from %s was refused and removed: %s" % (active.url, exc.msg))
    except BaseException:
        writer.discard()
        raise
    document = sidecar_document(sha256, size, status, meta, active.url, when, os.path.basename(target))
    _atomic.write_file(target + SIDECAR_SUFFIX, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return document


def _listing(directory):
    try:
        return os.listdir(directory)
    except OSError:
        return []


def save(connection, params, check_mode, when=None):
    when = when or utcnow()
    prefix = validate_prefix(params["prefix"])
    retain = params.get("retain")
    if retain is not None and retain < 1:
        raise SnapshotError("`retain` must be 1 or more (the snapshot just taken is always kept), got %s" % retain)
    path = params["path"]
    directory, name, _directory_mode = destination(path, prefix, when, os.path.exists(path), os.path.isdir(path),
                                                   _listing(path) if os.path.isdir(path) else [])
    target = os.path.join(os.path.abspath(directory), name)
    active, status = active_connection(connection, params, params.get("follow_leader", True), "saved")
    names = set(_listing(directory)) | {name}
    _keep, remove = retention_plan(names, prefix, retain)
    if name in remove:  # a hand-named file older than the kept ones: never delete what we just wrote
        remove.remove(name)
    result = dict(changed=True, path=target, sidecar=target + SIDECAR_SUFFIX, node=active.url,
                  version=status.get("version"), cluster_id=status.get("cluster_id"),
                  cluster_name=status.get("cluster_name"),
                  removed=[os.path.join(os.path.abspath(directory), n) for n in remove])
    if check_mode:
        result.update(sha256=None, size=None, raft_index=None, raft_term=None)
        return result
    try:
        document = take_snapshot(active, status, target, when)
    except (IOError, OSError) as exc:
        raise SnapshotError("cannot write the snapshot to %s: %s" % (target, _short(exc)))
    removed = []
    for old in remove:
        for victim in (os.path.join(directory, old), os.path.join(directory, old + SIDECAR_SUFFIX)):
            try:
                os.unlink(victim)
                if victim.endswith(SUFFIX):
                    removed.append(os.path.abspath(victim))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise SnapshotError("the snapshot was saved to %s, but an old one could not be removed: %s: %s"
                                    % (target, victim, _short(exc)), path=target, sha256=document["sha256"])
    if remove:
        _atomic.fsync_directory(directory)
    result.update(sha256=document["sha256"], size=document["size"], raft_index=document["raft_index"],
                  raft_term=document["raft_term"], created=document["created"], removed=removed)
    return result


# -- I/O: restore -----------------------------------------------------------------------------------


def resolve_restore_source(path, prefix):
    """The snapshot file to restore: ``path`` itself, or the newest ``<prefix>-*.snap`` in directory ``path``."""
    if os.path.isdir(path):
        newest = snapshots_newest_first(_listing(path), prefix)
        if not newest:
            raise SnapshotError("no snapshot %s-<timestamp>.snap in directory %s: nothing to restore" % (prefix, path))
        return os.path.join(os.path.abspath(path), newest[0])
    if not os.path.isfile(path):
        raise SnapshotError("snapshot file %s does not exist (or is not a regular file): nothing to restore" % path)
    return os.path.abspath(path)


def read_sidecar(path):
    try:
        with open(path + SIDECAR_SUFFIX) as handle:
            document = json.load(handle)
    except FileNotFoundError:
        return None
    except (IOError, OSError, ValueError) as exc:
        raise SnapshotError("the sidecar %s cannot be read as JSON (%s): nothing was sent"
                            % (path + SIDECAR_SUFFIX, _short(exc)))
    if not isinstance(document, dict):
        raise SnapshotError("the sidecar %s is not a JSON object: nothing was sent" % (path + SIDECAR_SUFFIX))
    return document


def file_digest(path):
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as handle:
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
    except (IOError, OSError) as exc:
        raise SnapshotError("cannot read snapshot %s: %s" % (path, _short(exc)))
    return digest.hexdigest(), size


def _post_snapshot(active, source, force):
    api = FORCE_PATH if force else SNAPSHOT_PATH
    url = "/v1/" + api

    def attempt():
        try:
            with open(source, "rb") as handle:
                response = active.client.adapter.request("POST", url, raise_exception=False, data=handle,
                                                         headers={"Content-Type": "application/octet-stream"})
        except requests.exceptions.ConnectionError as exc:
            final = VaultModuleError(active._unreachable(exc))  # pylint: disable=protected-access
            if "refused" in str(exc).lower():
                raise Retry(final)  # never reached the server
            raise final
        except requests.exceptions.RequestException as exc:
            raise VaultModuleError(active._unreachable(exc))  # pylint: disable=protected-access
        if response.status_code >= 400:
            try:
                errors = "; ".join(str(e) for e in (response.json() or {}).get("errors") or [])
            except ValueError:
                errors = (response.text or "")[:300]
            msg = explain_restore_refusal(response.status_code, errors, api) or explain_failure(
                response.status_code, "POST", api, errors, active.url, "update")
            raise SnapshotError(msg, status=response.status_code)
        return response.status_code

    return with_retries(attempt, active.retries, active._sleep)  # pylint: disable=protected-access


def _probe(active, path, timeout):
    """``(status, body)`` of one short request, ``(None, None)`` when the node does not answer."""
    try:
        response = active.client.adapter.request("GET", "/v1/" + path, raise_exception=False, timeout=timeout)
    except requests.exceptions.RequestException:
        return None, None
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    return response.status_code, body


def wait_after_restore(active, expect_seal, wait_timeout, clock=time.monotonic, sleep=time.sleep):
    """Watch the node after the 204: ``(answered, sealed)``.

    Same keys: done when an authenticated request answers (the first one blocks until the data is live).
    Other keys (force): done when the node reports sealed, which it does a few seconds after the 204.
    """
    deadline = clock() + wait_timeout
    answered = False
    sleep(1)
    while True:
        status, body = _probe(active, "sys/seal-status", 5)
        if status == 200 and isinstance(body, dict):
            answered = True
            if body.get("sealed"):
                return True, True
            if not expect_seal:
                check, _body = _probe(active, "auth/token/lookup-self", max(1, min(30, wait_timeout)))
                if check == 200:
                    return True, False
                if check in (401, 403):
                    expect_seal = True  # our token is not in the restored data: the keys differ
        if clock() >= deadline:
            return answered, False
        sleep(1)


def restore(connection, params, check_mode, when=None):
    when = when or utcnow()
    prefix = validate_prefix(params["prefix"])
    force = bool(params.get("force"))
    source = resolve_restore_source(params["path"], prefix)
    verify = params.get("verify_checksum", True)
    sidecar = read_sidecar(source)
    sha256, size = file_digest(source)
    check_checksum(source, sidecar, sha256, size, verify)
    with open(source, "rb") as handle:
        meta = inspect_snapshot(handle)
    backup_current = params.get("backup_current", True)
    if not backup_current and not force:
        raise SnapshotError("a restore replaces everything on the target and cannot be undone: keep "
                            "backup_current: true (a snapshot of the current state is taken first) or set force: true")
    active, status = active_connection(connection, params, params.get("follow_leader", True), "restored")
    refusal = cross_cluster_refusal(sidecar, status, force)
    if refusal:
        raise SnapshotError(refusal)
    cross = bool(sidecar and sidecar.get("cluster_id") and status.get("cluster_id")
                 and sidecar["cluster_id"] != status["cluster_id"])
    backup_dir = params.get("backup_current_to") or os.path.dirname(source)
    result = dict(changed=True, path=source, sha256=sha256, size=size, node=active.url, force=force,
                  raft_index=meta["raft_index"], raft_term=meta["raft_term"],
                  checksum_verified=bool(verify), snapshot_cluster_id=(sidecar or {}).get("cluster_id"),
                  target_cluster_id=status.get("cluster_id"), version=status.get("version"), backup=None,
                  sealed=False)
    if check_mode:
        result["msg"] = "checksum verified; check mode: nothing was restored"
        if backup_current:
            result["backup"] = os.path.join(os.path.abspath(backup_dir),
                                            backup_name(prefix, when, _listing(backup_dir)))
        return result
    if backup_current:
        target = os.path.join(os.path.abspath(backup_dir), backup_name(prefix, when, _listing(backup_dir)))
        try:
            take_snapshot(active, status, target, when)
        except (IOError, OSError) as exc:
            raise SnapshotError("cannot write the snapshot of the current state to %s (%s): nothing was restored"
                                % (target, _short(exc)))
        result["backup"] = target
    _post_snapshot(active, source, force)
    answered, sealed = wait_after_restore(active, cross, params.get("wait_timeout") or 60, sleep=active._sleep)  # pylint: disable=protected-access
    result.update(sealed=sealed, answered=answered, msg=restore_message(sealed, cross, answered, active.url))
    if sealed:
        result["unseal_with"] = "the ORIGINAL unseal keys of cluster %s (%s)" % (
            (sidecar or {}).get("cluster_name"), (sidecar or {}).get("cluster_id"))
    return result
