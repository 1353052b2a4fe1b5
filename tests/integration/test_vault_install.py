"""playbooks/vault_install.yml: from nothing to an unsealed OpenBao (raft) with transit, on localhost."""

import json
import os
import stat
import hashlib
import tarfile

import hvac

from lab import install as lab_install
from lab.openbao import bao_binary

from _ansible import ROOT, ansible_playbook

PLAYBOOK = os.path.join(ROOT, "playbooks", "vault_install.yml")


def install_vars(tmp_path, **extra):
    data = lab_install.install_vars(str(tmp_path / "node"), keys_file=str(tmp_path / "secrets" / "init.json"),
                                    **extra)
    path = tmp_path / "vars.json"
    path.write_text(json.dumps(data))
    return data, path


def run(tmp_path, vars_path, *args, **kwargs):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("localhost ansible_connection=local\n")
    return ansible_playbook(PLAYBOOK, tmp_path / "install.jsonl", args=["-e", "@%s" % vars_path] + list(args),
                            inventory=str(inventory), **kwargs)


stop = lab_install.stop_server


def test_install_init_unseal_transit_then_nothing_changes(tmp_path):
    data, vars_path = install_vars(tmp_path)
    try:
        first = run(tmp_path, vars_path, "-vvv", expect_rc=0)
        address = "http://%s" % data["vault_listener"]["address"]
        keys = json.loads(open(data["vault_keys_file"]).read())
        assert stat.S_IMODE(os.stat(data["vault_keys_file"]).st_mode) == 0o600
        for secret in keys["unseal_keys_b64"] + [keys["root_token"]]:
            assert secret not in first.output, "a key or the root token leaked into -vvv output"
        client = hvac.Client(url=address, token=keys["root_token"])
        assert not client.sys.is_sealed()
        assert "transit/" in client.sys.list_mounted_secrets_engines()["data"]
        for directory in ("vault_config_dir", "vault_data_dir", "vault_log_dir", "vault_run_dir"):
            assert stat.S_IMODE(os.stat(data[directory]).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(os.path.join(data["vault_config_dir"], "openbao.hcl")).st_mode) == 0o640

        second = run(tmp_path, vars_path, expect_rc=0)
        assert "changed=0" in second.stdout.split("PLAY RECAP")[1], second.stdout
        assert json.loads(open(data["vault_keys_file"]).read()) == keys  # never re-initialised
    finally:
        stop(data)


def test_archive_checksum_mismatch_refuses_to_install(tmp_path):
    archive = tmp_path / "openbao.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bao_binary(), arcname="bao")
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    data, vars_path = install_vars(tmp_path, vault_install_method="archive", vault_archive_url=str(archive),
                                   vault_archive_sha256=bad, vault_binary_src="")
    try:
        result = run(tmp_path, vars_path)
        assert result.rc != 0
        assert "checksum" in result.output.lower()
        assert not os.path.exists(os.path.join(data["vault_bin_dir"], "bao"))
        assert not os.path.exists(os.path.join(data["vault_data_dir"], ".install", "bao"))
    finally:
        stop(data)


def test_openbao_file_storage_is_refused_clearly(tmp_path):
    data, vars_path = install_vars(tmp_path, vault_storage={"type": "file", "path": str(tmp_path / "f")})
    result = run(tmp_path, vars_path)
    assert result.rc != 0 and "OpenBao has no file storage" in result.output
