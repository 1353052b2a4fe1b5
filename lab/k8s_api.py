"""A small Kubernetes API test server that keeps the real API's semantics for the resources this project uses.

No kube-apiserver can run on these machines, so the lab carries this stand-in.  It is table-driven
(``RESOURCES``: one row per resource type, no handler per resource) and serves, over HTTPS with its own
CA and bearer-token authentication:

* discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>``, ``/apis/<group>/<version>``;
* CRUD on every row: create (201, or 409 AlreadyExists), get/list (label selectors, ``metadata.name``
  field selector), update (409 Conflict on a stale ``resourceVersion``), merge-patch, JSON-patch and
  strategic-merge-patch (treated as a merge patch, which is what it means for these flat types),
  delete; missing objects answer 404 with a ``Status`` body, unauthenticated callers 401;
* Secrets' ``stringData`` is folded into base64 ``data`` as the real API does;
* ServiceAccount tokens (``POST .../serviceaccounts/<name>/token``, TokenRequest): RS256 JWTs signed with
  the cluster's own key, with audiences and expiry; ``authentication.k8s.io/v1`` TokenReview validates
  them (signature, expiry, audience, service account still present).  Such tokens are also accepted as
  bearer tokens, as a real API server does.

Watches are not served: clients poll (list returns the collection ``resourceVersion``; every object
carries its own), and ``?watch=true`` answers 405 with a Status saying so.
"""

import base64
import copy
import datetime
import http.server
import json
import re
import ssl
import threading
import time
import urllib.parse
import uuid

import jsonpatch
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab import _process, _protobuf


class Resource:
    def __init__(self, group, version, plural, kind, namespaced, short_names=(), status=False):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced = namespaced
        # With a status subresource, writes to the main resource never change status (and vice versa).
        self.status = status
        self.short_names = list(short_names)

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    def discovery(self):
        return {"name": self.plural, "singularName": self.kind.lower(), "namespaced": self.namespaced,
                "kind": self.kind, "shortNames": self.short_names,
                "verbs": ["create", "delete", "get", "list", "patch", "update"]}


TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False)

RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", False, ["ns"], status=True),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"]),
    Resource("vault.kio.kasten.io", "v1alpha1", "passkeys", "Passkey", False, status=True),
    Resource("config.kio.kasten.io", "v1alpha1", "policies", "Policy", True, status=True),
    Resource("actions.kio.kasten.io", "v1alpha1", "runactions", "RunAction", True, status=True),
    TOKEN_REVIEWS,
]

PATH_RE = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+)(?=/))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|token))?$")


