# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One connection-and-auth layer over hvac for every ``vault_*`` module.

Private to the collection (leading underscore): the interface may change without notice.

Everything a module needs from Vault goes through :meth:`VaultConnection.request`, which
knows the HTTP method and path of each call.  That is what lets every failure become a
sentence an operator can act on ("the token may not `update` `transit/keys/k10/rotate`")
instead of a traceback, and what lets retries be applied only where repeating a request
cannot do harm.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import os
import time

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.keyops.lifecycle.plugins.module_utils._errors import KeyopsModuleError, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils._retry import Retry, with_retries

# hvac and requests are imported by the first VaultConnection, not here: the collection's filters use this
# module's pure helpers, and importing hvac costs ~0.1 s in every Ansible worker process that loads a filter.
hvac = requests = None


def _import_client_libraries():
    global hvac, requests  # pylint: disable=global-statement
    if hvac is not None:
        return
    try:
        hvac_library = importlib.import_module("hvac")
        importlib.import_module("hvac.adapters")
        importlib.import_module("hvac.exceptions")
        requests_library = importlib.import_module("requests")
    except ImportError as exc:
        raise VaultModuleError(missing_required_lib("hvac"), exception=str(exc))
    hvac, requests = hvac_library, requests_library


DEFAULT_JWT_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"

# Statuses after which the same request may simply be sent again: 412 (a performance standby
# has not caught up yet), 429 (rate limited / standby), 500/502/503/504 (transient server or
# proxy trouble).  503 from a *sealed* server is not transient and is reported instead.
RETRY_STATUSES = frozenset((412, 429, 500, 502, 503, 504))

# Seconds a request keeps being retried while the cluster elects a new leader (see election_failure).
# Measured on 3-node OpenBao 2.7.2 raft clusters on loopback, leader SIGKILLed: 6.4 s, 11.4 s and 12.2 s
# from the kill to the first write a standby served again; 30 s leaves room for a slower network and a
# pre-vote round that fails once.
DEFAULT_ELECTION_TIMEOUT = 30

# What a standby answers when it knows of no active node to forward to (Vault's ErrCannotForward).
_NO_ACTIVE_NODE = ("active cluster node not found", "no active node", "not active but")

# Ansible argument spec shared by every Vault module (documented in doc_fragments/vault_connection.py).
VAULT_CONNECTION_ARGSPEC = dict(
    url=dict(type="str", fallback=(env_fallback, ["VAULT_ADDR"])),
    token=dict(type="str", no_log=True, fallback=(env_fallback, ["VAULT_TOKEN"])),
    auth_method=dict(type="str", default="token", choices=["token", "approle", "kubernetes"],
                     fallback=(env_fallback, ["VAULT_AUTH_METHOD"])),
    auth_mount_point=dict(type="str", fallback=(env_fallback, ["VAULT_AUTH_MOUNT_POINT"])),
    role_id=dict(type="str", fallback=(env_fallback, ["VAULT_ROLE_ID"])),
    secret_id=dict(type="str", no_log=True, fallback=(env_fallback, ["VAULT_SECRET_ID"])),
    kubernetes_role=dict(type="str", fallback=(env_fallback, ["VAULT_KUBERNETES_ROLE"])),
    kubernetes_jwt_file=dict(type="path", default=DEFAULT_JWT_FILE, fallback=(env_fallback, ["VAULT_KUBERNETES_JWT_FILE"])),
    namespace=dict(type="str", fallback=(env_fallback, ["VAULT_NAMESPACE"])),
    ca_cert=dict(type="path", fallback=(env_fallback, ["VAULT_CACERT"])),
    validate_certs=dict(type="bool"),
    timeout=dict(type="int", default=30),
    retries=dict(type="int", default=3),
    election_timeout=dict(type="int", default=DEFAULT_ELECTION_TIMEOUT, fallback=(env_fallback, ["VAULT_ELECTION_TIMEOUT"])),
)

CONNECTION_OPTION_NAMES = frozenset(VAULT_CONNECTION_ARGSPEC)

