"""An in-memory Kubernetes API behind the kubernetes client's ``ApiClient.call_api``, for module tests.

Everything above that one call is the collection's own code: ``K8sClient.from_params`` (option checks,
connection mode, bearer token), ``K8sClient.request`` (JSON, ``missing_ok``, retries, explained errors).
Each API server is a :class:`FakeCluster` chosen by the connection's host, so a module that talks to two
clusters (k10_import_policy's source and destination) talks to two fakes.

    def test_x(fake_k8s):
        cluster = fake_k8s.cluster()
        cluster.seed("/api/v1/namespaces/ns/secrets/s", {"data": {}})
        result = run_module(k8s_secret.main, dict(K8S_ARGS, name="s", namespace="ns"))
        assert cluster.writes() == []

A cluster answers like the API server: GET of an object or of a collection (``{"items": [...]}``), POST to a
collection (409 AlreadyExists, ``generateName``), PUT with ``resourceVersion`` (409 Conflict when stale), PATCH
with a JSON patch (``test``/``add``/``replace``/``remove``; a failed ``test`` is 422), DELETE; 404 for anything
missing.  ``fail()`` makes the next matching calls fail; ``hooks`` play a controller (K10) after each write.
"""

import copy
import itertools
import json
import os
import re

import pytest
from ansible.module_utils import _internal as module_internal
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.keyops.lifecycle.plugins.module_utils import _k8s
from ansible_collections.keyops.lifecycle.plugins.module_utils import _k10

HOST = "https://k8s.test:6443"
TOKEN = "k8s-bearer-token-0123456789"  # printable ASCII, as a header needs; never in a result
# The connection options every Kubernetes module test starts from (no retries: a failure answers at once).
K8S_ARGS = {"host": HOST, "api_key": TOKEN, "retries": 0}

PASSKEYS = _k8s.resource_path(*_k10.PASSKEY_API)


def passkey_path(name):
    return _k8s.resource_path(*_k10.PASSKEY_API, name=name)


def policy_path(namespace, name):
    return _k8s.resource_path(_k10.POLICY_API[0], _k10.POLICY_API[1], _k10.POLICY_API[2], namespace, name)


def run_actions_path(namespace, name=None):
    return _k8s.resource_path(_k10.RUN_ACTION_API[0], _k10.RUN_ACTION_API[1], _k10.RUN_ACTION_API[2], namespace, name)


def secret_path(namespace, name=None):
    return _k8s.resource_path("", "v1", "secrets", namespace, name)


def split(path):
    """``(collection path, name or None, namespace or None)`` of an API path (core ``/api/v1`` or ``/apis/g/v``)."""
    parts = path.strip("/").split("/")
    prefix = 2 if parts[0] == "api" else 3
    head, rest = parts[:prefix], parts[prefix:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, head, rest = rest[1], head + rest[:2], rest[2:]
    collection = "/" + "/".join(head + rest[:1])
    return collection, (rest[1] if len(rest) > 1 else None), namespace


class FakeResponse:
    def __init__(self, payload):
        self.data = json.dumps(payload).encode() if payload is not None else b""


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}


