# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keystone key repositories (fernet tokens, receipts, credentials), read and changed without a gap (private).

Format, exactly keystone's: a directory (0700) of files named by integers, each holding one Fernet key
(32 bytes, URL-safe base64) with mode 0600.  ``0`` is the staged key, the highest number the primary (it
encrypts), the rest are secondary (they only decrypt).

Keystone's own rotation renames ``0`` to max+1 and then writes a new ``0``, and rsync rebuilds other nodes
file by file: in both, for a moment, a key that tokens were made with is missing somewhere.  Here every
change keeps every key present at every instant: a new file is written to a temporary name, fsynced and
renamed into place (then the directory is fsynced); a promotion hard-links ``0`` to max+1 *before* the new
``0`` replaces it, and lets ``settle_seconds`` pass in between, because keystone lists the directory first and
opens the files afterwards (measured: without the pause, about 1 validation in 1000 rotations still missed the
key; a reader held up longer than the pause - 0.77 s on a 2-core machine at load 18 - still can).  The
decisions are pure functions (``plan_*``); :class:`KeyRepo` does the I/O.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import os
import stat
import time

from ansible_collections.keyops.lifecycle.plugins.module_utils import _atomic

REPO_TYPES = ("fernet", "credential", "receipt")
CREDENTIAL_MAX_KEYS = 3


class KeyRepoError(Exception):
    def __init__(self, msg, **details):
        super(KeyRepoError, self).__init__(msg)
        self.msg, self.details = msg, details