# Environment variables requests honours when trust_env is on (proxies, CA bundles, netrc).
# What requests reads from the environment on every request when trust_env is on.
_REQUESTS_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                       "no_proxy", "NETRC")
_REQUESTS_CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # in requests' order of precedence


def environment_verify(verify, environ):
    """``verify`` as requests would resolve it from the CA bundle variables (pure): they replace ``True`` only."""
    if verify is True:
        for name in _REQUESTS_CA_ENV:
            if environ.get(name):
                return environ[name]
    return verify


class VaultModuleError(KeyopsModuleError):
    """A Vault failure explained for the operator."""


class VaultSealedError(VaultModuleError):
    pass


class VaultMountMissingError(VaultModuleError):
    pass


def vault_argument_spec(**module_options):
    """The connection options plus the module's own."""
    spec = dict((name, dict(option)) for name, option in VAULT_CONNECTION_ARGSPEC.items())
    spec.update(module_options)
    return spec


def _truthy_env(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _errors_text(payload, fallback):
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)
    return fallback


def explain_failure(status, method, path, errors, url, capability=None):
    """Turn an HTTP failure into an actionable message (pure; unit-tested)."""
    where = "%s %s" % (method.upper(), path)
    if status == 403:
        need = capability or {"GET": "read", "LIST": "list", "DELETE": "delete"}.get(method.upper(), "update")
        return ("permission denied on %s: the token needs the %r capability on path %r "
                "(e.g. a policy with: path \"%s\" { capabilities = [\"%s\"] }), or it is invalid/expired, "
                "or nothing is mounted there. Vault said: %s" % (where, need, path, path, need, errors or "permission denied"))
    if status == 404 and "no handler for route" in (errors or ""):
        mount = path.split("/", 1)[0]
        return ("nothing is mounted at %r on %s (%s): enable the secrets engine first "
                "(e.g. keyops.lifecycle.vault_mount, or 'bao secrets enable -path=%s transit') or fix `mount`"
                % (mount + "/", url, where, mount))
    if status == 503 and "sealed" in (errors or "").lower():
        return ("Vault at %s is sealed (%s): unseal it (keyops.lifecycle.vault_unseal or 'bao operator unseal') "
                "and re-run; the task stopped before changing anything further" % (url, where))
    if status == 501:
        return "Vault at %s is not initialized (%s): run keyops.lifecycle.vault_init first" % (url, where)
    if status == 401:
        return "Vault rejected the credentials on %s: %s" % (where, errors or "unauthorized")
    return "Vault refused %s (HTTP %s): %s" % (where, status, errors or "no error text")


