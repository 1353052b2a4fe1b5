# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rewrap a file of transit ciphertexts to a newer key version, streaming, crash-safe, losing no append.

Every line is parsed (one ciphertext per line, or JSON lines with the ciphertext in ``field`` and,
for a derived key, the key derivation context in ``context_field``) and counted by key version (the
census).  Check mode only takes the census.  Otherwise lines below the target version are sent to
Vault in batches and the whole file is written to a twin beside it (``_atomic.AtomicFile``), which is
renamed over it: the file is at every instant either entirely old or entirely new.  A malformed line
or a per-item error discards the twin: nothing is written.  (Rewrap requests change nothing in Vault.)

Applications may append to the file while this runs.  Nothing they append is lost:

1. after the main pass the lines appended since are caught up (censused, rewrapped when due) until
   the size is stable;
2. the last catch-up and the rename happen under ``flock(LOCK_EX)`` on the data file itself, so a
   writer that flocks the file waits and writes after;
3. the old inode stays open after the rename: for a settle window (``settle`` seconds after its last
   growth) whatever still lands in it - writers that opened it before the rename - is rewrapped and
   appended to the new file (under ``flock`` on the new file, serialised with the writers);
4. before the rename, ``/proc/*/fd`` is scanned for processes keeping the file open for writing: a
   writer that keeps it open across the rename would write into the deleted old inode.  The file is
   then left untouched and the run fails (``open_writers=fail``) or reports it (``report``).  After the
   settle window the old inode must be quiet and held by nobody, else the run fails with the count of
   lines at risk - success is never reported over lost data.

Memory stays flat: a bounded number of lines per batch, at most ``workers`` batches at once.
Ciphertexts, contexts and line contents never appear in messages; lines are referred to by number.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import collections
import contextlib
import fcntl
import json
import os
import re
import threading
import time

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.keyops.lifecycle.plugins.module_utils._atomic import AtomicFile, stale_twins
from ansible_collections.keyops.lifecycle.plugins.module_utils._errors import KeyopsModuleError
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError

# Vault/OpenBao transit ciphertext: vault:v<version>:<base64>.
CIPHERTEXT_RE = re.compile(r"^vault:v(\d+):[A-Za-z0-9+/=]+$")
_LOOSE_VERSION_RE = re.compile(r"vault:v(\d+):")
NOT_A_CIPHERTEXT = "not a Vault transit ciphertext (expected vault:v<N>:<base64>)"
# OpenBao's default listener refuses JSON bodies with more than ~1,000 strings: 499 items pass.
MAX_SAFE_BATCH = 490
# An item with a context carries twice the strings.
MAX_SAFE_CONTEXT_BATCH = 240
MAX_REPORTED_ERRORS = 20
CONTEXT_ENCODINGS = ("base64", "text")
OPEN_WRITERS_CHOICES = ("fail", "report")
TEMP_PREFIX = ".%s.keyops-rewrap-"
DEFAULT_SETTLE = 0.3
# A chunk is sent when it holds batch_size lines to rewrap, or this many lines at all (a file mostly
# at the target version must not be held in memory whole).
MAX_CHUNK_LINES = 8192
# Catch-up passes before the lock is taken (a writer that never pauses must not keep us reading).
MAX_CATCH_UP = 20
# How long to wait for a writer holding flock on the data file before giving up (nothing written).
LOCK_TIMEOUT = 30.0
# The settle window ends at the latest this long after the rename (a writer still going then keeps
# the old inode open: that is a failure, not a reason to wait for ever).
SETTLE_CAP_FACTOR, SETTLE_CAP_MIN = 10, 3.0
# A process seen holding the file open for writing must still hold it, unchanged, this long to count
# as keeping it open (per-write openers hold it for microseconds).
SCAN_WINDOW, SCAN_INTERVAL = 0.2, 0.005
POLL_INTERVAL = 0.01
# The settle window may end early once two scans this far apart find no process holding the old inode.
QUIET_PROOF = 0.03
# Files rewritten at once in a bulk run.  Each spends ~0.1 s after its rename proving the old inode quiet (mostly
# waiting), so more files than request workers are in flight; requests to Vault stay limited to ``workers``.
FILES_IN_FLIGHT = 16


class RewrapError(KeyopsModuleError):
    """The file cannot be rewrapped as asked (``errors``: up to 20 ``{line, error}``)."""

    def __init__(self, msg, errors=None, **details):
        details.setdefault("errors", list(errors or []))
        super(RewrapError, self).__init__(msg, **details)
        self.errors = details["errors"]


class TooLargeError(RewrapError):
    """The server refused the request body as too large or too complex."""


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
        raise ValueError(NOT_A_CIPHERTEXT)
    return value, document, version


def encode_context(value, context_field, encoding="base64"):
    """The context as Vault's API takes it (base64) from the value of ``context_field`` (a str, or bytes from a
    database column).

    ``base64``: the value holds it exactly so (checked, not changed); ``text``: its UTF-8 text is encoded.
    Raises ValueError naming the field, never the value.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if encoding == "text" and raw:
            return base64.b64encode(raw).decode("ascii")
        value = raw.decode("ascii", "replace")
    if not isinstance(value, str) or not value:
        raise ValueError("context field %r is empty or not a string" % context_field)
    if encoding == "text":
        return base64.b64encode(value.encode("utf-8")).decode("ascii")
    try:
        base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("context field %r is not base64 (context_encoding=base64; use text for plain text)"
                         % context_field)
    return value


class LineFormat:
    """How lines are read: ``field`` (JSON lines) and, for derived keys, ``context_field``/``context_encoding``."""

    def __init__(self, field=None, context_field=None, context_encoding="base64"):
        if context_field is not None and field is None:
            raise RewrapError("context_field needs field: the context comes from a field of the same JSON line, "
                              "and a file of one ciphertext per line has none")
        if context_field is not None and context_field == field:
            raise RewrapError("context_field must name another field than field (%r holds the ciphertext)" % field)
        if context_encoding not in CONTEXT_ENCODINGS:
            raise RewrapError("context_encoding must be one of %s (got %r)"
                              % (", ".join(CONTEXT_ENCODINGS), context_encoding))
        self.field = field
        self.context_field = context_field
        self.context_encoding = context_encoding

    def parse(self, raw):
        """``(text, ciphertext, document, version, context)`` of a line (bytes); Nones but text when blank."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text")
        ciphertext, document, version = parse_line(text, self.field)
        context = None
        if version is not None and self.context_field is not None:
            if self.context_field not in document:
                raise ValueError("JSON line has no context field %r" % self.context_field)
            context = encode_context(document[self.context_field], self.context_field, self.context_encoding)
        return text, ciphertext, document, version, context


def loose_version(raw):
    """Oldest version named anywhere in a malformed line (kept verbatim: the census must still count it)."""
    versions = [int(v) for v in _LOOSE_VERSION_RE.findall(raw.decode("utf-8", "replace"))]
    return min(versions) if versions else None


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
    """Serialise our own rewrites of one file across processes (two keys may share a consumer file).

    A sidecar file: the data file is replaced by rename, so the next run of ours would lock a
    different inode.  (Writers are serialised with us through flock on the data file itself.)
    """
    directory, base = os.path.split(os.path.abspath(path))
    lock_path = os.path.join(directory, ".%s.keyops-lock" % base)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _flock(fd, timeout=LOCK_TIMEOUT, what="the file", sleep=time.sleep, clock=time.monotonic):
    """flock(LOCK_EX) with a deadline: a writer that never releases its lock must not hang the task."""
    deadline = clock() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if clock() >= deadline:
                raise RewrapError("another process has held flock on %s for more than %d s; nothing was written"
                                  % (what, timeout))
            sleep(POLL_INTERVAL)


def _raise_malformed(path, bad, errors):
    if bad:
        raise RewrapError("%s: %d malformed line(s), first at line %d; nothing was rewrapped"
                          % (path, bad, errors[0]["line"]), errors)


def take_census(path, field, context_field=None, context_encoding="base64"):
    """Version counts (check mode); raises RewrapError listing malformed lines by number.

    Contexts are not needed for the census (the version is in the ``vault:vN:`` prefix) but are checked,
    so check mode reports the lines a real run would refuse.
    """
    fmt = LineFormat(field, context_field, context_encoding)
    census, errors, bad = {}, [], 0
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                version = fmt.parse(raw)[3]
            except ValueError as exc:
                bad += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append({"line": lineno, "error": str(exc)})
                continue
            if version is not None:
                census_add(census, version)
    _raise_malformed(path, bad, errors)
    return sorted_census(census)


class BatchRewrapper:
    """Sends batches through ``send(ciphertexts[, contexts]) -> results``; splits a batch the server refuses as too large.

    ``rewrapper(ciphertexts)`` for a plain key, ``rewrapper(ciphertexts, contexts)`` for a derived key
    (``contexts[i]``: base64 context of ``ciphertexts[i]``).
    """

    def __init__(self, send, batch_size):
        self.send = send
        self.batch_size = batch_size

    def __call__(self, ciphertexts, contexts=None):
        if len(ciphertexts) > self.batch_size:  # a size the server refused before: do not ask again
            size = self.batch_size
            results = []
            for start in range(0, len(ciphertexts), size):
                results += self(ciphertexts[start:start + size], None if contexts is None else contexts[start:start + size])
            return results
        try:
            return self.send(ciphertexts) if contexts is None else self.send(ciphertexts, contexts)
        except TooLargeError:
            if len(ciphertexts) == 1:
                raise
            half = len(ciphertexts) // 2
            # Later batches start at the size that worked.
            self.batch_size = max(1, min(self.batch_size, half))
            first, second = (None, None) if contexts is None else (contexts[:half], contexts[half:])
            return self(ciphertexts[:half], first) + self(ciphertexts[half:], second)


def make_sender(connection, mount, name, key_version=None):
    """``send(ciphertexts, contexts=None) -> batch_results`` for ``<mount>/rewrap/<name>`` through a VaultConnection.

    For a derived key pass ``contexts``: one base64 context per ciphertext, in the same order, e.g.
    ``send(["vault:v1:..", "vault:v1:.."], contexts=["dXNlci0x", "dXNlci0y"])``; each batch item is then
    ``{"ciphertext": c, "context": ctx}``.  A batch refused as a whole (400, other than for its size) is split
    until the item at fault answers with its own error, so one bad ciphertext never hides its neighbours'
    results (rewrap is safe to repeat: it changes nothing in Vault).
    """
    path = "%s/rewrap/%s" % (mount.strip("/"), name)

    def send(ciphertexts, contexts=None):
        if contexts is None:
            items = [{"ciphertext": ciphertext} for ciphertext in ciphertexts]
        else:
            if len(contexts) != len(ciphertexts):
                raise ValueError("make_sender: %d contexts for %d ciphertexts" % (len(contexts), len(ciphertexts)))
            items = [{"ciphertext": ciphertext, "context": context} for ciphertext, context in zip(ciphertexts, contexts)]
        if key_version is not None:
            for item in items:
                item["key_version"] = key_version  # with batch_input Vault reads each item's, not the top-level one
        body = {"batch_input": items}
        if key_version is not None:
            body["key_version"] = key_version
        try:
            answer = connection.write(path, body)
        except VaultModuleError as exc:
            if exc.status == 413 or (exc.status == 400 and "complexity" in exc.msg):
                raise TooLargeError(exc.msg)
            if exc.status != 400:
                raise
            if len(ciphertexts) == 1:
                return [{"error": exc.msg}]
            half = len(ciphertexts) // 2
            first, second = (None, None) if contexts is None else (contexts[:half], contexts[half:])
            return send(ciphertexts[:half], first) + send(ciphertexts[half:], second)
        results = (answer.get("data") or {}).get("batch_results") or []
        if len(results) != len(ciphertexts):
            raise VaultModuleError("Vault answered %d results for a batch of %d on POST %s"
                                   % (len(results), len(ciphertexts), path))
        return results

    return send


def _new_version(value):
    """Version of a ciphertext Vault returned (trusted format, so no regex on the hot path)."""
    try:
        prefix, version, _body = value.split(":", 2)
        return int(version[1:]) if prefix == "vault" and version[0] == "v" else None
    except (AttributeError, ValueError, IndexError):
        return None


class _Chunk:
    __slots__ = ("lines", "versions", "pending", "first_line")

    def __init__(self, first_line):
        self.lines, self.versions, self.pending, self.first_line = [], [], [], first_line


class Rewriter:
    """Census and rewrap of a growing file, resumable: each :meth:`feed` continues at ``offset``.

    ``rewrap(ciphertexts)`` (or ``rewrap(ciphertexts, contexts)`` when the format has a context field)
    returns a list of ``{"ciphertext": ...}`` or ``{"error": ...}``.  Output goes, in order, to the
    ``sink`` of each feed.  Strict feeds (before the rename) stop writing at the first malformed line
    or rewrap error; ``keep_bad`` feeds (after it, when nothing may be dropped) keep such lines verbatim.
    """

    def __init__(self, fmt, target, rewrap, batch_size, pool, workers=1):
        self.fmt, self.target, self.rewrap = fmt, target, rewrap
        self.batch_size, self.pool, self.workers = batch_size, pool, workers
        self.offset = 0  # bytes of the source consumed (complete lines only)
        self.lineno = 0  # lines consumed
        self.census_before, self.census_after = {}, {}
        self.errors, self.malformed, self.failed, self.rewrapped = [], 0, 0, 0

    def error(self, line, message):
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "error": message})

    @property
    def clean(self):
        return not (self.malformed or self.failed)

    def pending_bytes(self, source):
        return os.fstat(source.fileno()).st_size - self.offset

    def _chunks(self, source, final, keep_bad):
        """Chunks of the complete lines from ``offset`` on (``final``: a last line without newline too).

        One loop over the lines with the per-line work bound to locals: it runs once per line of files of
        millions of lines. ``offset`` and ``lineno`` advance with every line taken, as a resumed feed needs.
        """
        parse, target, batch_size, census = self.fmt.parse, self.target, self.batch_size, self.census_before
        chunk = _Chunk(self.lineno + 1)
        lines, versions, pending = chunk.lines, chunk.versions, chunk.pending
        source.seek(self.offset)
        for raw in source:
            if not final and not raw.endswith(b"\n"):
                break  # a line still being written: taken once complete
            self.offset += len(raw)
            self.lineno += 1
            try:
                text, ciphertext, document, version, context = parse(raw)
            except ValueError as exc:
                self.malformed += 1
                self.error(self.lineno, str(exc))
                text = ciphertext = version = None
                if keep_bad:
                    version = loose_version(raw)
            if version is not None:
                census[version] = census.get(version, 0) + 1
                if ciphertext is not None and version < target:
                    pending.append((len(lines), text, ciphertext, document, context))
            lines.append(raw)
            versions.append(version)
            if len(pending) >= batch_size or len(lines) >= MAX_CHUNK_LINES:
                yield chunk
                chunk = _Chunk(self.lineno + 1)
                lines, versions, pending = chunk.lines, chunk.versions, chunk.pending
        if lines:
            yield chunk

    def _send(self, pending):
        ciphertexts = [item[2] for item in pending]
        if self.fmt.context_field is None:
            return self.rewrap(ciphertexts)
        return self.rewrap(ciphertexts, [item[4] for item in pending])

    def _drain(self, chunk, future, sink, keep_bad):
        results = future.result() if future is not None else []
        field = self.fmt.field
        lines, versions = chunk.lines, chunk.versions
        for (index, text, old, document, _context), result in zip(chunk.pending, results):
            new = result.get("ciphertext") if isinstance(result, dict) else None
            version = _new_version(new)
            if version is None:
                self.failed += 1
                self.error(chunk.first_line + index, str((result or {}).get("error") or "no ciphertext returned"))
                continue  # keep_bad: the line stays as it was, counted at its old version
            lines[index] = replace_ciphertext(text, document, field, old, new).encode("utf-8")
            versions[index] = version
            self.rewrapped += 1
        if keep_bad or self.clean:
            sink(b"".join(chunk.lines))
            for version in chunk.versions:
                if version is not None:
                    self.census_after[version] = self.census_after.get(version, 0) + 1

    def feed(self, source, sink, final=False, keep_bad=False):
        """Process the complete lines of ``source`` from ``offset`` to its end; returns how many there were.

        ``final``: a last line without newline is taken as it is (the file's real end).
        """
        start = self.lineno
        in_flight = collections.deque()
        for chunk in self._chunks(source, final, keep_bad):
            if chunk.pending and (keep_bad or not self.malformed):
                future = self.pool.submit(self._send, chunk.pending)
            else:
                future = None  # nothing due, or a malformed line: keep counting, send nothing more
            in_flight.append((chunk, future))
            if len(in_flight) > self.workers:
                self._drain(*in_flight.popleft(), sink=sink, keep_bad=keep_bad)
        while in_flight:
            self._drain(*in_flight.popleft(), sink=sink, keep_bad=keep_bad)
        return self.lineno - start

    def raise_errors(self, path):
        _raise_malformed(path, self.malformed, self.errors)
        if self.failed:
            raise RewrapError("%s: Vault could not rewrap %d ciphertext(s), first at line %d (%s); nothing was written"
                              % (path, self.failed, self.errors[0]["line"], self.errors[0]["error"]), self.errors)


# -- processes holding the file open -------------------------------------------------------------


def _fd_state(proc, pid, fd, dev, ino):
    """``(flags, pos)`` of fd ``fd`` of process ``pid`` when it refers to inode (dev, ino), else None."""
    try:
        info = os.stat("%s/%d/fd/%d" % (proc, pid, fd))
        if (info.st_dev, info.st_ino) != (dev, ino):
            return None
        with open("%s/%d/fdinfo/%d" % (proc, pid, fd)) as handle:
            fields = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
        return int(fields["flags"].strip(), 8), int(fields["pos"].strip())
    except (OSError, KeyError, ValueError):
        return None


def _writing(flags):
    return flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


# Link targets of descriptors that are no file on a filesystem (a consumer file is a regular file): skipping
# their stat() halves the cost of a walk, where most descriptors are sockets and pipes.
_NOT_A_FILE = ("socket:", "pipe:", "anon_inode:")


def _walk_descriptors(proc, own_pid):
    """``({(dev, ino): [(pid, fd)]}, not_inspected)``: what every descriptor of every other process refers to."""
    index, hidden = {}, 0
    with os.scandir(proc) as processes:
        for process in processes:
            if not process.name.isdigit() or int(process.name) == own_pid:
                continue
            pid = int(process.name)
            try:
                with os.scandir(process.path + "/fd") as descriptors:
                    fds = [(entry.name, entry.path) for entry in descriptors if entry.name.isdigit()]
            except PermissionError:
                hidden += 1
                continue
            except OSError:
                continue  # exited meanwhile
            for fd, fd_path in fds:
                try:
                    if os.readlink(fd_path).startswith(_NOT_A_FILE):
                        continue
                    info = os.stat(fd_path)
                except OSError:
                    continue  # closed meanwhile
                index.setdefault((info.st_dev, info.st_ino), []).append((pid, int(fd)))
    return index, hidden


class _SharedWalk:
    """One walk of /proc answers every file that asked before it started.

    A bulk rewrite has up to FILES_IN_FLIGHT files asking "who holds this inode open?" several times each; a walk
    of every descriptor costs milliseconds of CPU, so the walks are shared: an answer only ever comes from a walk
    that started after the question was asked (so it sees every descriptor opened before), and the descriptors it
    names are checked again when answering.
    """

    def __init__(self):
        self._changed = threading.Condition()
        self._walking = False
        self._last = {}  # (proc, own_pid) -> (started, index, hidden)

    def descriptors(self, proc, own_pid, clock=time.monotonic):
        asked = clock()
        key = (proc, own_pid)
        with self._changed:
            while True:
                last = self._last.get(key)
                if last is not None and last[0] >= asked:
                    return last[1], last[2]
                if not self._walking:
                    self._walking = True
                    started = clock()
                    break
                self._changed.wait()
        walked = None
        try:
            walked = _walk_descriptors(proc, own_pid)
        finally:
            with self._changed:
                self._walking = False
                if walked is not None:
                    self._last[key] = (started,) + walked
                self._changed.notify_all()
        return walked


_SHARED_WALK = _SharedWalk()


def scan_writers(dev, ino, proc="/proc", own_pid=None):
    """``({(pid, fd): pos}, not_inspected)``: descriptors of other processes open for writing on (dev, ino).

    ``not_inspected`` counts processes whose descriptors this user may not read (other users' when not root).
    """
    own_pid = os.getpid() if own_pid is None else own_pid
    index, hidden = _SHARED_WALK.descriptors(proc, own_pid)
    found = {}
    for pid, fd in index.get((dev, ino), ()):
        state = _fd_state(proc, pid, fd, dev, ino)  # still that file, and open for writing now
        if state is not None and _writing(state[0]):
            found[(pid, fd)] = state[1]
    return found, hidden


def flock_waiters(ino, proc="/proc"):
    """Pids blocked in flock() on inode ``ino`` (the ``->`` lines of /proc/locks)."""
    pids = set()
    try:
        with open("%s/locks" % proc) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return pids
    for line in lines:
        words = line.split()
        if "->" not in words:
            continue
        rest = words[words.index("->") + 1:]
        # FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> <start> <end>
        if len(rest) >= 5 and rest[0] == "FLOCK":
            try:
                if int(rest[4].rsplit(":", 1)[1]) == ino:
                    pids.add(int(rest[3]))
            except (IndexError, ValueError):
                continue
    return pids


def command_of(pid, proc="/proc"):
    """The process's command name (``comm``: never its arguments, which may hold secrets)."""
    try:
        with open("%s/%d/comm" % (proc, pid)) as handle:
            return handle.read().strip()
    except OSError:
        return "?"


def persistent_writers(dev, ino, proc="/proc", own_pid=None, window=SCAN_WINDOW, interval=SCAN_INTERVAL,
                       sleep=time.sleep, clock=time.monotonic, exclude_flock_waiters=True):
    """Processes keeping inode (dev, ino) open for writing: ``([{pid, command}], not_inspected)``.

    A descriptor counts only if it stays open on the file for ``window`` seconds without being reopened
    (an O_APPEND descriptor's position never goes back; a fresh open starts lower).  Processes waiting in
    flock() on the file are left out: they opened it to write once and will, after the rename, into the
    old inode, which the settle window carries over (and whose holders are checked again afterwards).
    """
    found, hidden = scan_writers(dev, ino, proc, own_pid)
    deadline = clock() + window
    while found and clock() < deadline:
        sleep(interval)
        for (pid, fd), pos in list(found.items()):
            state = _fd_state(proc, pid, fd, dev, ino)
            if state is None or not _writing(state[0]) or state[1] < pos:
                del found[(pid, fd)]
            else:
                found[(pid, fd)] = state[1]
    # /proc/locks costs milliseconds of kernel time per read: only read it when someone holds the file open.
    waiting = flock_waiters(ino, proc) if found and exclude_flock_waiters else set()
    pids = sorted(set(pid for pid, _fd in found if pid not in waiting))
    return [{"pid": pid, "command": command_of(pid, proc)} for pid in pids], hidden


def describe_writers(writers):
    return ", ".join("pid %d (%s)" % (w["pid"], w["command"]) for w in writers)


# -- the rewrite in place ------------------------------------------------------------------------


def _append_locked(fd, data):
    """Append complete lines to the new file with one write(), under its flock (serialised with writers)."""
    if not data:
        return
    _flock(fd, what="the new file")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def rewrite_in_place(path, fmt, target, rewrap, batch_size=400, workers=1, settle=DEFAULT_SETTLE,
                     open_writers="fail", backup=None, proc="/proc", sleep=time.sleep, clock=time.monotonic):
    """Census + rewrap of ``path`` in place, losing no line appended meanwhile (see the module docstring).

    ``backup(path)`` (optional) is called just before the rename and returns the backup's path.
    Returns a dict: census_before, census_after, rewrapped, changed, caught_up, carried_over and, when
    found, open_writers / processes_not_inspected / backup_file.  Raises RewrapError.
    """
    base = os.path.basename(path)
    atomic = AtomicFile(path, like=path, prefix=TEMP_PREFIX % base, binary=True)
    result = dict(caught_up=0, carried_over=0)
    with open(path, "rb") as source, ThreadPoolExecutor(max_workers=workers) as pool:
        old = os.fstat(source.fileno())
        engine = Rewriter(fmt, target, rewrap, batch_size, pool, workers)
        out = atomic.open()
        new_fd = None
        try:
            engine.feed(source, out.write)  # the main pass
            main_lines = engine.lineno
            for _attempt in range(MAX_CATCH_UP):  # catch up without blocking anyone yet
                if not engine.clean or not engine.feed(source, out.write):
                    break
            _flock(source.fileno())  # writers that flock the file wait from here until after the rename
            try:
                for _attempt in range(MAX_CATCH_UP):
                    if not engine.clean or not engine.feed(source, out.write):
                        break
                for _attempt in range(3):  # an unterminated last line: give a writer a moment to finish it
                    if not engine.clean or not engine.pending_bytes(source):
                        break
                    sleep(POLL_INTERVAL * 2)
                    engine.feed(source, out.write)
                if engine.clean and engine.pending_bytes(source):
                    engine.feed(source, out.write, final=True)  # the file's real end, newline or not
                engine.raise_errors(path)
                result["caught_up"] = engine.lineno - main_lines
                if not engine.rewrapped:
                    atomic.discard()
                    census = _as_census(engine.census_before)
                    result.update(census_before=census, census_after=census, rewrapped=0, changed=False)
                    return result
                writers, hidden = persistent_writers(old.st_dev, old.st_ino, proc, sleep=sleep, clock=clock)
                if hidden:
                    result["processes_not_inspected"] = hidden
                if writers:
                    atomic.discard()
                    result["open_writers"] = writers
                    msg = ("%s is kept open for writing by %s: after the rename it would go on writing into the "
                           "replaced file and those lines would be lost. Nothing was written; stop it, or make it "
                           "open the file for each write (see docs/file-consumers.md)" % (path, describe_writers(writers)))
                    if open_writers != "report":
                        raise RewrapError(msg, open_writers=writers)
                    census = _as_census(engine.census_before)
                    result.update(census_before=census, census_after=census, rewrapped=0, changed=False,
                                  warning=msg)
                    return result
                if backup is not None:
                    result["backup_file"] = backup(path)
                out.flush()
                new_fd = os.open(atomic.temp, os.O_WRONLY | os.O_APPEND)  # the new inode, whatever the path becomes
                atomic.commit()
            finally:
                fcntl.flock(source.fileno(), fcntl.LOCK_UN)  # waiting writers now write into the old inode
            result.update(_settle(path, source, new_fd, engine, settle, proc, sleep, clock))
        except BaseException:
            atomic.discard()
            raise
        finally:
            if new_fd is not None:
                os.close(new_fd)
    result.update(census_before=_as_census(engine.census_before), census_after=_as_census(engine.census_after),
                  rewrapped=engine.rewrapped, changed=True)
    return result


def _settle(path, source, new_fd, engine, settle, proc, sleep, clock):
    """After the rename: carry what still lands in the old inode over to the new file, then prove it is quiet."""
    old = os.fstat(source.fileno())
    first = engine.lineno
    renamed = last_growth = clock()
    cap = renamed + max(SETTLE_CAP_MIN, SETTLE_CAP_FACTOR * settle)
    late = 0  # lines that arrived after the settle window would have ended
    still_growing = False
    quiet_since = None  # since when no process holds the old inode open for writing
    proven_quiet = False
    while True:
        pieces = []
        count = engine.feed(source, pieces.append, keep_bad=True)
        now = clock()
        if count:
            _append_locked(new_fd, b"".join(pieces))
            if now - renamed > settle:
                late += count
            last_growth = now
            quiet_since = None
        if now - last_growth >= settle:
            break
        if now >= cap:
            still_growing = True
            break
        if (now - last_growth >= QUIET_PROOF and (quiet_since is None or now - quiet_since >= QUIET_PROOF)
                and os.fstat(source.fileno()).st_nlink == 0):
            # Nobody holds the unlinked old inode open for writing and no name leads to it: nothing more
            # can land there.  Two such scans QUIET_PROOF apart (an open() racing the rename has finished);
            # a scan in between would prove nothing more.
            holders, hidden = scan_writers(old.st_dev, old.st_ino, proc)
            if holders or hidden:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif not engine.pending_bytes(source):
                proven_quiet = True
                break
        sleep(POLL_INTERVAL)
    if not still_growing and engine.pending_bytes(source):
        pieces = []  # a last line that never got its newline: carried verbatim, at the very end
        engine.feed(source, pieces.append, final=True, keep_bad=True)
        _append_locked(new_fd, b"".join(pieces))
    carried = engine.lineno - first
    if carried:
        os.fsync(new_fd)
    # Proven quiet: the last scan just found no holder, and the unlinked inode can gain none.
    holders = {} if proven_quiet else scan_writers(old.st_dev, old.st_ino, proc)[0]
    writers = [{"pid": pid, "command": command_of(pid, proc)} for pid in sorted(set(p for p, _fd in holders))]
    if still_growing or writers:
        at_risk = late + (1 if engine.pending_bytes(source) else 0)
        raise RewrapError(
            "%s was rewritten and %d line(s) written meanwhile were carried over, but the replaced file %s (%d "
            "line(s) arrived after the settle window): whatever is written to it from now on is lost. Stop or "
            "restart %s, then re-run (see docs/file-consumers.md)"
            % (path, carried,
               "still grows %.1f s after the rename" % (clock() - renamed) if still_growing
               else "is still held open for writing by %s" % describe_writers(writers),
               at_risk, describe_writers(writers) or "the writer"),
            open_writers=writers, lines_at_risk=at_risk, carried_over=carried, changed=True)
    if not engine.clean:
        first_error = engine.errors[0] if engine.errors else {"line": 0, "error": "?"}
        raise RewrapError("%s was rewritten, but %d line(s) appended during the rewrap could not be rewrapped "
                          "(first at line %d: %s); they were kept as written"
                          % (path, engine.malformed + engine.failed, first_error["line"], first_error["error"]),
                          engine.errors, carried_over=carried, changed=True)
    return dict(carried_over=carried)


def remove_stale_temps(path):
    """Twins of a run that was killed mid-write (only called while holding the lock)."""
    for twin in stale_twins(path, TEMP_PREFIX % os.path.basename(path)):
        try:
            os.unlink(twin)
        except OSError:
            pass


class FileRewrapper:
    """Rewrap consumer files through one VaultConnection (the I/O half used by vault_transit_rewrap)."""

    def __init__(self, connection, check_mode=False, backup_local=None, batch_size=400, workers=4,
                 settle=DEFAULT_SETTLE, open_writers="fail"):
        self.connection = connection
        self.check_mode = check_mode
        self.backup_local = backup_local
        self.batch_size = batch_size
        self.workers = workers
        self.settle = settle
        self.open_writers = open_writers
        self.warnings = []
        self._keys = {}
        # At most ``workers`` rewrap requests in flight, however many files are (see FILES_IN_FLIGHT).
        self._requests = threading.BoundedSemaphore(max(1, workers))

    def _limited(self, send):
        def limited(*args):
            with self._requests:
                return send(*args)
        return limited

    def key_info(self, mount, name):
        """``{"latest_version", "derived"}`` of the transit key (read once per run)."""
        if (mount, name) not in self._keys:
            data = self.connection.read("%s/keys/%s" % (mount.strip("/"), name))
            if not data:
                raise VaultModuleError("transit key %r does not exist in mount %r" % (name, mount))
            self._keys[(mount, name)] = {"latest_version": int(data["latest_version"]),
                                         "derived": bool(data.get("derived"))}
        return self._keys[(mount, name)]

    def latest_version(self, mount, name):
        return self.key_info(mount, name)["latest_version"]

    def rewrap_file(self, name, mount, path, field=None, key_version=None, backup=False, workers=None,
                    context_field=None, context_encoding="base64"):
        """Census (check mode) or census + rewrap of one file; raises KeyopsModuleError, never half-writes."""
        fmt = LineFormat(field, context_field, context_encoding or "base64")
        if not os.path.isfile(path):
            raise VaultModuleError("consumer file %s does not exist or is not a regular file" % path)
        if not os.access(path, os.R_OK):
            raise VaultModuleError("consumer file %s is not readable by this user" % path)
        key = self.key_info(mount, name)
        if key["derived"] and context_field is None:
            raise RewrapError("transit key %r (mount %r) is derived: every rewrap needs the key derivation context "
                              "of its ciphertext. Set context_field to the JSON lines field holding it "
                              "(context_encoding: base64 as Vault takes it, or text); nothing was written to %s"
                              % (name, mount, path))
        latest = key["latest_version"]
        target = key_version or latest
        if target > latest or target < 1:
            raise VaultModuleError("key_version %d is not a version of key %r (latest is %d)" % (target, name, latest))
        result = dict(path=path, target_version=target)
        try:
            with locked(path, exclusive=not self.check_mode):
                if self.check_mode:
                    census = take_census(path, field, context_field, context_encoding or "base64")
                    due = sum(count for version, count in census.items() if int(version) < target)
                    result.update(census_before=census, census_after=census, rewrapped=due, caught_up=0,
                                  carried_over=0, oldest_version_in_use=min_version(census), changed=bool(due))
                    if due:
                        info = os.stat(path)
                        writers, _hidden = persistent_writers(info.st_dev, info.st_ino)
                        if writers:
                            result["open_writers"] = writers
                            self.warnings.append("%s is kept open for writing by %s: a real run would not replace it"
                                                 % (path, describe_writers(writers)))
                    return result
                if not os.access(path, os.W_OK) or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
                    raise RewrapError("consumer file %s (or its directory) is not writable" % path)
                remove_stale_temps(path)
                batch_size = self.batch_size if context_field is None else min(self.batch_size, MAX_SAFE_CONTEXT_BATCH)
                sender = BatchRewrapper(self._limited(make_sender(self.connection, mount, name, key_version)),
                                        batch_size)
                outcome = rewrite_in_place(path, fmt, target, sender, batch_size, workers or self.workers,
                                           self.settle, self.open_writers,
                                           self.backup_local if backup and self.backup_local is not None else None)
        except (IOError, OSError) as exc:
            raise RewrapError("cannot rewrap %s: %s; nothing was written" % (path, exc))
        warning = outcome.pop("warning", None)
        if warning:
            self.warnings.append(warning)
        result.update(outcome)
        result["oldest_version_in_use"] = min_version(result["census_after"])
        return result

    def rewrap_many(self, consumers, default_mount, default_backup=False, default_context_encoding="base64"):
        """Bulk: every consumer is tried and reports its own outcome (``ok``/``error``).

        Files are independent, so several are rewritten at once: their Vault round trips, fsyncs and settle
        windows overlap.  The request workers are shared out between the files in flight, and the requests in
        flight never exceed ``workers``.
        """
        file_threads = max(1, min(max(self.workers, FILES_IN_FLIGHT), len(consumers)))
        per_file_workers = max(1, self.workers // file_threads)

        def one(consumer):
            entry = dict(name=consumer["name"], mount=consumer.get("mount") or default_mount,
                         field=consumer.get("field"))
            backup = default_backup if consumer.get("backup") is None else consumer["backup"]
            try:
                entry.update(self.rewrap_file(consumer["name"], entry["mount"], consumer["path"], consumer.get("field"),
                                              consumer.get("key_version"), backup, per_file_workers,
                                              consumer.get("context_field"),
                                              consumer.get("context_encoding") or default_context_encoding))
                entry.update(ok=True, error=None)
            except KeyopsModuleError as exc:
                entry.update(path=consumer["path"], ok=False, error=exc.msg, changed=bool(exc.details.get("changed")),
                             census_before={},
                             census_after={}, rewrapped=0, oldest_version_in_use=None)
                for detail in ("errors", "open_writers", "lines_at_risk", "carried_over"):
                    if exc.details.get(detail) is not None:
                        entry[detail] = exc.details[detail]
            return entry

        with ThreadPoolExecutor(max_workers=file_threads) as pool:
            return list(pool.map(one, consumers))
