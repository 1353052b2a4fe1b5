# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one atomic writer (private): a temporary twin, fsync, rename over the target, fsync the directory.

At every instant the target is either entirely old or entirely new, and after :meth:`AtomicFile.commit`
returns the new content survives a power loss (the rename is made durable by the directory fsync).  The
twin is created 0600 (or ``mode``) from its first byte, so secrets are never readable by others, not
even while being written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile


def fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_directory(directory):
    """Create ``directory`` (and parents) 0700 when missing; an existing one is left as it is."""
    if not os.path.isdir(directory):
        # exist_ok: several keys of one bulk task may back up into the same new directory at once
        os.makedirs(directory, 0o700, exist_ok=True)


class AtomicFile:
    """``with AtomicFile(path) as handle: handle.write(...)`` - or ``open()`` now, ``commit()`` later.

    ``mode``: permission bits of the result (default 0600).  ``like``: copy mode and owner from this
    existing file instead (a rewritten data file keeps its permissions).  ``prefix``: the twin's name
    prefix, so a crashed run's leftovers can be found (``stale_twins``).  ``owner``: ``(uid, gid)`` given to
    the twin before the rename (None or -1 keeps that part).
    """

    def __init__(self, path, mode=0o600, like=None, prefix=None, binary=False, make_dirs=False, owner=None):
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.mode = mode
        self.like = like
        self.prefix = prefix or ".%s.keyops-tmp-" % os.path.basename(self.path)
        self.binary = binary
        self.make_dirs = make_dirs
        self.owner = owner
        self.temp = None
        self.handle = None

    def open(self):
        if self.make_dirs:
            ensure_private_directory(self.directory)
        fd, self.temp = tempfile.mkstemp(prefix=self.prefix, dir=self.directory)
        try:
            os.fchmod(fd, 0o600)
            self.handle = os.fdopen(fd, "wb" if self.binary else "w")
        except BaseException:
            os.close(fd)
            self.discard()
            raise
        return self.handle

    def commit(self):
        """fsync the twin, give it its mode/owner, rename it over the target, fsync the directory."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            if self.like is not None and os.path.exists(self.like):
                info = os.stat(self.like)
                os.chmod(self.temp, info.st_mode & 0o7777)
                try:
                    os.chown(self.temp, info.st_uid, info.st_gid)
                except PermissionError:
                    pass  # not root: the file keeps our ownership, as any editor would leave it
            else:
                os.chmod(self.temp, self.mode)
            if self.owner is not None:
                uid, gid = self.owner
                os.chown(self.temp, -1 if uid is None else uid, -1 if gid is None else gid)
            os.replace(self.temp, self.path)
        except BaseException:
            self.discard()
            raise
        self.temp = None
        fsync_directory(self.directory)
        return self.path

    def discard(self):
        if self.handle is not None and not self.handle.closed:
            try:
                self.handle.close()
            except OSError:
                pass
        if self.temp is not None:
            try:
                os.unlink(self.temp)
            except OSError:
                pass
            self.temp = None

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


def write_file(path, content, mode=0o600, make_dirs=False):
    """Write ``content`` (str or bytes) to ``path`` atomically with ``mode``; returns the path."""
    with AtomicFile(path, mode=mode, binary=isinstance(content, bytes), make_dirs=make_dirs) as handle:
        handle.write(content)
    return os.path.abspath(path)


def stale_twins(path, prefix=None):
    """Twins left by a run that was killed mid-write (remove them only while holding the file's lock)."""
    directory, base = os.path.split(os.path.abspath(path))
    prefix = prefix or ".%s.keyops-tmp-" % base
    return [os.path.join(directory, name) for name in os.listdir(directory) if name.startswith(prefix)]