def new_key():
    """A Fernet key as keystone writes it: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(os.urandom(32))


def valid_key(material):
    try:
        return len(base64.urlsafe_b64decode(bytes(material).strip())) == 32
    except (binascii.Error, ValueError, TypeError):
        return False


def fingerprint(material):
    """A short, non-reversible name for a key: enough to compare nodes, useless to an attacker."""
    return hashlib.sha256(bytes(material).strip()).hexdigest()[:16]


def describe(keys):
    """``{index: material}`` -> what may be reported: indexes and fingerprints, never material."""
    indexes = sorted(keys)
    return {"keys": [{"index": i, "fingerprint": fingerprint(keys[i])} for i in indexes],
            "primary_index": indexes[-1] if indexes and indexes[-1] != 0 else None,
            "staged_fingerprint": fingerprint(keys[0]) if 0 in keys else None}


def check_max_active_keys(max_active_keys, repo_type):
    if max_active_keys < 2:
        raise KeyRepoError("max_active_keys must be at least 2 (a staged and a primary key), got %d"
                           % max_active_keys)
    if repo_type == "credential" and max_active_keys > CREDENTIAL_MAX_KEYS:
        raise KeyRepoError("a credential key repository holds at most %d keys (keystone's limit); "
                           "set max_active_keys to 3 or less" % CREDENTIAL_MAX_KEYS)


def keys_needed(token_expiration, allow_expired_window, rotation_interval):
    """Keys a fernet repository must keep so no valid token loses its key (keystone's documented formula)."""
    if rotation_interval <= 0:
        raise KeyRepoError("the rotation interval must be positive")
    return -(-(token_expiration + allow_expired_window) // rotation_interval) + 2


# ------------------------------------------------------------------ decisions (pure)
def plan_present(keys):
    """fernet_setup: an empty repository gets staged 0 and primary 1; an existing one is left alone."""
    return [] if keys else [("write", 0), ("write", 1)]


def plan_purge(keys, max_active_keys):
    """The lowest non-staged keys beyond ``max_active_keys`` (keystone counts the staged key too)."""
    removable = sorted(i for i in keys if i != 0)
    excess = len(keys) - max_active_keys
    # Never the primary: at least one key beside 0 always stays.
    return [("remove", i) for i in removable[:max(0, min(excess, len(removable) - 1))]]


def plan_stage(keys, staged_fingerprint):
    """Make the given key the staged key 0 (nothing to do when it already is)."""
    if 0 in keys and fingerprint(keys[0]) == staged_fingerprint:
        return []
    return [("write", 0)]


def plan_promote(keys, expect_staged, new_staged_fingerprint):
    """Staged key -> max+1 (hard link first), then the new staged key replaces 0.

    Idempotent: a repository whose primary is already ``expect_staged`` and whose 0 is the new staged key
    needs nothing; one whose primary is ``expect_staged`` but whose 0 is still the same key (a crash between
    the two steps) only needs the new 0.
    """
    if not keys or 0 not in keys:
        raise KeyRepoError("the repository has no staged key 0 to promote; set it up (state=present) first")
    primary = max(keys)
    if primary != 0 and fingerprint(keys[primary]) == expect_staged:
        if fingerprint(keys[0]) == new_staged_fingerprint:
            return []
        if fingerprint(keys[0]) == expect_staged:
            return [("write", 0)]
    if fingerprint(keys[0]) != expect_staged:
        raise KeyRepoError("refusing to promote: the staged key 0 has fingerprint %s, not the expected %s - "
                           "another rotation ran in between; stage the same key on every node first"
                           % (fingerprint(keys[0]), expect_staged), staged_fingerprint=fingerprint(keys[0]))
    return [("link", primary + 1), ("write", 0)]


# Purging in the promotion's own step is safe only while the previous primary survives it: nodes that have not
# promoted yet still encrypt with it.  Staged + new primary + previous primary = 3 keys.
PURGE_WITH_PROMOTE_MIN_KEYS = 3


def plan_promote_purge(keys, expect_staged, new_staged_fingerprint, max_active_keys):
    """:func:`plan_promote`, then the purge beyond ``max_active_keys`` of the state it leaves - in one step.

    The keyrepo role's merged pass: each node promotes and purges at once, while other nodes may not have
    promoted yet.  Those still encrypt with the previous primary and decrypt the new one as their staged key,
    so this node must keep both: refused below ``PURGE_WITH_PROMOTE_MIN_KEYS``, and the removals are checked
    never to touch the two highest keys (new and previous primary).  Idempotent like ``plan_promote``; after a
    crash between the promotion and the purge, a re-run only purges.
    """
    if max_active_keys < PURGE_WITH_PROMOTE_MIN_KEYS:
        raise KeyRepoError("purging in the promotion needs max_active_keys of at least %d (the previous primary must "
                           "stay for the nodes that have not promoted yet), got %d: purge in a separate step once "
                           "every node has promoted" % (PURGE_WITH_PROMOTE_MIN_KEYS, max_active_keys))
    actions = plan_promote(keys, expect_staged, new_staged_fingerprint)
    after = set(keys) | set(index for verb, index in actions if verb == "link")
    removals = plan_purge(dict.fromkeys(after), max_active_keys)
    in_use = sorted((i for i in after if i != 0), reverse=True)[:2]
    if any(index in in_use for _verb, index in removals):  # cannot happen with >= 3 keys kept; never trusted
        raise KeyRepoError("refusing to purge key(s) %s: still in use" % in_use)
    return actions + removals


def plan_rotate(keys, max_active_keys):
    """One keystone-style rotation on this node alone (single-node use), without keystone's gap."""
    if 0 not in keys:
        raise KeyRepoError("the repository has no staged key 0; set it up (state=present) first")
    after = dict(keys)
    after[max(keys) + 1] = keys[0]
    return [("link", max(keys) + 1), ("write", 0)] + plan_purge(after, max_active_keys)


def plan_sync(keys, wanted):
    """Add the keys of ``wanted`` ({index: fingerprint}) this node lacks; never remove one.

    A key present under the same index with another fingerprint means the nodes diverged: refused.
    """
    writes = []
    for index in sorted(wanted):
        if index in keys and fingerprint(keys[index]) != wanted[index]:
            if index == 0:
                writes.append(("write", 0))  # an unpromoted staged key is never used to encrypt
                continue
            raise KeyRepoError("key %d differs between nodes (fingerprint %s here, %s on the reference): the "
                               "repositories diverged; fix them by hand (keep the one tokens were issued with)"
                               % (index, fingerprint(keys[index]), wanted[index]))
        if index not in keys:
            writes.append(("write", index))
    # New higher keys first, 0 last: a key promoted elsewhere lands here before the staged key moves on.
    return sorted((w for w in writes if w[1] != 0), key=lambda w: w[1]) + [w for w in writes if w[1] == 0]


def plan_cluster(infos):
    """The keyrepo role's reconciliation over all nodes, from each node's ``keys`` report.

    ``infos``: ``{host: [{index, fingerprint}, ...]}``.  The reference is the node with the highest primary
    (the most advanced state any node reached); every other node gets the reference's keys it lacks - keys are
    only ever added here.  Returns ``{"initialize", "reference", "sync": {host: [indexes]}, "needed": [indexes],
    "staged_fingerprint", "primary_fingerprint"}``.
    """
    reports = dict((host, dict((k["index"], k["fingerprint"]) for k in keys or [])) for host, keys in infos.items())
    if not any(reports.values()):
        return {"initialize": True, "reference": None, "sync": dict((h, [0, 1]) for h in reports), "needed": [0, 1],
                "staged_fingerprint": None, "primary_fingerprint": None}
    reference = max(sorted(reports), key=lambda h: (max(reports[h]) if reports[h] else -1, len(reports[h])))
    wanted = reports[reference]
    sync, needed = {}, set()
    for host, have in sorted(reports.items()):
        if host == reference:
            continue
        for index, print_ in have.items():
            if index != 0 and index in wanted and wanted[index] != print_:
                raise KeyRepoError("key %d differs between %s and %s: the repositories diverged (not by an "
                                   "interrupted rotation); fix them by hand, keeping the key tokens were issued with"
                                   % (index, host, reference))
        # Only keys at or above this node's lowest one: older keys were purged here on purpose.
        floor = min([i for i in have if i != 0] or [0])
        missing = sorted(i for i in wanted if (i not in have or (i == 0 and have[0] != wanted[0]))
                         and (i == 0 or i >= floor or not have))
        if missing:
            sync[host] = missing
            needed.update(missing)
    primary = max(wanted)
    return {"initialize": False, "reference": reference, "sync": sync, "needed": sorted(needed),
            "staged_fingerprint": wanted.get(0), "primary_fingerprint": wanted[primary] if primary else None}


# ------------------------------------------------------------------ I/O
class KeyRepo:
    def __init__(self, path, owner_uid=None, group_gid=None):
        self.path, self.uid, self.gid = path, owner_uid, group_gid

    def exists(self):
        return os.path.isdir(self.path)

    def read(self):
        """``{index: material}``; files that are not integers are ignored as keystone does (e.g. ``0.tmp``)."""
        if not self.exists():
            if os.path.lexists(self.path):
                raise KeyRepoError("%s exists but is not a directory: a key repository is a directory of key files "
                                   "named 0, 1, 2 ...; point path at one (or at a path that does not exist yet)"
                                   % self.path)
            return {}
        keys = {}
        for name in os.listdir(self.path):
            if not name.isdigit():
                continue
            full = os.path.join(self.path, name)
            with open(full, "rb") as handle:
                material = handle.read().strip()
            if not valid_key(material):
                raise KeyRepoError("%s is not a Fernet key (32 bytes, URL-safe base64): the repository is damaged"
                                   % full)
            keys[int(name)] = material
        return keys

    def staged_age(self, now=None):
        """Seconds since the staged key ``0`` was written (each rotation writes a new one), None without one."""
        try:
            written = os.stat(os.path.join(self.path, "0")).st_mtime
        except OSError:
            return None
        return max(0, int((time.time() if now is None else now) - written))

    def ensure_dir(self):
        if not self.exists():
            os.makedirs(self.path, 0o700)
        os.chmod(self.path, 0o700)
        self._chown(self.path)

    def _chown(self, path):
        if self.uid is not None or self.gid is not None:
            os.chown(path, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)

    def _fsync_dir(self):
        _atomic.fsync_directory(self.path)

    def write(self, index, material):
        """Temp file (0600 from its first byte) -> fsync -> rename over the index -> fsync the directory."""
        with _atomic.AtomicFile(os.path.join(self.path, str(index)), mode=0o600, binary=True,
                                prefix=".%d.keyops-tmp-" % index, owner=(self.uid, self.gid)) as handle:
            handle.write(bytes(material))

    def link(self, source, target):
        """``target`` becomes a second name of ``source`` (same inode): present before ``source`` changes."""
        target_path = os.path.join(self.path, str(target))
        temp = os.path.join(self.path, ".%d.keyops-link" % target)
        if os.path.exists(temp):
            os.unlink(temp)
        os.link(os.path.join(self.path, str(source)), temp)
        os.rename(temp, target_path)
        self._fsync_dir()

    def remove(self, index):
        os.unlink(os.path.join(self.path, str(index)))
        self._fsync_dir()

    def clean_temps(self):
        for name in os.listdir(self.path):
            if name.startswith(".") and (".keyops-tmp" in name or name.endswith(".keyops-link")):
                os.unlink(os.path.join(self.path, name))

    def modes_ok(self):
        """Keystone's expectations: directory 0700, keys 0600."""
        problems = []
        if stat.S_IMODE(os.stat(self.path).st_mode) != 0o700:
            problems.append(self.path)
        for name in os.listdir(self.path):
            full = os.path.join(self.path, name)
            if name.isdigit() and stat.S_IMODE(os.stat(full).st_mode) != 0o600:
                problems.append(full)
        return problems

    def apply(self, actions, materials, settle_seconds=0):
        """Carry out ``actions`` in order; ``materials`` gives the content of each written index.

        Before ``0`` is replaced after a key was added (the link of a promotion, or a higher key written by a
        sync), ``settle_seconds`` pass: keystone lists the directory and then opens each file, so a process that
        listed just before the key was added and opens ``0`` just after it was replaced would see neither name
        of that key.  The pause closes that window.
        """
        for verb, index, pause in settle_points(actions):
            if pause and settle_seconds:
                time.sleep(settle_seconds)
            if verb == "write":
                self.write(index, materials[index])
            elif verb == "link":
                self.link(0, index)
            elif verb == "remove":
                self.remove(index)


def settle_points(actions):
    """``(verb, index, pause_first)`` for each action: pause before a write of ``0`` that follows an added key (pure)."""
    added = False
    for verb, index in actions:
        replaces_staged = verb == "write" and index == 0
        yield verb, index, replaces_staged and added
        if replaces_staged:
            added = False
        elif verb == "link" or (verb == "write" and index != 0):
            added = True


def _ids(module):
    import grp  # pylint: disable=import-outside-toplevel
    import pwd  # pylint: disable=import-outside-toplevel

    uid = gid = None
    try:
        if module.params["owner"]:
            uid = pwd.getpwnam(module.params["owner"]).pw_uid
        if module.params["group"]:
            gid = grp.getgrnam(module.params["group"]).gr_gid
    except (KeyError, ValueError) as exc:
        raise KeyRepoError("no such user or group %s on this node: create keystone's user/group first or fix "
                           "owner/group" % exc)
    return uid, gid


def _material(value, what):
    material = value.strip().encode() if not isinstance(value, bytes) else value.strip()
    if not valid_key(material):
        raise KeyRepoError("%s is not a Fernet key (32 bytes, URL-safe base64)" % what)
    return material


def plan_state(params, keys):
    """(actions, materials) for the module's state - the whole decision, without I/O."""
    state = params["state"]
    materials = {}
    if state == "present":
        actions = plan_present(keys)
        materials.update((index, new_key()) for _verb, index in actions)
    elif state == "rotated":
        actions = plan_rotate(keys, params["max_active_keys"])
        materials[0] = new_key()
    elif state == "staged":
        materials[0] = _material(params["staged_key"], "staged_key")
        actions = plan_stage(keys, fingerprint(materials[0]))
    elif state == "promoted":
        materials[0] = _material(params["new_staged_key"], "new_staged_key")
        if params.get("purge"):
            actions = plan_promote_purge(keys, params["expect_staged"], fingerprint(materials[0]),
                                         params["max_active_keys"])
        else:
            actions = plan_promote(keys, params["expect_staged"], fingerprint(materials[0]))
    elif state == "purged":
        actions = plan_purge(keys, params["max_active_keys"])
    elif state == "synced":
        try:
            wanted = dict((int(index), _material(value, "sync_keys[%s]" % index))
                          for index, value in params["sync_keys"].items())
        except ValueError:
            raise KeyRepoError("sync_keys must map integer indexes to keys")
        materials.update(wanted)
        actions = plan_sync(keys, dict((index, fingerprint(value)) for index, value in wanted.items()))
    else:
        actions = []
    return actions, materials


def action_text(verb, index):
    return "link 0 -> %d" % index if verb == "link" else "%s %d" % (verb, index)


def predict(keys, actions, materials):
    after = dict(keys)
    for verb, index in actions:
        if verb == "write":
            after[index] = materials[index]
        elif verb == "link":
            after[index] = after[0]
        else:
            after.pop(index, None)
    return after


def run_keyrepo(module):
    params = module.params
    if not params.get("path"):
        raise KeyRepoError("path is empty: give the key repository's directory, e.g. /etc/keystone/fernet-keys")
    check_max_active_keys(params["max_active_keys"], params["repo_type"])
    uid, gid = _ids(module)
    repo = KeyRepo(params["path"], uid, gid)
    keys = repo.read()
    if not keys and params["state"] not in ("present", "synced"):
        raise KeyRepoError("%s holds no keys: set it up first (state=present, or the keyrepo role)" % params["path"])
    actions, materials = plan_state(params, keys)
    after = predict(keys, actions, materials)
    if actions and not module.check_mode:
        repo.ensure_dir()
        repo.clean_temps()
        repo.apply(actions, materials, params.get("settle_seconds") or 0)
        after = repo.read()
    elif repo.exists() and not module.check_mode:
        repo.clean_temps()  # leftovers of an interrupted run; keystone ignores them, tidy anyway
    result = describe(after)
    result.update(changed=bool(actions), actions=[action_text(verb, index) for verb, index in actions],
                  mode_problems=repo.modes_ok() if repo.exists() else [],
                  diff={"before": describe(keys)["keys"], "after": describe(after)["keys"]})
    rotated = any(verb == "link" for verb, _index in actions)
    if params["repo_type"] == "credential" and rotated and not module.check_mode:
        result["credential_migrate"] = _credential_migrate(module)
    return result


def _credential_migrate(module):
    mode, command = module.params["credential_migrate"], module.params["keystone_manage"]
    if mode == "never":
        return "skipped (credential_migrate=never): run keystone-manage credential_migrate before the next rotation"
    binary = module.get_bin_path(command.split()[0], required=(mode == "always"))
    if not binary:
        module.warn("keystone-manage was not found, so credential_migrate did not run: run "
                    "'keystone-manage credential_migrate' on one node before the next credential key rotation")
        return "not run: keystone-manage not found"
    rc, out, err = module.run_command([binary] + command.split()[1:] + ["credential_migrate"])
    if rc != 0:
        raise KeyRepoError("keystone-manage credential_migrate failed (rc=%d): %s" % (rc, (err or out).strip()))
    return "ran keystone-manage credential_migrate"