class VaultConnection:
    """An authenticated hvac client plus the retry/explain policy of this collection."""

    def __init__(self, url=None, token=None, auth_method="token", auth_mount_point=None, role_id=None,
                 secret_id=None, kubernetes_role=None, kubernetes_jwt_file=DEFAULT_JWT_FILE,
                 namespace=None, ca_cert=None, validate_certs=None, timeout=30, retries=3, sleep=time.sleep,
                 login=True, election_timeout=DEFAULT_ELECTION_TIMEOUT, clock=time.monotonic):
        _import_client_libraries()
        if not url:
            raise VaultModuleError("no Vault address: set the `url` option or the VAULT_ADDR environment variable")
        if not url.startswith(("http://", "https://")):
            raise VaultModuleError("`url` must start with http:// or https:// (got %r)" % url)
        if timeout is not None and timeout <= 0:
            raise VaultModuleError("`timeout` must be a positive number of seconds (got %s)" % timeout)
        if retries is not None and retries < 0:
            raise VaultModuleError("`retries` must be 0 or more (got %s)" % retries)
        if election_timeout is not None and election_timeout < 0:
            raise VaultModuleError("`election_timeout` must be 0 (do not wait for a leader election) or more seconds "
                                   "(got %s)" % election_timeout)
        for name, value in (("token", token), ("namespace", namespace)):
            if value and not all(32 < ord(char) < 127 for char in str(value)):
                raise VaultModuleError("`%s` holds characters an HTTP header cannot carry: give it exactly as "
                                       "issued (printable ASCII)" % name)
        if validate_certs is None:
            validate_certs = not _truthy_env("VAULT_SKIP_VERIFY")
        verify = (ca_cert or True) if validate_certs else False
        if ca_cert and not os.path.isfile(ca_cert):
            raise VaultModuleError("`ca_cert` %r is not a readable file" % ca_cert)
        self.url = url.rstrip("/")
        self.retries = retries if retries is not None else 3
        self._sleep = sleep
        self._clock = clock
        self.election_timeout = DEFAULT_ELECTION_TIMEOUT if election_timeout is None else election_timeout
        trust_env = any(os.environ.get(name) for name in _REQUESTS_PROXY_ENV)
        if not trust_env:
            verify = environment_verify(verify, os.environ)
        self.client = hvac.Client(url=self.url, verify=verify, timeout=timeout, namespace=namespace,
                                  adapter=hvac.adapters.RawAdapter)
        if not trust_env:
            # No proxy settings: take the CA bundle variables once here and skip requests' scan of every
            # environment variable on each request (a tenth of a bulk rewrap's CPU time).
            self.client.adapter.session.trust_env = False
        if login:
            self._login(auth_method, token, auth_mount_point, role_id, secret_id, kubernetes_role, kubernetes_jwt_file)
        elif token:
            self.client.token = token

    @classmethod
    def from_module(cls, module, login=True):
        """``login=False`` for the unauthenticated sys/init, sys/seal-status and sys/unseal endpoints."""
        # AWX credential injectors set every variable they define, empty when an input was left blank:
        # blank means unset (so e.g. an empty VAULT_KUBERNETES_JWT_FILE keeps the pod's token file).
        params = dict((name, module.params.get(name)) for name in CONNECTION_OPTION_NAMES
                      if module.params.get(name) not in ("", None))
        return cls(login=login, **params)

    # -- authentication -------------------------------------------------------------------------

    def _login(self, auth_method, token, mount, role_id, secret_id, kubernetes_role, jwt_file):
        if auth_method == "token":
            if not token:
                raise VaultModuleError("no Vault token: set the `token` option or VAULT_TOKEN, "
                                       "or choose another `auth_method` (approle, kubernetes)")
            self.client.token = token
            return
        if auth_method == "approle":
            if not role_id or not secret_id:
                raise VaultModuleError("auth_method=approle needs `role_id` and `secret_id` "
                                       "(or VAULT_ROLE_ID / VAULT_SECRET_ID)")
            self._call_login("approle", mount or "approle",
                             lambda m: self.client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=m))
            return
        if auth_method == "kubernetes":
            if not kubernetes_role:
                raise VaultModuleError("auth_method=kubernetes needs `kubernetes_role` (the Vault role to log in as)")
            try:
                with open(jwt_file) as handle:
                    jwt = handle.read().strip()
            except (IOError, OSError) as exc:
                raise VaultModuleError("auth_method=kubernetes: cannot read the service account token %r (%s); "
                                       "set `kubernetes_jwt_file` when not running in a pod" % (jwt_file, exc))
            self._call_login("kubernetes", mount or "kubernetes",
                             lambda m: self.client.auth.kubernetes.login(role=kubernetes_role, jwt=jwt, mount_point=m))
            return
        raise VaultModuleError("unsupported auth_method %r" % auth_method)

    def _call_login(self, method, mount, login):
        path = "auth/%s/login" % mount

        def attempt():
            try:
                login(mount)
            except hvac.exceptions.VaultError as exc:
                status = _status_of(exc)
                errors = "; ".join(exc.errors) if exc.errors else str(exc.args[0] if exc.args else exc)
                if status in (400, 403):
                    raise VaultModuleError("%s login on %s failed: %s (check the role and its credentials, "
                                           "and that auth method %r is mounted at %r)"
                                           % (method, path, errors, method, mount), status=status)
                final = VaultModuleError(explain_failure(status, "POST", path, errors, self.url), status=status)
                if status in RETRY_STATUSES and no_active_node(str(exc)):
                    raise self._election_retry(final)
                if status in RETRY_STATUSES and not _is_sealed_text(str(exc)):
                    raise Retry(final)
                raise final
            except requests.exceptions.RequestException as exc:
                final = VaultModuleError(self._unreachable(exc))
                if election_failure(exc, self.url, True):
                    raise self._election_retry(VaultModuleError(self._no_leader(exc)))
                raise Retry(final)

        self._with_retries(attempt)

    # -- requests -------------------------------------------------------------------------------

    def _with_retries(self, attempt):
        return with_retries(attempt, self.retries, self._sleep, clock=self._clock)

    def _election_retry(self, final):
        """A failure that lasts as long as a leader election: retried for ``election_timeout`` seconds."""
        if not self.election_timeout:
            return Retry(final)  # waiting for elections turned off: the ordinary retries
        return Retry(final, window=self.election_timeout, poll=1.0)

    def _no_leader(self, exc):
        target = getattr(getattr(exc, "request", None), "url", None) or "?"
        return ("cannot reach the active Vault node: %s redirected the request to %s, which did not answer (%s), "
                "for longer than election_timeout (%ss). A standby does this while the cluster elects a new leader "
                "(usually 5-15 s); check the cluster's raft status ('bao operator raft list-peers', sys/leader) and that "
                "a quorum of nodes is up" % (self.url, _origin(target), exc.__class__.__name__, self.election_timeout))

    def _unreachable(self, exc):
        return ("cannot reach Vault at %s: %s. Check `url`/VAULT_ADDR, that the server listens there, "
                "and TLS settings (`ca_cert`, `validate_certs`)" % (self.url, exc.__class__.__name__ + ": " + str(exc)))

    def request(self, method, path, data=None, idempotent=True, capability=None, missing_ok=False,
                retry_statuses=RETRY_STATUSES, explain=None):
        """Send one API call; return the decoded JSON body (``{}`` for 204), or None on 404 with ``missing_ok``.

        ``idempotent=False`` calls (e.g. rotate) are retried only when the request cannot have
        reached Vault (connection refused); callers verify by reading state back instead.
        ``retry_statuses``: the HTTP statuses worth repeating for this call (transit backup/restore
        answer refusals with 500, so they pass the set without 500).  ``explain(status, errors)``: a
        message of the caller's for a failure it understands better (None: the generic one).

        Leader elections: a standby of a raft cluster whose leader died answers every request it would
        forward with a 307 to the dead leader's address for the whole election (6-12 s measured), and
        requests follows it into a refused connection.  That failure, and a standby's "no active node"
        answer, are retried against ``url`` for ``election_timeout`` seconds (:func:`election_failure`).
        """
        url = "/v1/" + path.lstrip("/")
        kwargs = {"json": data} if data is not None else {}

        def attempt():
            try:
                response = self.client.adapter.request(method, url, raise_exception=False, **kwargs)
            except requests.exceptions.ConnectionError as exc:
                if election_failure(exc, self.url, idempotent):
                    raise self._election_retry(VaultModuleError(self._no_leader(exc)))
                # Connection refused/reset before an answer: safe to send again even for rotate,
                # since a refused connection never reached Vault.
                final = VaultModuleError(self._unreachable(exc))
                raise Retry(final) if idempotent or _never_sent(exc) else final
            except requests.exceptions.RequestException as exc:
                final = VaultModuleError(self._unreachable(exc))
                raise Retry(final) if idempotent else final
            return self._answer(response, method, path, idempotent, capability, missing_ok, retry_statuses, explain)

        return self._with_retries(attempt)

    def _answer(self, response, method, path, idempotent, capability, missing_ok, retry_statuses=RETRY_STATUSES,
                explain=None):
        """The decoded body of a response, or the explained error (wrapped in Retry when repeating may help)."""
        status = response.status_code
        if status < 400:
            if status == 204 or not response.content:
                return {}
            try:
                return response.json()
            except ValueError:
                raise VaultModuleError("Vault answered %s %s with a body that is not JSON (HTTP %s)"
                                       % (method.upper(), path, status))
        payload = _json_or_none(response)
        errors = _errors_text(payload, (response.text or "").strip()[:300])
        if status == 404 and missing_ok and "no handler for route" not in errors:
            return None
        sealed = status == 503 and _is_sealed_text(errors)
        msg = (explain and explain(status, errors)) or explain_failure(status, method, path, errors, self.url, capability)
        if status in (500, 503) and no_active_node(errors):
            # A standby that knows of no active node did not act on the request (it could not forward
            # it), so even a rotate may be sent again; the election ends by itself.
            raise self._election_retry(VaultModuleError(msg, status=status))
        if status in retry_statuses and not sealed and idempotent:
            raise Retry(VaultModuleError(msg, status=status))
        if status == 403 and not self._token_valid():
            msg = ("the Vault token was rejected (invalid, expired or revoked) on %s %s: "
                   "log in again or set a valid `token`/VAULT_TOKEN" % (method.upper(), path))
        if sealed:
            raise VaultSealedError(msg, status=status)
        if status == 404 and "no handler for route" in errors:
            raise VaultMountMissingError(msg, status=status)
        raise VaultModuleError(msg, status=status)

    def _token_valid(self):
        """Is the current token itself valid?  Tells a bad token apart from a missing policy."""
        try:
            response = self.client.adapter.request("GET", "/v1/auth/token/lookup-self", raise_exception=False)
        except requests.exceptions.RequestException:
            return True  # cannot tell; keep the permission message
        return response.status_code != 403

    def read(self, path, missing_ok=True):
        body = self.request("GET", path, missing_ok=missing_ok, capability="read")
        return None if body is None else body.get("data")

    def list(self, path):
        body = self.request("LIST", path, missing_ok=True, capability="list")
        if body is None:
            return []
        return list((body.get("data") or {}).get("keys") or [])

    def write(self, path, data=None, idempotent=True):
        return self.request("POST", path, data=data if data is not None else {}, idempotent=idempotent, capability="update")

    def delete(self, path):
        return self.request("DELETE", path, capability="delete")


