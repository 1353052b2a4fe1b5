# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Kubernetes connection layer for the collection's modules (private).

Connection options and their environment fallbacks are kubernetes.core's (``K8S_AUTH_*``), so a
``module_defaults`` block or an AWX credential written for kubernetes.core works here too.  Requests go
through the official ``kubernetes`` client's ApiClient (auth, TLS, exec plugins, token refresh); this layer
adds retries on 429/5xx, explained errors for 401/403/404/409/422, and a poll-until helper.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import json
import os
import time

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.keyops.lifecycle.plugins.module_utils._errors import KeyopsModuleError, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils._retry import Retry, with_retries

# The kubernetes client is imported by the first connection, not here: the collection's filters use this
# module's pure helpers, and importing the client costs ~0.3 s in every Ansible worker that loads a filter.
kubernetes = None


class ApiException(Exception):
    """Stands for kubernetes' ApiException until the client is imported."""
    status = body = None


class Urllib3Error(Exception):
    """Stands for urllib3's HTTPError until the client is imported."""


def _import_client_library():
    global kubernetes, ApiException, Urllib3Error  # pylint: disable=global-statement,invalid-name
    if kubernetes is not None:
        return
    try:
        kubernetes_library = importlib.import_module("kubernetes")
        importlib.import_module("kubernetes.config")
        api_exception = importlib.import_module("kubernetes.client.exceptions").ApiException
        urllib3_error = importlib.import_module("urllib3.exceptions").HTTPError
    except ImportError as exc:
        raise K8sModuleError(missing_required_lib("kubernetes"), exception=str(exc))
    kubernetes, ApiException, Urllib3Error = kubernetes_library, api_exception, urllib3_error


K8S_CONNECTION_ARGSPEC = dict(
    kubeconfig=dict(type="raw", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
    context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
    host=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_HOST"])),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["K8S_AUTH_API_KEY"])),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"], fallback=(env_fallback, ["K8S_AUTH_SSL_CA_CERT"])),
    validate_certs=dict(type="bool", aliases=["verify_ssl"], fallback=(env_fallback, ["K8S_AUTH_VERIFY_SSL"])),
    request_timeout=dict(type="int", default=30),
    retries=dict(type="int", default=3),
)

# For modules in the Vault action group, whose own ca_cert/validate_certs/retries/timeout are Vault's.
KUBE_OPTIONS_FOR_VAULT_MODULES = dict(
    dict((name, K8S_CONNECTION_ARGSPEC[name]) for name in ("kubeconfig", "context", "host", "api_key")),
    kube_ca_cert=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_SSL_CA_CERT"])),
    kube_validate_certs=dict(type="bool", fallback=(env_fallback, ["K8S_AUTH_VERIFY_SSL"])),
)

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class K8sModuleError(KeyopsModuleError):
    """A Kubernetes failure explained for the operator; ``reason`` is the API Status reason."""

    def __init__(self, msg, status=None, reason=None, **details):
        super(K8sModuleError, self).__init__(msg, status=status, **details)
        self.reason = reason


def connection_mode(params, environ=None, exists=os.path.exists):
    """Which way to connect: ``("host", None)``, ``("kubeconfig", path-or-dict)`` or ``("incluster", None)``.

    The order is kubernetes.core's: an explicit host wins, then a kubeconfig (option, ``$KUBECONFIG``,
    ``~/.kube/config``), then the pod's service account.
    """
    environ = os.environ if environ is None else environ
    if params.get("host"):
        return "host", None
    kubeconfig = params.get("kubeconfig")
    if isinstance(kubeconfig, dict):
        return "kubeconfig", kubeconfig
    if kubeconfig:
        path = os.path.expanduser(str(kubeconfig))
        if not exists(path):
            raise K8sModuleError("kubeconfig %s does not exist: give the path of a readable kubeconfig file "
                                 "(option kubeconfig or K8S_AUTH_KUBECONFIG)" % path)
        return "kubeconfig", path
    for candidate in [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p] + ["~/.kube/config"]:
        path = os.path.expanduser(candidate)
        if exists(path):
            return "kubeconfig", path
    if environ.get("KUBERNETES_SERVICE_HOST") and exists(IN_CLUSTER_TOKEN):
        return "incluster", None
    raise K8sModuleError("no Kubernetes connection: set kubeconfig (and context), or host and api_key, or run "
                         "inside a pod with a service account (options or K8S_AUTH_* environment variables)")


def _header_safe(value):
    """Tokens travel in HTTP headers: printable ASCII only."""
    return all(32 < ord(char) < 127 for char in str(value))


def should_retry(method, status):
    """429 always (nothing was done); 5xx only for requests that are safe to repeat or were refused unprocessed."""
    if status not in RETRY_STATUSES:
        return False
    return status in (429, 503) or method in ("GET", "PUT", "DELETE", "PATCH")


def status_body(body):
    try:
        parsed = json.loads(body) if isinstance(body, (str, bytes)) else (body or {})
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def explain(status, body, verb, what, host):
    """An operator-facing message for a failed API call."""
    payload = status_body(body)
    message = payload.get("message") or (body.decode() if isinstance(body, bytes) else str(body or "")).strip()
    reason = payload.get("reason") or ""
    if status == 401:
        return ("the Kubernetes API at %s rejected the credentials (401 Unauthorized): the token is missing, "
                "invalid or expired; renew it or choose another context/kubeconfig" % host)
    if status == 403:
        return ("not allowed to %s %s (403 Forbidden): %s; grant the account RBAC permission or use one that has it"
                % (verb, what, message))
    if status == 404:
        return "%s not found (404): %s" % (what, message)
    if status == 409 and reason == "AlreadyExists":
        return "%s already exists (409 AlreadyExists): %s" % (what, message)
    if status == 409:
        return ("%s was changed by someone else while this ran (409 Conflict): %s; run the task again"
                % (what, message))
    if status == 422:
        return "the API refused %s as invalid (422): %s" % (what, message)
    if status == 0:
        return "cannot reach the Kubernetes API at %s: %s" % (host, message)
    return "could not %s %s (HTTP %s %s): %s" % (verb, what, status, reason, message)