class ApiError(Exception):
    def __init__(self, code, reason, message, name=None, kind=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.name, self.kind = code, reason, message, name, kind

    def status(self):
        details = {}
        if self.name is not None:
            details["name"] = self.name
        if self.kind is not None:
            details["kind"] = self.kind
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": details, "code": self.code}


def not_found(resource, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (resource.plural, name), name, resource.plural)


def parse_selector(text):
    """``a=b,c!=d,e,!f,g in (x,y)`` -> a predicate on a labels dict."""
    tests = []
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", text or ""):
        term = term.strip()
        if not term:
            continue
        match = re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", term)
        if match:
            key, operator, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            tests.append(lambda labels, k=key, o=operator, v=values: (labels.get(k) in v) == (o == "in"))
        elif "!=" in term:
            key, value = term.split("!=", 1)
            tests.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) != v)
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            tests.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda labels, k=term[1:].strip(): k not in labels)
        else:
            tests.append(lambda labels, k=term: k in labels)
    return lambda labels: all(test(labels or {}) for test in tests)


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Store:
    """Objects by (plural, namespace, name) with one resourceVersion counter, as etcd gives the API server."""

    def __init__(self):
        self.lock = threading.RLock()
        self.objects = {}
        self.revision = 0
        self.hooks = []  # callables(event, resource, obj) run after every write (the K10 emulator listens)
        # callables(verb, resource, namespace, name, new, current) run before a write; raise ApiError to refuse
        # (what an admission webhook or an aggregated API server does).  Status writes are not admitted.
        self.admission = []

    def _next(self):
        self.revision += 1
        return str(self.revision)

    def _key(self, resource, namespace, name):
        return (resource.plural, namespace if resource.namespaced else None, name)

    def _check_namespace(self, resource, namespace):
        if resource.namespaced and (("namespaces", None, namespace) not in self.objects):
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % namespace, namespace, "namespaces")

    @staticmethod
    def _normalize(resource, obj):
        if resource.kind == "Secret":
            obj.setdefault("type", "Opaque")
        if resource.kind == "Secret" and obj.get("stringData"):
            data = dict(obj.get("data") or {})
            for key, value in obj.pop("stringData").items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        return obj

    def _admit(self, verb, resource, namespace, name, new, current):
        for check in list(self.admission):
            check(verb, resource, namespace, name, copy.deepcopy(new), copy.deepcopy(current))

    def _notify(self, event, resource, obj):
        for hook in list(self.hooks):
            hook(event, resource, copy.deepcopy(obj))

    def get(self, resource, namespace, name):
        with self.lock:
            obj = self.objects.get(self._key(resource, namespace, name))
            if obj is None:
                raise not_found(resource, name)
            return copy.deepcopy(obj)

    def list(self, resource, namespace=None, label_selector=None, name=None):
        matches = parse_selector(label_selector)
        with self.lock:
            items = [copy.deepcopy(obj) for (plural, ns, obj_name), obj in sorted(self.objects.items(),
                                                                                  key=lambda kv: str(kv[0]))
                     if plural == resource.plural and (namespace is None or ns == namespace)
                     and matches(obj["metadata"].get("labels")) and (name is None or obj_name == name)]
            return {"kind": resource.kind + "List", "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": str(self.revision)}, "items": items}

    def create(self, resource, namespace, obj):
        with self.lock:
            obj = self._normalize(resource, copy.deepcopy(obj))
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", "%s.%s is invalid: metadata.name: Required value"
                               % (resource.kind, resource.group or "core"), None, resource.plural)
            if resource.namespaced:
                if meta.get("namespace") and meta["namespace"] != namespace:
                    raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                                   "namespace sent on the request")
                meta["namespace"] = namespace
                self._check_namespace(resource, namespace)
            key = self._key(resource, namespace, name)
            if key not in self.objects:
                self._admit("create", resource, namespace, name, obj, None)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (resource.plural, name), name,
                               resource.plural)
            if resource.status:
                obj.pop("status", None)
            meta.update(uid=str(uuid.uuid4()), resourceVersion=self._next(), generation=1,
                        creationTimestamp=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            if resource.kind == "Namespace":
                obj.setdefault("status", {"phase": "Active"})
            self.objects[key] = obj
            self._notify("ADDED", resource, obj)
            return copy.deepcopy(obj)

    def update(self, resource, namespace, name, obj, subresource=None):
        with self.lock:
            key = self._key(resource, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(resource, name)
            obj = self._normalize(resource, copy.deepcopy(obj))
            meta = obj.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                               % (meta.get("name"), name))
            sent = meta.get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been '
                               "modified; please apply your changes to the latest version and try again"
                               % (resource.plural, name), name, resource.plural)
            if subresource == "status":
                new = copy.deepcopy(current)
                new["status"] = obj.get("status")
            else:
                new = obj
                if resource.status:
                    new.pop("status", None)
                    if "status" in current:
                        new["status"] = current["status"]
                for field in ("uid", "creationTimestamp", "namespace"):
                    if field in current["metadata"]:
                        new["metadata"][field] = current["metadata"][field]
                new["metadata"]["name"] = name
                changed_spec = {k: v for k, v in current.items() if k not in ("metadata", "status")} != \
                    {k: v for k, v in new.items() if k not in ("metadata", "status")}
                new["metadata"]["generation"] = current["metadata"].get("generation", 1) + (1 if changed_spec else 0)
                self._admit("update", resource, namespace, name, new, current)
            new["metadata"]["resourceVersion"] = self._next()
            if new.get("metadata", {}).get("namespace") is None and resource.namespaced:
                new["metadata"]["namespace"] = namespace
            self.objects[key] = new
            self._notify("MODIFIED", resource, new)
            return copy.deepcopy(new)

    def patch(self, resource, namespace, name, patch_type, body, subresource=None):
        with self.lock:
            current = self.get(resource, namespace, name)
            if patch_type == "application/json-patch+json":
                try:
                    patched = jsonpatch.apply_patch(current, body)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise ApiError(422, "Invalid", "the JSON patch could not be applied: %s" % exc, name,
                                   resource.plural)
            elif patch_type in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                                "application/apply-patch+yaml"):
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
                patched = merge_patch(current, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                               "accepted media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/strategic-merge-patch+json")
            # A patch applies to the current object whatever resourceVersion it carries, unless it sets one.
            if (patched.get("metadata") or {}).get("resourceVersion") in (None, current["metadata"]["resourceVersion"]):
                patched.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.update(resource, namespace, name, patched, subresource)

    def delete(self, resource, namespace, name):
        with self.lock:
            key = self._key(resource, namespace, name)
            if key not in self.objects:
                raise not_found(resource, name)
            self._admit("delete", resource, namespace, name, None, self.objects[key])
            obj = self.objects.pop(key)
            if resource.kind == "Namespace":
                for other in [k for k in self.objects if k[1] == name]:
                    del self.objects[other]
            self._next()
            self._notify("DELETED", resource, obj)
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "kind": resource.plural, "uid": obj["metadata"]["uid"]}}


