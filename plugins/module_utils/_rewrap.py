# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rewrap a file of transit ciphertexts to a newer key version, streaming and crash-safe.

Every line is parsed (one ciphertext per line, or JSON lines with the ciphertext in ``field``)
and counted by key version (the census).  Check mode only takes the census.  Otherwise, in the
same single pass, lines below the target version are sent to Vault in batches and the whole file
is written to a temporary file beside the original, which is fsynced and renamed over it, so the
file is at every instant either entirely old or entirely new.  A malformed line or a per-item
error in any batch discards the temporary file: nothing is written.  (Rewrap requests already
sent change nothing in Vault.)

Memory stays flat: at most ``workers`` batches of ``batch_size`` lines are held at once.
Ciphertexts and line contents never appear in messages; lines are referred to by number.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import contextlib
import fcntl
import json
import os
import re
import tempfile

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError

# Vault/OpenBao transit ciphertext: vault:v<version>:<base64>.
CIPHERTEXT_RE = re.compile(r"^vault:v(\d+):[A-Za-z0-9+/=]+$")
# OpenBao's default listener refuses JSON bodies with more than ~1,000 strings: 499 items pass.
MAX_SAFE_BATCH = 490
MAX_REPORTED_ERRORS = 20


class RewrapError(Exception):
    """The file cannot be rewrapped as asked; nothing has been written."""

    def __init__(self, msg, errors=None):
        super(RewrapError, self).__init__(msg)
        self.msg = msg
        self.errors = errors or []