class K8sClient:
    """A connected client; ``request`` is the only place I/O happens."""

    def __init__(self, api_client, retries=3, timeout=30, sleep=time.sleep):
        self.api_client = api_client
        self.retries = retries
        self.timeout = timeout
        self.sleep = sleep

    @property
    def host(self):
        return self.api_client.configuration.host

    @classmethod
    def from_params(cls, params):
        _import_client_library()
        request_timeout, retries = params.get("request_timeout"), params.get("retries")
        if (request_timeout is not None and request_timeout <= 0) or (retries is not None and retries < 0):
            raise K8sModuleError("request_timeout must be at least 1 second and retries at least 0 (got %s and %s)"
                                 % (request_timeout, retries))
        if params.get("api_key") and not _header_safe(params["api_key"]):
            raise K8sModuleError("api_key holds characters an HTTP Authorization header cannot carry: "
                                 "give the bearer token exactly as issued (printable ASCII)")
        mode, source = connection_mode(params)
        configuration = kubernetes.client.Configuration()
        try:
            if mode == "host":
                configuration.host = params["host"]
                if params.get("api_key"):
                    configuration.api_key = {"BearerToken": "Bearer " + params["api_key"]}
            elif mode == "kubeconfig" and isinstance(source, dict):
                kubernetes.config.load_kube_config_from_dict(source, context=params.get("context"),
                                                             client_configuration=configuration,
                                                             persist_config=False)
            elif mode == "kubeconfig":
                kubernetes.config.load_kube_config(config_file=source, context=params.get("context"),
                                                   client_configuration=configuration, persist_config=False)
            else:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
        except (kubernetes.config.ConfigException, ValueError, KeyError, TypeError, OSError) as exc:
            raise K8sModuleError("cannot use the Kubernetes connection settings (%s): %s" % (mode, exc))
        if mode != "host" and params.get("host"):
            configuration.host = params["host"]
        if params.get("api_key") and mode != "host":
            configuration.refresh_api_key_hook = None  # an explicit key beats the kubeconfig's
            configuration.api_key = {"BearerToken": "Bearer " + params["api_key"]}
        if params.get("ca_cert"):
            configuration.ssl_ca_cert = params["ca_cert"]
        if params.get("validate_certs") is not None:
            configuration.verify_ssl = params["validate_certs"]
        return cls(kubernetes.client.ApiClient(configuration), retries=params.get("retries", 3),
                   timeout=params.get("request_timeout", 30))

    def request(self, method, path, body=None, query=None, content_type="application/json", what=None,
                missing_ok=False):
        """JSON in, JSON out.  Returns None for a 404 when ``missing_ok``; raises K8sModuleError otherwise."""
        what = what or path
        verb = {"GET": "read", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]

        def attempt():
            try:
                response = self.api_client.call_api(
                    path, method, query_params=list((query or {}).items()),
                    header_params={"Accept": "application/json", "Content-Type": content_type},
                    body=body, auth_settings=["BearerToken"], _return_http_data_only=True,
                    _preload_content=False, _request_timeout=self.timeout)
                data = response.data
                return json.loads(data) if data else {}
            except ApiException as exc:
                if exc.status == 404 and missing_ok:
                    return None
                payload = status_body(exc.body)
                final = K8sModuleError(explain(exc.status, exc.body, verb, what, self.host), status=exc.status,
                                       reason=payload.get("reason"))
                raise Retry(final) if should_retry(method, exc.status) else final
            except (Urllib3Error, OSError) as exc:
                final = K8sModuleError(explain(0, str(exc), verb, what, self.host), status=0)
                raise Retry(final) if method == "GET" else final

        return with_retries(attempt, self.retries, self.sleep, first=0.5, cap=5.0)


def client_for_vault_module(params):
    """A K8sClient from the KUBE_OPTIONS_FOR_VAULT_MODULES of a Vault-group module."""
    kube = dict((name, params.get(name)) for name in ("kubeconfig", "context", "host", "api_key"))
    kube.update(ca_cert=params.get("kube_ca_cert"), validate_certs=params.get("kube_validate_certs"))
    return K8sClient.from_params(kube)


def resource_path(group, version, plural, namespace=None, name=None, subresource=None):
    """The URL path of a collection or an object (``group`` "" for the core API)."""
    parts = ["/api/v1"] if not group else ["/apis", group, version]
    if namespace:
        parts += ["namespaces", namespace]
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def wait_for(fetch, done, timeout, interval=0.5, clock=time.monotonic, sleep=time.sleep):
    """Poll ``fetch()`` until ``done(value)`` is truthy or ``timeout`` seconds pass; returns (ok, last value).

    Polling rather than watching: it survives API server restarts and proxies that cut long requests.
    """
    deadline = clock() + timeout
    while True:
        value = fetch()
        if done(value):
            return True, value
        if clock() >= deadline:
            return False, value
        sleep(interval)


def run_k8s_module(module, work):
    """Run ``work(client)``; every expected failure becomes ``fail_json`` with details (see ``run_module``)."""
    run_module(module, lambda m: K8sClient.from_params(m.params), work)
