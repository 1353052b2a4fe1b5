"""Shared fixtures of the module tests: a clean environment and a fake Vault behind hvac's adapter.

The helpers that run a module live in ``_module_runner.py`` (``run_module``, ``module_spec``...); this directory
is put on ``sys.path`` so every test file here can ``from _module_runner import run_module`` whatever the
import mode.
"""

import base64
import json
import os
import sys
import threading
import time

import pytest
from ansible.module_utils import basic

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

VAULT_URL = "http://vault.test:8200"  # never resolved: every request stops at the fake adapter
VAULT_TOKEN = "hvs.test-token-0123456789"


@pytest.fixture(autouse=True)
def module_environment(monkeypatch):
    """No operator's VAULT_*/K8S_AUTH_* settings reach a module under test; the module arguments are restored."""
    for name in list(os.environ):
        if name.startswith(("VAULT_", "K8S_AUTH_")):
            monkeypatch.delenv(name)
    saved = (basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE)
    yield
    basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE = saved


class FakeResponse:
    """The parts of a requests.Response that hvac and the collection's Vault layer read."""

    def __init__(self, status, body=None):
        self.status_code = status
        self.ok = status < 400
        if isinstance(body, bytes):
            self.content, self._json = body, None
            self.headers = {"Content-Type": "application/octet-stream"}
        else:
            self.content = b"" if body is None else json.dumps(body).encode()
            self._json = body
            self.headers = {"Content-Type": "application/json"}
        self.text = self.content.decode("utf-8", "replace")

    def json(self):
        if self._json is None:
            raise ValueError("no JSON body")
        return self._json

    def iter_content(self, chunk_size=1):
        for start in range(0, len(self.content), chunk_size):
            yield self.content[start:start + chunk_size]

    def close(self):
        pass


class FakeVault:
    """Answers each request from ``routes`` and records it in ``requests`` as ``(METHOD, path, body)``.

    ``routes[(METHOD, path)]`` (path without ``/v1/`` and without the query; LIST is its own method) is one of:
    a dict (HTTP 200 with that JSON body), ``(status, body)``, bytes (HTTP 200 raw body), or a callable
    ``answer(body) -> one of those``.  ``on(..., base=URL)`` answers only requests sent to that server.
    ``handlers`` (callables ``(method, path, body) -> answer or None``) are asked when no route matches, in
    order.  Anything still unanswered gets 404 with no errors - Vault's "nothing there" - and is noted in
    ``unrouted``.  ``bases[i]`` is the server ``requests[i]`` went to; ``sleeps`` the retry pauses asked for.
    """

    def __init__(self):
        self.routes = {("GET", "auth/token/lookup-self"): {"data": {"id": "masked"}}}
        self.handlers = []
        self.requests = []
        self.bases = []
        self.unrouted = []
        self.sleeps = []
        self._lock = threading.Lock()

    def on(self, method, path, answer, base=None):
        self.routes[(base, method.upper(), path) if base else (method.upper(), path)] = answer
        return self

    def sent(self, method=None, path=None):
        """The recorded requests, narrowed to a method and/or a path."""
        return [r for r in self.requests
                if (method is None or r[0] == method.upper()) and (path is None or r[1] == path)]

    def writes(self):
        """Every request that could change Vault (not GET/LIST)."""
        return [r for r in self.requests if r[0] not in ("GET", "LIST")]

    def _answer(self, base, method, path, body):
        for key in ((base, method, path), (method, path)):
            if key in self.routes:
                answer = self.routes[key]
                return answer(body) if callable(answer) else answer
        for handler in self.handlers:
            answer = handler(method, path, body)
            if answer is not None:
                return answer
        self.unrouted.append((method, path))
        return 404, {"errors": []}

    def handle(self, base, method, url, raise_exception=True, **kwargs):
        import hvac.utils

        method = method.upper()
        path = url.split("/v1/", 1)[-1].split("?", 1)[0].strip("/")
        if "json" in kwargs:
            body = kwargs["json"]
        elif hasattr(kwargs.get("data"), "read"):
            body = kwargs["data"].read()
        else:
            body = kwargs.get("data")
        with self._lock:  # bulk modules send from several threads
            self.requests.append((method, path, body))
            self.bases.append(base)
            answer = self._answer(base, method, path, body)
        status, payload = answer if isinstance(answer, tuple) else (200, answer)
        response = FakeResponse(status, payload)
        if not response.ok and raise_exception:  # hvac's own helpers (logins) expect its exceptions
            errors = payload.get("errors") if isinstance(payload, dict) else None
            hvac.utils.raise_for_error(method, url, status, None if errors else response.text, errors=errors,
                                       text=response.text, json=payload if isinstance(payload, dict) else None)
        return response


@pytest.fixture
def fake_vault(monkeypatch):
    """A FakeVault every VaultConnection of the test talks to (hvac's RawAdapter.request replaced).

    Connections get a sleep that only records (retries and waits cost no time) and a clock that advances
    with it, so a module waiting for something that never comes ends at once instead of hanging.
    """
    import hvac.adapters
    from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultConnection

    vault = FakeVault()
    clock = [1000.0]

    def request(adapter, method, url, headers=None, raise_exception=True, **kwargs):
        return vault.handle(adapter.base_uri.rstrip("/"), method, url, raise_exception=raise_exception, **kwargs)

    def sleep(seconds):
        vault.sleeps.append(seconds)
        clock[0] += seconds

    original_init = VaultConnection.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("clock", lambda: clock[0])
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(hvac.adapters.RawAdapter, "request", request)
    monkeypatch.setattr(VaultConnection, "__init__", init)
    return vault