def _json_or_none(response):
    try:
        return response.json()
    except ValueError:
        return None


def _is_sealed_text(text):
    return "sealed" in (text or "").lower()


def _status_of(exc):
    for status, cls in ((400, "InvalidRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "InvalidPath"),
                        (429, "RateLimitExceeded"), (500, "InternalServerError"), (501, "VaultNotInitialized"),
                        (502, "BadGateway"), (503, "VaultDown")):
        if exc.__class__.__name__ == cls:
            return status
    return None


def _never_sent(exc):
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True  # the TCP connection was never made
    text = str(exc).lower()
    return "refused" in text or "name or service not known" in text or "nodename nor servname" in text


def _origin(url):
    """``scheme://host:port`` of a URL (lower case), the part that names a server."""
    scheme, _separator, rest = (url or "").partition("://")
    return (scheme + "://" + rest.split("/", 1)[0]).lower()


def no_active_node(errors):
    """Is this the answer of a standby that knows of no active node (pure)?"""
    text = (errors or "").lower()
    return any(phrase in text for phrase in _NO_ACTIVE_NODE)


def election_failure(exc, base_url, idempotent):
    """Did this connection error happen while a standby sent us to a leader that is gone (pure)?

    The failed request's URL (``exc.request.url``) tells: when its server is not the one at ``base_url``,
    the server at ``base_url`` answered - with a redirect (a standby during a leader election redirects to
    the dead leader's ``api_addr``) - and the connection to the redirect target failed.

    Safe to repeat?  An idempotent request always.  A non-idempotent one (rotate) only when the
    redirect target never received it (refused, unresolvable, connect timeout): the standby that
    redirected did not act on the request - a 307 means "ask there instead" and a standby forwards
    writes rather than performing them - and the target never saw it, so the request was performed by
    nobody.  A reset or read timeout at the target after the request was sent may have reached a live
    leader: not retried, the caller reads the state back (exactly-once rotation).
    """
    request = getattr(exc, "request", None)
    failed_url = getattr(request, "url", None)
    if not failed_url or _origin(failed_url) == _origin(base_url):
        return False
    return bool(idempotent) or _never_sent(exc)


def run_vault_module(module, work, login=True):
    """Run ``work(connection)`` and turn every expected failure into ``fail_json`` (see ``run_module``)."""
    run_module(module, lambda m: VaultConnection.from_module(m, login=login), work)
