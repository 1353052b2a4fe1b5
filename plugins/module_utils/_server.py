# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Init and unseal of a Vault/OpenBao server: the request shapes, the keys file, the unseal loop.

``sys/init``, ``sys/seal-status`` and ``sys/unseal`` are unauthenticated, so these helpers work on a
:class:`VaultConnection` opened without a token (``VaultConnection.unauthenticated``).

The keys file is the only place unseal keys and the root token exist after init: it is opened
(mode 0600, in a 0700 directory) *before* ``sys/init`` is called, so a server is never initialised
with nowhere to put its keys; the content is fsynced and renamed into place before success is
reported.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.keyops.lifecycle.plugins.module_utils import _atomic
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError


def init_request(params):
    """Body of ``PUT sys/init`` from the module options (pure)."""
    body = {}
    if params.get("recovery_shares") is not None:
        # Auto-unseal: the seal holds the root key; people get recovery keys instead.
        body["recovery_shares"] = params["recovery_shares"]
        body["recovery_threshold"] = params["recovery_threshold"]
        if params.get("recovery_pgp_keys"):
            body["recovery_pgp_keys"] = params["recovery_pgp_keys"]
    else:
        body["secret_shares"] = params["secret_shares"]
        body["secret_threshold"] = params["secret_threshold"]
        if params.get("pgp_keys"):
            body["pgp_keys"] = params["pgp_keys"]
    if params.get("root_token_pgp_key"):
        body["root_token_pgp_key"] = params["root_token_pgp_key"]
    return body


def validate_init(params):
    """Refuse impossible or key-losing combinations before anything is sent (pure)."""
    if params.get("recovery_shares") is not None:
        shares, threshold, pgp, label = (params["recovery_shares"], params.get("recovery_threshold"),
                                         params.get("recovery_pgp_keys"), "recovery")
    else:
        shares, threshold, pgp, label = (params["secret_shares"], params["secret_threshold"],
                                         params.get("pgp_keys"), "secret")
    if threshold is None or not 1 <= threshold <= shares:
        raise VaultModuleError("%s_threshold must be between 1 and %s_shares (%s); got %s"
                               % (label, label, shares, threshold))
    if pgp and len(pgp) != shares:
        raise VaultModuleError("%s pgp keys: %d given for %d shares; give one per share" % (label, len(pgp), shares))
    if not params.get("keys_file") and not pgp:
        raise VaultModuleError("nowhere to keep the unseal keys: set keys_file (written 0600) or pgp_keys "
                               "(then the keys are returned only PGP-encrypted)")


def keys_document(answer, params):
    """What the keys file holds: the init answer in ``bao operator init -format=json`` shape."""
    document = {
        "unseal_keys_b64": answer.get("keys_base64") or [],
        "unseal_keys_hex": answer.get("keys") or [],
        "unseal_shares": params.get("secret_shares") if params.get("recovery_shares") is None else 0,
        "unseal_threshold": params.get("secret_threshold") if params.get("recovery_shares") is None else 0,
        "recovery_keys_b64": answer.get("recovery_keys_base64") or [],
        "recovery_keys_hex": answer.get("recovery_keys") or [],
        "recovery_keys_shares": params.get("recovery_shares") or 0,
        "recovery_keys_threshold": params.get("recovery_threshold") or 0,
        "root_token": answer.get("root_token"),
    }
    return document


def refuse_existing_keys_file(path, overwrite=False):
    """The absolute path, unless a file is there already (checked before init, also in check mode)."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise VaultModuleError(
            "keys_file %s already exists and the server is not initialised: it probably holds the keys of "
            "another server. Move it away (or set overwrite_keys_file) and re-run; nothing was done" % path)
    return path


class KeysFile:
    """Open the keys file's temporary twin (0600) before init; commit it (fsync + rename) after."""

    def __init__(self, path, overwrite=False):
        self.path = refuse_existing_keys_file(path, overwrite)
        self.writer = _atomic.AtomicFile(self.path, mode=0o600, make_dirs=True)
        try:
            self.writer.open()
        except (IOError, OSError) as exc:
            raise VaultModuleError("cannot prepare keys_file %s (%s); the server was not initialised" % (path, exc))

    def commit(self, document):
        json.dump(document, self.writer.handle, indent=2)
        self.writer.handle.write("\n")
        self.writer.commit()

    def discard(self):
        self.writer.discard()