def ciphertext_version(value):
    """Key version of a transit ciphertext, or None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    match = CIPHERTEXT_RE.match(value)
    return int(match.group(1)) if match else None


def parse_line(text, field):
    """Return ``(ciphertext, document, version)`` of one line; ``(None, None, None)`` for a blank line.

    Raises ValueError with a message that never quotes the line (it may hold secrets).
    """
    stripped = text.strip()
    if not stripped:
        return None, None, None
    if field is None:
        value, document = stripped, None
    else:
        try:
            document = json.loads(stripped)
        except ValueError:
            raise ValueError("not a JSON document (field=%r expects JSON lines)" % field)
        if not isinstance(document, dict) or field not in document:
            raise ValueError("JSON line has no field %r" % field)
        value = document[field]
    version = ciphertext_version(value)
    if version is None:
        raise ValueError("not a Vault transit ciphertext (expected vault:v<N>:<base64>)")
    return value, document, version


def replace_ciphertext(text, document, field, old, new):
    """The line with ``old`` replaced by ``new``, every other byte kept as it was."""
    if field is None:
        return text.replace(old, new, 1)
    quoted = '"%s"' % old  # ciphertexts contain no characters JSON escapes
    if text.count(quoted) == 1:
        return text.replace(quoted, '"%s"' % new, 1)
    document = dict(document)
    document[field] = new
    ending = "\n" if text.endswith("\n") else ""
    return json.dumps(document) + ending


def census_add(census, version):
    census[str(version)] = census.get(str(version), 0) + 1


def _as_census(counts_by_version):
    """{int version: count} -> the census form used in results: {"version": count}, sorted."""
    return dict((str(version), counts_by_version[version]) for version in sorted(counts_by_version))


def sorted_census(census):
    return dict(sorted(census.items(), key=lambda item: int(item[0])))


def min_version(census):
    return min((int(v) for v, n in census.items() if n), default=None)


@contextlib.contextmanager
def locked(path, exclusive=True):
    """Serialise rewrites of one file across processes (two keys may share a consumer file).

    The lock is a sidecar file: the data file itself is replaced by rename, so a lock on its
    inode would not be seen by the next writer.
    """
    directory, base = os.path.split(os.path.abspath(path))
    lock_path = os.path.join(directory, ".%s.keyops-lock" % base)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def take_census(path, field):
    """First pass: version counts; raises RewrapError listing malformed lines by number."""
    census, errors, bad = {}, [], 0
    with open(path, "r") as handle:
        for lineno, text in enumerate(handle, 1):
            try:
                version = parse_line(text, field)[2]
            except ValueError as exc:
                bad += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append({"line": lineno, "error": str(exc)})
                continue
            if version is not None:
                census_add(census, version)
    _raise_malformed(path, bad, errors)
    return sorted_census(census)


def _raise_malformed(path, bad, errors):
    if bad:
        raise RewrapError("%s: %d malformed line(s), first at line %d; nothing was rewrapped"
                          % (path, bad, errors[0]["line"]), errors)


class BatchRewrapper:
    """Sends batches through ``send(items) -> results`` and splits a batch the server refuses as too large."""

    def __init__(self, send, batch_size):
        self.send = send
        self.batch_size = batch_size

    def __call__(self, ciphertexts):
        try:
            return self.send(ciphertexts)
        except TooLargeError:
            if len(ciphertexts) == 1:
                raise
            half = len(ciphertexts) // 2
            # Later batches start at the size that worked.
            self.batch_size = max(1, min(self.batch_size, half))
            return self(ciphertexts[:half]) + self(ciphertexts[half:])


class TooLargeError(RewrapError):
    """The server refused the request body as too large or too complex."""


class _Pass:
    """Counters of the single rewrite pass."""

    def __init__(self):
        self.census_before, self.census_after = {}, {}
        self.errors, self.malformed, self.failed, self.rewrapped, self.due = [], 0, 0, 0, 0

    def error(self, line, message):
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "error": message})


def _chunks(handle, field, target, batch_size, counts):
    """Yield (lines, versions, pending) chunks of the file.

    ``versions`` holds each line's key version (None for blank or malformed lines); ``pending``
    holds (index in lines, ciphertext, document) for the lines below ``target``.
    """
    lines, versions, pending = [], [], []
    census_before = counts.census_before  # counted by int version here; see _Pass.finish
    for lineno, text in enumerate(handle, 1):
        try:
            ciphertext, document, version = parse_line(text, field)
        except ValueError as exc:
            counts.malformed += 1
            counts.error(lineno, str(exc))
            ciphertext = version = None
        if version is not None:
            census_before[version] = census_before.get(version, 0) + 1
            if version < target:
                pending.append((len(lines), ciphertext, document))
        lines.append(text)
        versions.append(version)
        if len(pending) >= batch_size:
            yield lines, versions, pending
            lines, versions, pending = [], [], []
    if lines:
        yield lines, versions, pending


def _new_version(value):
    """Version of a ciphertext Vault returned (trusted format, so no regex on the hot path)."""
    try:
        prefix, version, _body = value.split(":", 2)
        return int(version[1:]) if prefix == "vault" and version[0] == "v" else None
    except (AttributeError, ValueError, IndexError):
        return None


def rewrite(path, field, target, rewrap, batch_size, workers=1):
    """One pass: census, rewrap what is below ``target`` and write the result to a temp file.

    ``rewrap(list_of_ciphertexts)`` returns a list of ``{"ciphertext": ...}`` or ``{"error": ...}``.
    Returns ``(temp path or None when nothing was due, census_before, census_after, rewrapped)``.
    On a malformed line or any rewrap error the temp file is removed and RewrapError lists the lines.
    """
    directory, base = os.path.split(os.path.abspath(path))
    fd, temp_path = tempfile.mkstemp(prefix=".%s.keyops-rewrap-" % base, dir=directory)
    counts = _Pass()
    line_offset = 0
    try:
        with os.fdopen(fd, "w") as out, open(path, "r") as handle, ThreadPoolExecutor(max_workers=workers) as pool:
            in_flight = collections.deque()

            def drain_one():
                nonlocal line_offset
                lines, versions, pending, future = in_flight.popleft()
                results = future.result() if future is not None else []
                for (index, old, document), result in zip(pending, results):
                    new = result.get("ciphertext") if isinstance(result, dict) else None
                    version = _new_version(new)
                    if version is None:
                        counts.failed += 1
                        counts.error(line_offset + index + 1,
                                     str((result or {}).get("error") or "no ciphertext returned"))
                        continue
                    lines[index] = replace_ciphertext(lines[index], document, field, old, new)
                    versions[index] = version
                    counts.rewrapped += 1
                if not (counts.failed or counts.malformed):
                    out.writelines(lines)
                    census_after = counts.census_after
                    for version in versions:
                        if version is not None:
                            census_after[version] = census_after.get(version, 0) + 1
                line_offset += len(lines)

            for lines, versions, pending in _chunks(handle, field, target, batch_size, counts):
                if counts.malformed:
                    continue  # keep counting malformed lines; send nothing more
                future = pool.submit(rewrap, [old for _index, old, _document in pending]) if pending else None
                in_flight.append((lines, versions, pending, future))
                if len(in_flight) > workers:
                    drain_one()
            while in_flight:
                drain_one()
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        _remove(temp_path)
        raise
    if counts.malformed or counts.failed or not counts.rewrapped:
        _remove(temp_path)
    _raise_malformed(path, counts.malformed, counts.errors)
    if counts.failed:
        raise RewrapError("%s: Vault could not rewrap %d ciphertext(s), first at line %d (%s); nothing was written"
                          % (path, counts.failed, counts.errors[0]["line"], counts.errors[0]["error"]), counts.errors)
    census_before = _as_census(counts.census_before)
    if not counts.rewrapped:
        return None, census_before, census_before, 0
    return temp_path, census_before, _as_census(counts.census_after), counts.rewrapped


def replace_file(temp_path, path):
    """Give ``temp_path`` the mode and owner of ``path``, rename it over ``path``, fsync the directory."""
    try:
        info = os.stat(path)
        os.chmod(temp_path, info.st_mode & 0o7777)
        try:
            os.chown(temp_path, info.st_uid, info.st_gid)
        except PermissionError:
            pass  # not root: the file keeps our ownership, as any editor would leave it
        os.replace(temp_path, path)
    except BaseException:
        _remove(temp_path)
        raise
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temps(path):
    """Temp files of a run that was killed mid-write (only called while holding the lock)."""
    directory, base = os.path.split(os.path.abspath(path))
    prefix = ".%s.keyops-rewrap-" % base
    for name in os.listdir(directory):
        if name.startswith(prefix):
            _remove(os.path.join(directory, name))


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def make_sender(connection, mount, name, key_version=None):
    """``send(ciphertexts) -> batch_results`` for ``<mount>/rewrap/<name>`` through a VaultConnection."""
    path = "%s/rewrap/%s" % (mount.strip("/"), name)

    def send(ciphertexts):
        body = {"batch_input": [{"ciphertext": ciphertext} for ciphertext in ciphertexts]}
        if key_version is not None:
            body["key_version"] = key_version
        try:
            answer = connection.write(path, body)
        except VaultModuleError as exc:
            if exc.status == 413 or (exc.status == 400 and "complexity" in exc.msg):
                raise TooLargeError(exc.msg)
            raise
        results = (answer.get("data") or {}).get("batch_results") or []
        if len(results) != len(ciphertexts):
            raise VaultModuleError("Vault answered %d results for a batch of %d on POST %s"
                                   % (len(results), len(ciphertexts), path))
        return results

    return send


class FileRewrapper:
    """Rewrap consumer files through one VaultConnection (the I/O half used by vault_transit_rewrap)."""

    def __init__(self, connection, check_mode=False, backup_local=None, batch_size=400, workers=4):
        self.connection = connection
        self.check_mode = check_mode
        self.backup_local = backup_local
        self.batch_size = batch_size
        self.workers = workers
        self._latest = {}

    def latest_version(self, mount, name):
        if (mount, name) not in self._latest:
            path = "%s/keys/%s" % (mount.strip("/"), name)
            data = self.connection.read(path)
            if not data:
                raise VaultModuleError("transit key %r does not exist in mount %r" % (name, mount))
            self._latest[(mount, name)] = int(data["latest_version"])
        return self._latest[(mount, name)]

    def rewrap_file(self, name, mount, path, field=None, key_version=None, backup=False, workers=None):
        """Census (check mode) or census + rewrap of one file; raises VaultModuleError, never half-writes."""
        if not os.path.isfile(path):
            raise VaultModuleError("consumer file %s does not exist or is not a regular file" % path)
        if not os.access(path, os.R_OK):
            raise VaultModuleError("consumer file %s is not readable by this user" % path)
        latest = self.latest_version(mount, name)
        target = key_version or latest
        if target > latest or target < 1:
            raise VaultModuleError("key_version %d is not a version of key %r (latest is %d)" % (target, name, latest))
        result = dict(path=path, target_version=target)
        try:
            with locked(path, exclusive=not self.check_mode):
                if self.check_mode:
                    census = take_census(path, field)
                    due = sum(count for version, count in census.items() if int(version) < target)
                    result.update(census_before=census, census_after=census, rewrapped=due,
                                  min_version_in_use=min_version(census), changed=bool(due))
                    return result
                if not os.access(path, os.W_OK) or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
                    raise RewrapError("consumer file %s (or its directory) is not writable" % path)
                remove_stale_temps(path)
                sender = BatchRewrapper(make_sender(self.connection, mount, name, key_version), self.batch_size)
                temp_path, census_before, census_after, rewrapped = rewrite(
                    path, field, target, sender, self.batch_size, workers or self.workers)
                if temp_path is not None:
                    if backup and self.backup_local is not None:
                        result["backup_file"] = self.backup_local(path)
                    replace_file(temp_path, path)
                result.update(census_before=census_before, census_after=census_after, rewrapped=rewrapped,
                              min_version_in_use=min_version(census_after), changed=bool(rewrapped))
                return result
        except RewrapError as exc:
            raise VaultModuleError(exc.msg, errors=exc.errors)
        except (IOError, OSError) as exc:
            raise VaultModuleError("cannot rewrap %s: %s; nothing was written" % (path, exc))

    def rewrap_many(self, consumers, default_mount, default_backup=False):
        """Bulk: every consumer is tried and reports its own outcome (``ok``/``error``).

        Files are independent, so several are rewritten at once: their Vault round trips and
        fsyncs overlap.  The request workers are shared out between the files in flight.
        """
        file_threads = max(1, min(self.workers, len(consumers)))
        per_file_workers = max(1, self.workers // file_threads)

        def one(consumer):
            entry = dict(name=consumer["name"], mount=consumer.get("mount") or default_mount,
                         field=consumer.get("field"))
            backup = default_backup if consumer.get("backup") is None else consumer["backup"]
            try:
                entry.update(self.rewrap_file(consumer["name"], entry["mount"], consumer["path"], consumer.get("field"),
                                              consumer.get("key_version"), backup, per_file_workers))
                entry.update(ok=True, error=None)
            except VaultModuleError as exc:
                entry.update(path=consumer["path"], ok=False, error=exc.msg, changed=False, census_before={},
                             census_after={}, rewrapped=0, min_version_in_use=None)
            return entry

        with ThreadPoolExecutor(max_workers=file_threads) as pool:
            return list(pool.map(one, consumers))
