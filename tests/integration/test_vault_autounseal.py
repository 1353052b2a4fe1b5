"""Auto-unseal through vault_install.yml: the transit seal (OpenBao unsealing OpenBao) and awskms on moto."""

import json
import os
import signal
import time

import hvac

from lab import install as lab_install
from lab.kms import FAKE_CREDENTIALS, MotoKMSServer
from lab.openbao import OpenBaoDevServer, versioned_binary

from _ansible import ROOT, ansible_playbook

INSTALL = os.path.join(ROOT, "playbooks", "vault_install.yml")


def install(tmp_path, data, name):
    vars_path = tmp_path / ("%s-vars.json" % name)
    vars_path.write_text(json.dumps(data))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("localhost ansible_connection=local\n")
    return ansible_playbook(INSTALL, tmp_path / ("%s.jsonl" % name), inventory=str(inventory),
                            args=["-e", "@%s" % vars_path], expect_rc=0)


def crash_and_reinstall(tmp_path, data):
    """SIGKILL the server, run the playbook again: it must come back unsealed without any key fed."""
    pid_file = os.path.join(data["vault_server_run_dir"], "openbao.pid")
    os.kill(int(open(pid_file).read()), signal.SIGKILL)
    time.sleep(0.5)
    run = install(tmp_path, data, "again")
    for task in ("Unseal the first node", "Unseal every other node once it has joined the cluster"):
        assert run.status(task) == "skipped"
    client = hvac.Client(url=lab_install.server_address(data))
    deadline = time.monotonic() + 30
    while client.sys.is_sealed() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not client.sys.is_sealed()
    return run


def test_transit_seal_recovery_keys_and_restart(tmp_path):
    with OpenBaoDevServer(str(tmp_path / "unsealer")) as unsealer:
        root = hvac.Client(url=unsealer.address, token=unsealer.token)
        root.sys.enable_secrets_engine("transit")
        root.secrets.transit.create_key(name="autounseal")
        root.sys.create_or_update_policy(name="autounseal", policy=(
            'path "transit/encrypt/autounseal" { capabilities = ["update"] }\n'
            'path "transit/decrypt/autounseal" { capabilities = ["update"] }\n'))
        seal_token = root.auth.token.create(policies=["autounseal"], period="24h")["auth"]["client_token"]
        data = lab_install.install_vars(str(tmp_path / "node"), vault_server_seal={
            "type": "transit", "address": unsealer.address, "token": seal_token, "key_name": "autounseal",
            "mount_path": "transit/"})
        try:
            first = install(tmp_path, data, "first")
            assert seal_token not in first.output
            keys = json.loads(open(data["vault_keys_file"]).read())
            assert len(keys["recovery_keys_b64"]) == 1 and keys["unseal_keys_b64"] == []
            client = hvac.Client(url=lab_install.server_address(data), token=keys["root_token"])
            assert client.sys.read_seal_status()["type"] == "transit" and not client.sys.is_sealed()
            assert "transit/" in client.sys.list_mounted_secrets_engines()["data"]
            crash_and_reinstall(tmp_path, data)
        finally:
            lab_install.stop_server(data)


def test_awskms_seal_on_moto_with_openbao_262(tmp_path):
    with MotoKMSServer(str(tmp_path / "moto")) as kms:
        key_id = kms.create_key("openbao auto-unseal")
        data = lab_install.install_vars(
            str(tmp_path / "node"), vault_server_binary_src=versioned_binary("2.6.2"),
            vault_server_seal={"type": "awskms", "region": FAKE_CREDENTIALS["AWS_REGION"], "kms_key_id": key_id,
                               "endpoint": kms.endpoint},
            vault_server_service_environment=FAKE_CREDENTIALS)
        try:
            install(tmp_path, data, "first")
            keys = json.loads(open(data["vault_keys_file"]).read())
            client = hvac.Client(url=lab_install.server_address(data), token=keys["root_token"])
            status = client.sys.read_seal_status()
            assert status["type"] == "awskms" and status["version"] == "2.6.2" and not status["sealed"]
            preflight_seal_check(tmp_path, data, keys["root_token"])
            crash_and_reinstall(tmp_path, data)
        finally:
            lab_install.stop_server(data)


def preflight_seal_check(tmp_path, data, root_token):
    """The upgrade preflight on this 2.6.2 server: built-in awskms seal -> broken for 2.7.x, ok for 2.6.x."""
    config_file = os.path.join(data["vault_server_config_dir"], "openbao.hcl")
    env = {"VAULT_ADDR": lab_install.server_address(data), "VAULT_TOKEN": root_token}
    for target, expected in (("2.7.2", "broken"), ("2.6.1", "ok")):
        playbook = tmp_path / ("preflight-%s.yml" % target)
        playbook.write_text(json.dumps([{"name": "preflight", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "preflight", "ansible.builtin.include_role": {"name": "keyops.lifecycle.vault_upgrade_preflight"},
             "vars": {"vault_upgrade_preflight_target_version": target,
                      "vault_upgrade_preflight_config_file": config_file, "vault_upgrade_preflight_fail": False}},
            {"name": "report", "ansible.builtin.debug": {"var": "vault_upgrade_preflight_seal_storage"}}]}]))
        inventory = tmp_path / "hosts.ini"
        run = ansible_playbook(playbook, tmp_path / ("preflight-%s.jsonl" % target), inventory=str(inventory),
                               env=env, expect_rc=0)
        report = run.task("report")["vault_upgrade_preflight_seal_storage"]
        assert report["status"] == expected and report["current_version"] == "2.6.2", report
        if expected == "broken":
            assert "awskms" in report["findings"][0] and "KMS plugin" in report["findings"][0]