def read_keys_file(path):
    """Unseal (or recovery) keys from a keys file written by vault_init or `bao operator init -format=json`."""
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (IOError, OSError) as exc:
        raise VaultModuleError("cannot read keys_file %s: %s" % (path, exc))
    except ValueError:
        raise VaultModuleError("keys_file %s is not JSON (expected vault_init's or `operator init -format=json` output)"
                               % path)
    keys = document.get("unseal_keys_b64") or document.get("keys_base64") or document.get("unseal_keys_hex") \
        or document.get("keys") or []
    if not keys:
        raise VaultModuleError("keys_file %s holds no unseal keys" % path)
    return list(keys)


def seal_view(status):
    """The public part of sys/seal-status."""
    return {"sealed": bool(status.get("sealed")), "initialized": bool(status.get("initialized")),
            "progress": int(status.get("progress") or 0), "threshold": int(status.get("t") or 0),
            "shares": int(status.get("n") or 0), "type": status.get("type"), "version": status.get("version")}


def wait_initialized(connection, timeout, sleep=None):
    """Poll sys/seal-status until the node reports initialised (a raft node joins its leader first)."""
    sleep = sleep or time.sleep
    deadline = time.monotonic() + timeout
    while True:
        status = seal_view(connection.request("GET", "sys/seal-status"))
        if status["initialized"] or time.monotonic() >= deadline:
            return status
        sleep(1)


def unseal(connection, keys, check_mode=False, initialized_timeout=0):
    """Feed ``keys`` until the server is unsealed; returns ``(changed, status, keys_used)``.

    Never calls ``reset``: progress someone else made is left alone.  If the shares do not combine
    (a wrong key, or a stranger's share already counted), Vault resets the round itself; one
    clean round with only our keys follows before the keys are declared wrong.
    """
    status = wait_initialized(connection, initialized_timeout)
    if not status["initialized"]:
        raise VaultModuleError("%s is not initialised: run keyops.lifecycle.vault_init first%s"
                               % (connection.url, " (or it did not join its raft leader within %ds)"
                                  % initialized_timeout if initialized_timeout else ""))
    if not status["sealed"]:
        return False, status, 0
    if check_mode:
        return True, status, 0
    used = 0
    for attempt in (1, 2):
        fed = 0
        for index, key in enumerate(keys):
            try:
                answer = connection.request("PUT", "sys/unseal", {"key": key}, capability="update")
            except VaultModuleError as exc:
                if exc.status == 400 and ("combined key" in exc.msg or "authentication failed" in exc.msg):
                    break  # the round failed and was reset by Vault
                raise VaultModuleError("unseal key #%d was refused by %s: %s" % (index + 1, connection.url, exc.msg))
            used += 1
            fed += 1
            status = seal_view(answer)
            if not status["sealed"]:
                return True, status, used
            if status["progress"] == 0 and fed >= status["threshold"]:
                # The threshold was met; a raft follower finishes joining its leader before it reports
                # unsealed, so give it a moment rather than feeding more keys.
                status = _wait_unsealed(connection, 30)
                if not status["sealed"]:
                    return True, status, used
                break
        else:
            raise VaultModuleError("%s is still sealed after %d key(s): threshold is %d; give more keys"
                                   % (connection.url, len(keys), status["threshold"]))
    raise VaultModuleError("the unseal keys do not unseal %s (the shares did not combine twice, the second time "
                           "from a clean round): they belong to another server or one of them is wrong. Nothing "
                           "else was changed" % connection.url)


def _wait_unsealed(connection, timeout):
    deadline = time.monotonic() + timeout
    while True:
        status = seal_view(connection.request("GET", "sys/seal-status"))
        if not status["sealed"] or time.monotonic() >= deadline:
            return status
        time.sleep(0.5)