class ClusterState:
    """One cluster: its store, its resources, its service-account signing key and who may call it."""

    def __init__(self, tokens, resources=None, version=("1", "33"), issuer="https://kubernetes.default.svc"):
        self.store = Store()
        self.resources = list(resources or RESOURCES)
        self.tokens = set(tokens)
        self.version = version
        self.issuer = issuer
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # POST /lab/<name> (admin token) -> callable(body) -> dict: what `python -m lab k10 ...` drives.
        self.lab_operations = {"faults": self.set_faults}
        self.requests = []
        # Scripted faults for the reliability tests: [{method, path (regex), status, reason, times, delay}].
        self.faults = []
        self.faults_lock = threading.Lock()
        for namespace in ("default", "kube-system"):
            self.store.create(self.resource("", "namespaces"), None, {"metadata": {"name": namespace}})

    def set_faults(self, body):
        """POST /lab/faults {"faults": [...]}: answer matching requests with an error (or late) ``times`` times."""
        with self.faults_lock:
            self.faults = [dict(fault, times=int(fault.get("times", 1))) for fault in body.get("faults", [])]
        return {"faults": len(self.faults)}

    def take_fault(self, method, path):
        with self.faults_lock:
            for fault in self.faults:
                if fault["times"] > 0 and fault.get("method", method) in (method, "*") and re.search(
                        fault.get("path", ""), path):
                    fault["times"] -= 1
                    return fault
        return None

    def public_key_pem(self):
        return self.signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def issue_token(self, namespace, name, audiences=None, seconds=3600):
        """TokenRequest: a signed JWT for an existing service account."""
        account = self.store.get(self.resource("", "serviceaccounts"), namespace, name)
        now = datetime.datetime.now(datetime.timezone.utc)
        expires = now + datetime.timedelta(seconds=seconds)
        claims = {"iss": self.issuer, "sub": "system:serviceaccount:%s:%s" % (namespace, name),
                  "aud": list(audiences or [self.issuer]), "iat": int(now.timestamp()), "nbf": int(now.timestamp()),
                  "exp": int(expires.timestamp()),
                  "kubernetes.io": {"namespace": namespace,
                                    "serviceaccount": {"name": name, "uid": account["metadata"]["uid"]}}}
        token = jwt.encode(claims, self.signing_key, algorithm="RS256")
        _process.register_secret("service_account_token", token)
        return token, expires

    def review(self, token, audiences=None):
        """TokenReview status for ``token``: authenticated only when signed here, unexpired, for an existing SA."""
        try:
            claims = jwt.decode(token, self.signing_key.public_key(), algorithms=["RS256"],
                                options={"verify_aud": False})
        except jwt.PyJWTError as exc:
            return {"authenticated": False, "error": "invalid bearer token: %s" % exc}
        wanted = list(audiences or [])
        granted = claims.get("aud") or []
        if wanted and not set(wanted) & set(granted):
            return {"authenticated": False, "error": "token audiences %s are invalid for the target audiences %s"
                    % (granted, wanted)}
        info = claims.get("kubernetes.io") or {}
        namespace, account = info.get("namespace"), (info.get("serviceaccount") or {})
        try:
            current = self.store.get(self.resource("", "serviceaccounts"), namespace, account.get("name"))
        except ApiError:
            return {"authenticated": False, "error": "service account %s/%s has been deleted"
                    % (namespace, account.get("name"))}
        if current["metadata"]["uid"] != account.get("uid"):
            return {"authenticated": False, "error": "service account UID does not match"}
        return {"authenticated": True, "audiences": wanted or granted,
                "user": {"username": claims["sub"], "uid": account.get("uid"),
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:%s" % namespace,
                                    "system:authenticated"]}}

    def authenticates(self, token):
        return token in self.tokens or self.review(token).get("authenticated", False)

    def resource(self, group, plural):
        for resource in self.resources:
            if resource.group == group and resource.plural == plural:
                return resource
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def groups(self):
        seen = {}
        for resource in self.resources:
            if resource.group:
                seen.setdefault(resource.group, resource.version)
        return seen


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keyops-lab-kube-apiserver"

    def log_message(self, *args):  # quiet: tests read results, not access logs
        pass

    @property
    def state(self):
        return self.server.state

    def _send(self, code, body):
        data = json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            # The client gave up (its timeout) before the answer: what a real API server shrugs off too.
            self.close_connection = True

    def _read_body(self):
        # Read every body (DELETE carries DeleteOptions) so nothing is left on a kept-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(length) if length else b""

    def _body(self):
        raw = self.raw_body
        if not raw:
            return None
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if content_type == "application/vnd.kubernetes.protobuf":
            try:
                return _protobuf.decode(raw)
            except _protobuf.UnsupportedMessage as exc:
                raise ApiError(415, "UnsupportedMediaType", "the lab reads protobuf only for the built-in types "
                               "kubectl creates here (%s); send JSON" % exc)
        if "protobuf" in content_type or "cbor" in content_type:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json, application/json-patch+json, "
                           "application/merge-patch+json, application/strategic-merge-patch+json")
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "BadRequest", "the request body is not JSON")

    def _authenticated(self):
        header = self.headers.get("Authorization", "")
        return header.startswith("Bearer ") and self.state.authenticates(header[7:].strip())

    def _caller(self):
        """Who the bearer token claims to be (unverified), for the request log."""
        header = self.headers.get("Authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        if not token:
            return "anonymous"
        if token in self.state.tokens:
            return "lab-admin"
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            return "%s (iss %s)" % (claims.get("sub"), claims.get("iss"))
        except jwt.PyJWTError:
            return "opaque token"

    def _handle(self, method):
        url = urllib.parse.urlsplit(self.path)
        code = 500
        try:
            self._read_body()
            query = dict(urllib.parse.parse_qsl(url.query))
            if not self._authenticated():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            fault = None if url.path.startswith("/lab/") else self.state.take_fault(method, url.path)
            if fault:
                time.sleep(float(fault.get("delay", 0)))
                if fault.get("status"):
                    raise ApiError(int(fault["status"]), fault.get("reason", "InjectedFault"),
                                   fault.get("message", "injected fault"))
            code, body = self._route(method, url.path.rstrip("/") or "/", query)
            self._send(code, body)
        except ApiError as exc:
            code = exc.code
            self._send(exc.code, exc.status())
        except Exception as exc:  # pylint: disable=broad-except
            self._send(500, ApiError(500, "InternalError", "lab server error: %s" % exc).status())
        finally:
            # What an API server's audit log would say: who called what, and the answer (last 1000).
            self.state.requests.append({"method": method, "path": url.path, "code": code, "caller": self._caller()})
            del self.state.requests[:-1000]

    def _route(self, method, path, query):
        if path.startswith("/lab/"):
            operation = self.state.lab_operations.get(path[len("/lab/"):])
            if self.headers.get("Authorization", "")[7:].strip() not in self.state.tokens:
                raise ApiError(403, "Forbidden", "lab operations need the lab's admin token")
            if operation is None or method != "POST":
                raise ApiError(404, "NotFound", "no lab operation %s" % path)
            return 200, operation(self._body() or {})
        discovery = self._discovery(path)
        if discovery is not None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return 200, discovery
        match = PATH_RE.match(path)
        if not match:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        resource = self.state.resource(match.group("group") or "", match.group("plural"))
        if match.group("version") and match.group("version") != resource.version:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace, name, sub = match.group("namespace"), match.group("name"), match.group("sub")
        if resource.namespaced is False and namespace:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        store = self.state.store
        if str(query.get("watch", "")).lower() in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "watch is not served by the lab API server: poll with list "
                           "(the list's metadata.resourceVersion changes with every write)")
        if method == "GET" and name:
            return 200, store.get(resource, namespace, name)
        if method == "GET":
            field = query.get("fieldSelector", "")
            only = field.split("=", 1)[1] if field.startswith("metadata.name=") else None
            return 200, store.list(resource, namespace, query.get("labelSelector"), only)
        if resource is TOKEN_REVIEWS:
            if method != "POST" or name:
                raise ApiError(405, "MethodNotAllowed", "tokenreviews only support create")
            body = self._body() or {}
            spec = body.get("spec") or {}
            return 201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                         "metadata": {"creationTimestamp": None}, "spec": spec,
                         "status": self.state.review(spec.get("token") or "", spec.get("audiences"))}
        if sub == "token":
            if method != "POST" or resource.plural != "serviceaccounts":
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            spec = (self._body() or {}).get("spec") or {}
            token, expires = self.state.issue_token(namespace, name, spec.get("audiences"),
                                                    int(spec.get("expirationSeconds") or 3600))
            return 201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                         "metadata": {"name": name, "namespace": namespace}, "spec": spec,
                         "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}
        if method == "POST" and not name:
            body = self._body() or {}
            if query.get("dryRun"):
                return 201, store._normalize(resource, body)  # pylint: disable=protected-access
            return 201, store.create(resource, namespace, body)
        if method == "PUT" and name:
            return 200, store.update(resource, namespace, name, self._body() or {}, sub)
        if method == "PATCH" and name:
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            return 200, store.patch(resource, namespace, name, content_type, self._body(), sub)
        if method == "DELETE" and name:
            return 200, store.delete(resource, namespace, name)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _discovery(self, path):
        state = self.state
        if path == "/version":
            major, minor = state.version
            return {"major": major, "minor": minor, "gitVersion": "v%s.%s.0-keyops-lab" % (major, minor),
                    "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "none (keyops lab, Python)", "compiler": "none", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/api/v1":
            return self._resource_list("v1", [r for r in state.resources if not r.group])
        if path == "/apis":
            groups = [self._group(group, version) for group, version in state.groups().items()]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        parts = path.split("/")
        if len(parts) == 3 and parts[1] == "apis" and parts[2] in state.groups():
            return dict(self._group(parts[2], state.groups()[parts[2]]), kind="APIGroup", apiVersion="v1")
        if len(parts) == 4 and parts[1] == "apis" and state.groups().get(parts[2]) == parts[3]:
            return self._resource_list("%s/%s" % (parts[2], parts[3]),
                                       [r for r in state.resources if r.group == parts[2]])
        return None

    @staticmethod
    def _group(group, version):
        gv = {"groupVersion": "%s/%s" % (group, version), "version": version}
        return {"name": group, "versions": [gv], "preferredVersion": gv}

    @staticmethod
    def _resource_list(group_version, resources):
        entries = []
        for resource in resources:
            entries.append(resource.discovery())
            subresources = (["status"] if resource.status else []) + (
                ["token"] if resource.plural == "serviceaccounts" else [])
            for sub in subresources:
                entries.append({"name": "%s/%s" % (resource.plural, sub), "singularName": "",
                                "namespaced": resource.namespaced,
                                "kind": "TokenRequest" if sub == "token" else resource.kind,
                                "verbs": ["create"] if sub == "token" else ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": entries}

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")


class KubeApiServer:
    """HTTPS API server on 127.0.0.1 in a background thread; ``kubeconfig()`` describes how to reach it."""

    def __init__(self, tls, tokens, port=0, name="lab"):
        self.state = ClusterState(tokens)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls["cert"], tls["key"])
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.ca_path = tls["ca"]
        self.name = name
        self.address = "https://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="kube-api-" + self.name, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def kubeconfig(clusters, current):
    """A kubeconfig (dict) for ``clusters``: ``{context name: (server, token)}``, CA data inline."""
    doc = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [],
           "current-context": current, "preferences": {}}
    for context, (server, token) in clusters.items():
        with open(server.ca_path, "rb") as handle:
            ca_data = base64.b64encode(handle.read()).decode()
        doc["clusters"].append({"name": context, "cluster": {"server": server.address,
                                                             "certificate-authority-data": ca_data}})
        doc["users"].append({"name": context, "user": {"token": token}})
        doc["contexts"].append({"name": context, "context": {"cluster": context, "user": context}})
    return doc
