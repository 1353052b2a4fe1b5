"""Faults injected against the real servers: each one recovered, or reported clearly with nothing lost.

OpenBao: a real raft server behind lab.faultproxy (a standby answering 429/503, answers slower than the
client's timeout, dropped connections, the server sealed in the middle of a rotation).  Kubernetes: the
lab API server's scripted faults (409 Conflict, 410 Gone, 429, 503) under the K10 modules.
"""

import time

import hvac
import pytest
import requests

from reliability_counts import count
from lab.faultproxy import FaultProxy
from lab.kube_lab import KubeLab, lab_operation
from lab.openbao import OpenBaoRaftServer

from _ansible import play, run_playbook
from rotation_helpers import Rotation

SUITE = "faults"


class Vault:
    """An initialised, unsealed raft server and a proxy in front of it."""

    def __init__(self, server, proxy, root_token, unseal_key):
        self.server, self.proxy = server, proxy
        self.token, self.unseal_key = root_token, unseal_key
        self.address = proxy.address  # what the modules talk to
        self.env = {"VAULT_ADDR": proxy.address, "VAULT_TOKEN": root_token}

    def client(self, token=None):
        return hvac.Client(url=self.server.address, token=token or self.token)

    def seal(self):
        self.client().sys.seal()

    def unseal(self):
        client = hvac.Client(url=self.server.address)
        client.sys.submit_unseal_key(self.unseal_key)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.server.address + "/v1/sys/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("OpenBao did not become active after unseal")


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults-openbao")
    with OpenBaoRaftServer(str(workdir / "node")) as server:
        client = hvac.Client(url=server.address)
        init = client.sys.initialize(secret_shares=1, secret_threshold=1)
        client.sys.submit_unseal_key(init["keys"][0])
        with FaultProxy(server.address) as proxy:
            target = Vault(server, proxy, init["root_token"], init["keys"][0])
            target.unseal()
            target.client().sys.enable_secrets_engine("transit", path="transit")
            yield target


@pytest.fixture()
def proxy(vault):
    vault.proxy.clear()
    yield vault.proxy
    vault.proxy.clear()


def run(tmp_path, vault, tasks, **kwargs):
    return run_playbook(tmp_path, play(tasks), env=vault.env, verbosity=kwargs.pop("verbosity", 3), **kwargs)


def assert_clear_failure(result, *words):
    """Failed through fail_json with a message naming the problem - no traceback, no module crash."""
    assert result.rc != 0, result.output
    assert "Traceback" not in result.output and "MODULE FAILURE" not in result.output, result.output[-3000:]
    failed = [entry["result"] for entry in result.results if entry["status"] == "failed"]
    # ansible-core 2.19 puts "(traceback unavailable)" in every fail_json result; a crash carries a real one.
    assert failed and "Traceback (most recent call last)" not in str(failed[-1].get("exception", "")), failed
    message = failed[-1].get("msg", "")
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def new_key(vault, name):
    vault.client().secrets.transit.create_key(name, mount_point="transit")
    return name


def key_state(vault, name):
    data = vault.client().secrets.transit.read_key(name, mount_point="transit")["data"]
    return data["latest_version"], data["min_decryption_version"]


@pytest.mark.parametrize("status", [429, 503])
def test_standby_answers_retried_then_succeed(vault, proxy, tmp_path, status):
    name = new_key(vault, "retry-%d" % status)
    proxy.inject(status=status, times=2, method="GET", path="/v1/transit/keys/" + name)
    result = run(tmp_path, vault, [{"name": "read", "keyops.lifecycle.vault_transit_key_info": {"name": name}}])
    assert result.rc == 0, result.output
    assert [answer for _m, _p, answer in proxy.log].count(status) == 2
    count(SUITE, "injected")
    count(SUITE, "recovered")


def test_persistent_503_on_rotate_is_reported_and_nothing_changes(vault, proxy, tmp_path):
    name = new_key(vault, "no-double-rotate")
    proxy.inject(status=503, times=10, method="POST", path="/rotate")
    result = run(tmp_path, vault, [{"name": "rotate", "keyops.lifecycle.vault_transit_key": {
        "name": name, "rotate": True}}])
    assert_clear_failure(result, "503")
    # rotate is not idempotent: it is not blindly re-sent, and the key is untouched.
    assert [m for m, p, _a in proxy.log if p.endswith("/rotate")] == ["POST"]
    assert key_state(vault, name) == (1, 1)
    proxy.clear()
    again = run(tmp_path, vault, [{"name": "rotate", "keyops.lifecycle.vault_transit_key": {
        "name": name, "rotate": True}}])
    assert again.rc == 0 and key_state(vault, name) == (2, 1)
    count(SUITE, "injected")
    count(SUITE, "reported")


def test_answer_slower_than_the_timeout(vault, proxy, tmp_path):
    name = new_key(vault, "slow")
    proxy.inject(delay=4.0, times=10, method="GET", path="/v1/transit/keys/" + name)
    result = run(tmp_path, vault, [{"name": "read", "keyops.lifecycle.vault_transit_key_info": {
        "name": name, "timeout": 1, "retries": 1}}])
    assert_clear_failure(result, "cannot reach vault")
    count(SUITE, "injected")
    count(SUITE, "reported")


def test_dropped_connection_on_a_read_is_retried(vault, proxy, tmp_path):
    name = new_key(vault, "dropped")
    proxy.inject(drop=True, times=1, method="GET", path="/v1/transit/keys/" + name)
    result = run(tmp_path, vault, [{"name": "read", "keyops.lifecycle.vault_transit_key_info": {"name": name}}])
    assert result.rc == 0, result.output
    assert ("GET", "/v1/transit/keys/" + name, "dropped") in proxy.log
    count(SUITE, "injected")
    count(SUITE, "recovered")