class FakeCluster:
    def __init__(self, host):
        self.host = host
        self.objects = {}  # object path -> object
        self.calls = []  # (METHOD, path, body) of every call, in order
        self.hooks = []  # hook(cluster, method, path, stored object) after each successful write
        self._failures = []  # [method, path, status, body, times left]
        self._versions = itertools.count(1000)
        self._names = itertools.count(1)

    # -- test side ---------------------------------------------------------------------------------
    def seed(self, path, obj):
        """Put an object in place as if it had always been there (name, namespace, resourceVersion filled in)."""
        obj = copy.deepcopy(obj)
        _collection, name, namespace = split(path)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("name", name)
        if namespace:
            meta.setdefault("namespace", namespace)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[path] = obj
        return obj

    def get(self, path):
        return copy.deepcopy(self.objects.get(path))

    def fail(self, method, path, code, reason="", message="refused", times=1):
        """The next ``times`` calls of ``method`` on ``path`` answer ``code`` (0: the connection fails)."""
        self._failures.append([method.upper(), path, code, status(code, reason, message), times])

    def sent(self, method=None, path=None):
        return [c for c in self.calls if (method is None or c[0] == method) and (path is None or c[1] == path)]

    def writes(self):
        return [c for c in self.calls if c[0] != "GET"]

    # -- API side ----------------------------------------------------------------------------------
    def _raise(self, code, reason, message):
        if code == 0:
            raise _k8s.Urllib3Error("Connection refused: %s" % message)
        exc = _k8s.ApiException(status=code, reason=reason)
        exc.body = json.dumps(status(code, reason, message))
        raise exc

    def _injected(self, method, path):
        for failure in self._failures:
            if failure[0] == method and failure[1] == path and failure[4] > 0:
                failure[4] -= 1
                self._raise(failure[2], failure[3]["reason"], failure[3]["message"])

    def _stamp(self, obj):
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return obj

    def call(self, method, path, body):
        self.calls.append((method, path, copy.deepcopy(body)))
        self._injected(method, path)
        collection, name, namespace = split(path)
        if method == "GET":
            if name is None:
                items = [copy.deepcopy(o) for p, o in sorted(self.objects.items()) if split(p)[0] == collection
                         and split(p)[1] is not None]
                return {"kind": "List", "items": items}
            if path not in self.objects:
                self._raise(404, "NotFound", "%s %r not found" % (collection.rsplit("/", 1)[-1], name))
            return copy.deepcopy(self.objects[path])
        if method == "POST":
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = "%s%05d" % (meta["generateName"], next(self._names))
            target = "%s/%s" % (collection, meta["name"])
            if target in self.objects:
                self._raise(409, "AlreadyExists", "%r already exists" % meta["name"])
            if namespace:
                meta["namespace"] = namespace
            stored = self.objects[target] = self._stamp(obj)
            return self._after(method, target, stored)
        if path not in self.objects:
            self._raise(404, "NotFound", "%s %r not found" % (collection.rsplit("/", 1)[-1], name))
        if method == "DELETE":
            gone = self.objects.pop(path)
            self._after(method, path, gone)
            return status(200, "", "deleted") | {"status": "Success"}
        if method == "PUT":
            given = (body.get("metadata") or {}).get("resourceVersion")
            if given and given != self.objects[path]["metadata"]["resourceVersion"]:
                self._raise(409, "Conflict", "the object has been modified; please apply your changes to the "
                                             "latest version and try again")
            stored = self.objects[path] = self._stamp(copy.deepcopy(body))
            return self._after(method, path, stored)
        if method == "PATCH":
            stored = self.objects[path] = self._stamp(json_patch(self.objects[path], body, self._raise))
            return self._after(method, path, stored)
        raise AssertionError("unexpected method %s" % method)

    def _after(self, method, path, stored):
        answer = copy.deepcopy(stored)
        for hook in self.hooks:
            hook(self, method, path, stored)
        return answer


def _pointer(path):
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


def json_patch(document, ops, fail):
    """RFC 6902 ``test``/``add``/``replace``/``remove`` on a copy of ``document``."""
    document = copy.deepcopy(document)
    for op in ops:
        parts = _pointer(op["path"])
        parent = document
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.get(part)
            if parent is None:
                fail(422, "Invalid", "the patch path %s does not exist" % op["path"])
        last = parts[-1]
        key = int(last) if isinstance(parent, list) else last
        if op["op"] == "test":
            if (parent[key] if isinstance(parent, list) else parent.get(key)) != op["value"]:
                fail(422, "Invalid", "the test operation on %s failed" % op["path"])
        elif op["op"] in ("add", "replace"):
            parent[key] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[key]
        else:
            fail(422, "Invalid", "unsupported patch operation %s" % op["op"])
    return document


class FakeApiClient:
    """What ``K8sClient`` uses of ``kubernetes.client.ApiClient``: ``configuration`` and ``call_api``."""

    def __init__(self, fake, configuration):
        self.configuration = configuration
        self.cluster = fake.cluster(configuration.host)
        fake.configurations.append(configuration)

    def call_api(self, path, method, query_params=None, header_params=None, body=None, **_kwargs):
        return FakeResponse(self.cluster.call(method, path, body))