class FakeTransit:
    """A transit secrets engine at ``mount`` inside a FakeVault: keys, rotate/config/trim/delete, backup/restore
    and rewrap, answering as Vault does (reads list only versions >= min_decryption_version)."""

    def __init__(self, vault, mount="transit"):
        self.mount = mount
        self.keys = {}
        vault.handlers.append(self.handle)

    def add_key(self, name, versions=1, age_days=(), **settings):
        """A key with ``versions`` versions; ``age_days[i]``: how old version i+1 is (default: just now)."""
        now = time.time()
        ages = list(age_days) + [0] * (versions - len(age_days))
        key = {"name": name, "type": "aes256-gcm96", "latest_version": versions, "min_decryption_version": 1,
               "min_encryption_version": 0, "min_available_version": 0, "deletion_allowed": False,
               "exportable": False, "allow_plaintext_backup": False, "derived": False, "auto_rotate_period": 0,
               "supports_encryption": True,
               "keys": dict((str(v), int(now - ages[v - 1] * 86400)) for v in range(1, versions + 1))}
        key.update(settings)
        self.keys[name] = key
        return key

    def read(self, name):
        key = dict(self.keys[name])
        key["keys"] = dict((v, t) for v, t in key["keys"].items()
                           if int(v) >= max(key["min_decryption_version"], key["min_available_version"], 1))
        return {"data": key}

    def backup_blob(self, name):
        key = self.keys[name]
        policy = dict((k, v) for k, v in key.items() if k != "keys")
        archived = dict((v, "KEY-MATERIAL-%s-v%s" % (name, v)) for v in key["keys"])
        return base64.b64encode(json.dumps({"policy": policy, "archived_keys": archived}).encode()).decode()

    def handle(self, method, path, body):
        if not path.startswith(self.mount + "/"):
            return None
        parts = path[len(self.mount) + 1:].split("/")
        kind, name, action = parts[0], (parts[1] if len(parts) > 1 else None), (parts[2] if len(parts) > 2 else None)
        if kind == "keys" and name is None:
            return {"data": {"keys": sorted(self.keys)}} if method == "LIST" else None
        if kind == "keys" and method == "GET" and action is None:
            return self.read(name) if name in self.keys else (404, {"errors": []})
        if kind == "keys" and method == "POST" and action is None:
            if name not in self.keys:
                created_with = ("type", "exportable", "allow_plaintext_backup", "derived")
                options = dict((k, v) for k, v in (body or {}).items() if k in created_with)
                self.add_key(name, **options)
            return 204, None
        if kind == "keys" and method == "DELETE":
            if name not in self.keys:
                return 204, None
            if not self.keys[name]["deletion_allowed"]:
                return 400, {"errors": ["deletion is not allowed for this key"]}
            del self.keys[name]
            return 204, None
        if kind == "keys" and name not in self.keys:
            return 400, {"errors": ["key not found"]}
        if kind == "keys" and action == "rotate":
            key = self.keys[name]
            key["latest_version"] += 1
            key["keys"][str(key["latest_version"])] = int(time.time())
            return self.read(name)
        if kind == "keys" and action == "config":
            for option, value in (body or {}).items():
                if option == "auto_rotate_period":
                    value = int(str(value).rstrip("s"))
                self.keys[name][option] = value
            return self.read(name)
        if kind == "keys" and action == "trim":
            key = self.keys[name]
            key["min_available_version"] = body["min_available_version"]
            key["keys"] = dict((v, t) for v, t in key["keys"].items() if int(v) >= key["min_available_version"])
            return self.read(name)
        if kind == "backup" and method == "GET":
            key = self.keys.get(name)
            if key is None:
                return 500, {"errors": ["key not found"]}
            if not (key["exportable"] and key["allow_plaintext_backup"]):
                return 500, {"errors": ["plaintext backup is disallowed on the policy"]}
            return {"data": {"backup": self.backup_blob(name)}}
        if kind == "restore" and method == "POST":
            if name in self.keys and not body.get("force"):
                return 500, {"errors": ["key \"%s\" already exists" % name]}
            document = json.loads(base64.b64decode(body["backup"]))
            restored = dict(document["policy"], keys=dict((v, int(time.time())) for v in document["archived_keys"]))
            self.keys[name] = restored
            return 204, None
        if kind == "rewrap" and method == "POST":
            return self.rewrap(name, body)
        return None

    def rewrap(self, name, body):
        key = self.keys.get(name)
        if key is None:
            return 400, {"errors": ["encryption key not found"]}
        results = []
        for item in body["batch_input"]:
            target = item.get("key_version") or key["latest_version"]
            prefix, version, payload = item["ciphertext"].split(":", 2)
            if int(version[1:]) < key["min_decryption_version"]:
                results.append({"error": "ciphertext or signature version is disallowed by policy (too old)"})
            elif key["derived"] and not item.get("context"):
                results.append({"error": "missing 'context' for key derivation"})
            else:
                results.append({"ciphertext": "vault:v%d:%s" % (target, payload), "key_version": target})
        return {"data": {"batch_results": results}}


@pytest.fixture
def fake_transit(fake_vault):
    """A FakeTransit at mount ``transit`` (more mounts: ``type(fake_transit)(fake_vault, "other")``)."""
    return FakeTransit(fake_vault)


@pytest.fixture
def vault_args():
    """The connection options every Vault module test starts from (no retries: a failure answers at once)."""
    return {"url": VAULT_URL, "token": VAULT_TOKEN, "retries": 0}