def test_sealed_in_the_middle_of_a_rotation(vault, proxy, tmp_path):
    """Sealed when step 2 starts rewrapping: the job stops with 'sealed', every ciphertext still decrypts and
    min_decryption_version stays down; after unseal, a re-run completes the rotation."""
    mount = "transit-sealed"
    vault.client().sys.enable_secrets_engine("transit", path=mount)
    target = type("Target", (), {"address": vault.address, "token": vault.token, "env": vault.env})()
    rotation = Rotation(target, mount, tmp_path, {"sealed": ([20, 10], "secret")})
    proxy.inject(action=vault.seal, times=1, method="POST", path="/v1/%s/rewrap/" % mount)
    try:
        broken = rotation.run()
        assert broken.rc != 0
        assert "sealed" in broken.output.lower() and "Traceback" not in broken.output
        count(SUITE, "injected")
    finally:
        vault.unseal()
    rotation.check_all_decryptable()
    _latest, minimum = key_state_at(vault, mount, "sealed")
    assert minimum == 1, "min_decryption_version was raised although the consumer was not rewrapped"
    rotation.run(expect_rc=0)
    rotation.check_complete()
    count(SUITE, "reported")
    count(SUITE, "recovered_by_rerun")


def key_state_at(vault, mount, name):
    data = vault.client().secrets.transit.read_key(name, mount_point=mount)["data"]
    return data["latest_version"], data["min_decryption_version"]


# -- Kubernetes ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k10(tmp_path_factory, vault):
    workdir = tmp_path_factory.mktemp("faults-kube")
    with KubeLab(str(workdir), vault_address=vault.server.address, vault_token=vault.token,
                 refresh_seconds=0.3) as lab:
        yield lab


def faults(lab, *entries):
    lab_operation(lab.kubeconfig_path, "lab-source", "faults", {"faults": list(entries)})


def k8s_run(tmp_path, lab, tasks, vault):
    env = dict(vault.env, K8S_AUTH_KUBECONFIG=lab.kubeconfig_path, K8S_AUTH_CONTEXT="lab-source")
    return run_playbook(tmp_path, play(tasks), env=env, verbosity=3)


@pytest.mark.parametrize("status", [429, 503])
def test_kubernetes_throttling_is_retried(k10, vault, tmp_path, status):
    faults(k10, {"method": "GET", "path": "passkeys", "status": status, "reason": "TooManyRequests", "times": 2})
    result = k8s_run(tmp_path, k10, [{"name": "info", "keyops.lifecycle.k10_passkey_info": {}}], vault)
    faults(k10)
    assert result.rc == 0, result.output
    count(SUITE, "injected")
    count(SUITE, "recovered")


def test_kubernetes_conflict_is_explained_and_a_rerun_completes(k10, vault, tmp_path):
    """409 on the import policy update (someone else changed it): reported, the string is not half-written."""
    task = {"name": "propagate", "keyops.lifecycle.k10_import_policy": {
        "context": "lab-destination", "name": "lab-import",
        "source": {"context": "lab-source", "policy": "lab-export"}, "run": False}}
    lab_operation(k10.kubeconfig_path, "lab-source", "k10/upgrade")  # the destination's string is now stale
    lab_operation(k10.kubeconfig_path, "lab-destination", "faults", {"faults": [
        {"method": "PATCH", "path": "policies/lab-import", "status": 409, "reason": "Conflict",
         "message": "the object has been modified", "times": 1},
        {"method": "PUT", "path": "policies/lab-import", "status": 409, "reason": "Conflict",
         "message": "the object has been modified", "times": 1}]})
    env = dict(vault.env, K8S_AUTH_KUBECONFIG=k10.kubeconfig_path)
    result = run_playbook(tmp_path, play([task]), env=env, verbosity=3)
    assert_clear_failure(result, "changed while this task ran", "run it again")
    lab_operation(k10.kubeconfig_path, "lab-destination", "faults", {"faults": []})
    again = run_playbook(tmp_path, play([task]), env=env, verbosity=3)
    assert again.rc == 0 and again.task("propagate")["receive_string_changed"], again.output
    count(SUITE, "injected")
    count(SUITE, "reported")
    count(SUITE, "recovered_by_rerun")


def test_kubernetes_gone_is_reported_clearly(k10, vault, tmp_path):
    faults(k10, {"method": "GET", "path": "passkeys", "status": 410, "reason": "Expired",
                 "message": "too old resource version", "times": 5})
    result = k8s_run(tmp_path, k10, [{"name": "info", "keyops.lifecycle.k10_passkey_info": {}}], vault)
    faults(k10)
    assert_clear_failure(result, "410")
    count(SUITE, "injected")
    count(SUITE, "reported")


def test_kubernetes_answer_slower_than_the_timeout(k10, vault, tmp_path):
    """Slow answers: a read is retried (a few slow answers recover); always slow is reported, in bounded time."""
    faults(k10, {"method": "GET", "path": "passkeys", "delay": 2, "times": 2})
    recovered = k8s_run(tmp_path, k10, [{"name": "info", "keyops.lifecycle.k10_passkey_info": {
        "request_timeout": 1}}], vault)
    assert recovered.rc == 0, recovered.output
    count(SUITE, "injected")
    count(SUITE, "recovered")
    faults(k10, {"method": "GET", "path": "passkeys", "delay": 2, "times": 1000})
    start = time.monotonic()
    result = k8s_run(tmp_path, k10, [{"name": "info", "keyops.lifecycle.k10_passkey_info": {"request_timeout": 1}}], vault)
    faults(k10)
    assert_clear_failure(result)
    assert time.monotonic() - start < 60
    count(SUITE, "injected")
    count(SUITE, "reported")