class FakeK8s:
    def __init__(self):
        self.clusters = {}
        self.configurations = []  # the kubernetes client Configuration of every connection made
        self.sleeps = []  # retry delays K8sClient asked for (never slept)

    def cluster(self, host=HOST):
        return self.clusters.setdefault(host, FakeCluster(host))

    def bearer_tokens(self):
        return [c.api_key.get("BearerToken") for c in self.configurations]


@pytest.fixture
def fake_k8s(monkeypatch, tmp_path):
    """Every K8sClient of the test talks to a FakeK8s; no kubeconfig or service account of the host is seen."""
    _k8s._import_client_library()
    fake = FakeK8s()
    monkeypatch.setattr(_k8s.kubernetes.client, "ApiClient", lambda configuration: FakeApiClient(fake, configuration))
    original_init = _k8s.K8sClient.__init__

    def init(self, api_client, retries=3, timeout=30, sleep=None):
        original_init(self, api_client, retries=retries, timeout=timeout, sleep=fake.sleeps.append)

    monkeypatch.setattr(_k8s.K8sClient, "__init__", init)
    for name in list(os.environ):
        if name.startswith("K8S_AUTH_") or name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config of whoever runs the tests
    return fake


@pytest.fixture
def isolated_warnings(monkeypatch):
    """ansible-core collects warnings and deprecations in process-wide lists: each test starts with none.

    They reach the result only module-side: once a test of the run has loaded controller code, ansible-core
    sends them to the controller's display instead, unless ``is_controller`` is reset.
    """
    monkeypatch.setattr(module_internal, "is_controller", False)
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})
    monkeypatch.setattr(ansible_warnings, "_global_deprecations", {})


def deprecated_names(result):
    """The option names the result's deprecations are about."""
    return sorted(re.findall(r"Alias '([^']+)' is deprecated", json.dumps(result.get("deprecations") or [])))


# -- K10 as a controller -------------------------------------------------------------------------------
def k10_controller(shape=8, error=None, take=True):
    """A hook that plays K10 on new passkeys: 8.x marks them valid, 7.x marks a ``usenow`` one in use (and the
    others not); ``error`` is what K10 writes instead when it cannot use a passkey; ``take=False``: K10 never
    writes a status (a stuck controller)."""

    def hook(cluster, method, path, stored):
        if method != "POST" or split(path)[0] != PASSKEYS or not take:
            return
        spec = stored.get("spec") or {}
        if error:
            stored["status"] = {"error": error, "valid": False} if shape == 8 else {"error": error, "inuse": False}
        elif shape == 8:
            stored["status"] = {"valid": True, "keytype": "vault" if spec.get("vaulttransitkeyname") else None}
        else:
            in_use = bool(spec.get("usenow")) or not any(
                (o.get("status") or {}).get("inuse") for p, o in cluster.objects.items() if p != path
                and split(p)[0] == PASSKEYS)
            if in_use:
                for other_path, other in cluster.objects.items():
                    if other_path != path and split(other_path)[0] == PASSKEYS and other.get("status"):
                        other["status"]["inuse"] = False
            stored["status"] = {"inuse": in_use}

    return hook


def run_action_controller(state="Complete", error=None):
    """A hook that finishes every new RunAction at once with ``state`` (and K10's nested ``error``)."""

    def hook(cluster, method, path, stored):
        if method == "POST" and split(path)[0].endswith("/runactions"):
            stored["status"] = {"state": state}
            if error:
                stored["status"]["error"] = error

    return hook


def seed_passkey(cluster, name, status=None, key="k10", path="transit", version=None, spec=None):
    """A passkey as K10 holds it (``version``: the transit key version annotation keyops records)."""
    meta = {"name": name}
    if version is not None:
        meta["annotations"] = {_k10.VERSION_ANNOTATION: str(version)}
    return cluster.seed(passkey_path(name), {
        "apiVersion": "vault.kio.kasten.io/v1alpha1", "kind": "Passkey", "metadata": meta,
        "spec": spec if spec is not None else {"vaulttransitkeyname": key, "vaulttransitpath": path},
        "status": status})
