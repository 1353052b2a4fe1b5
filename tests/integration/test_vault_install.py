"""playbooks/vault_install.yml: from nothing to an unsealed OpenBao (raft) with transit, on localhost."""

import json
import os
import stat
import hashlib
import tarfile
import time

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
        started = time.monotonic()
        first = run(tmp_path, vars_path, "-vvv", expect_rc=0)
        print("1-node install+init+unseal+transit: %.1fs" % (time.monotonic() - started))
        address = "http://%s" % data["vault_server_listener"]["address"]
        keys = json.loads(open(data["vault_keys_file"]).read())
        assert stat.S_IMODE(os.stat(data["vault_keys_file"]).st_mode) == 0o600
        server_log = open(os.path.join(data["vault_server_log_dir"], "openbao.log")).read()
        for secret in keys["unseal_keys_b64"] + keys["unseal_keys_hex"] + [keys["root_token"]]:
            assert secret not in first.output, "a key or the root token leaked into -vvv output"
            assert secret not in server_log, "a key or the root token is in the server's log"
        client = hvac.Client(url=address, token=keys["root_token"])
        assert not client.sys.is_sealed()
        assert "transit/" in client.sys.list_mounted_secrets_engines()["data"]
        for directory in ("vault_server_config_dir", "vault_server_data_dir", "vault_server_log_dir", "vault_server_run_dir"):
            assert stat.S_IMODE(os.stat(data[directory]).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(os.path.join(data["vault_server_config_dir"], "openbao.hcl")).st_mode) == 0o640

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
    data, vars_path = install_vars(tmp_path, vault_server_install_method="archive", vault_server_archive_url=str(archive),
                                   vault_server_archive_sha256=bad, vault_server_binary_src="")
    try:
        result = run(tmp_path, vars_path)
        assert result.rc != 0
        assert "checksum" in result.output.lower()
        assert not os.path.exists(os.path.join(data["vault_server_bin_dir"], "bao"))
        assert not os.path.exists(os.path.join(data["vault_server_data_dir"], ".install", "bao"))
    finally:
        stop(data)


def test_openbao_file_storage_is_refused_clearly(tmp_path):
    data, vars_path = install_vars(tmp_path, vault_server_storage={"type": "file", "path": str(tmp_path / "f")})
    result = run(tmp_path, vars_path)
    assert result.rc != 0 and "OpenBao has no file storage" in result.output


def test_pre_1_0_variable_names_are_refused_with_their_new_names(tmp_path):
    data, vars_path = install_vars(tmp_path)
    result = run(tmp_path, vars_path, "-e", "vault_flavor=openbao", "-e", "vault_storage={}")
    assert result.rc != 0
    assert "rename vault_flavor -> vault_server_flavor, vault_storage -> vault_server_storage" in result.output
    assert not os.path.exists(data["vault_server_config_dir"])  # refused before anything was installed


def test_bad_configuration_shows_the_servers_own_error(tmp_path):
    data, vars_path = install_vars(tmp_path, vault_server_extra_config='storage "inmem" {}\n')
    try:
        result = run(tmp_path, vars_path)
        assert result.rc != 0
        # OpenBao's own complaint about the second storage stanza, not just "it did not start".
        assert "exited while starting" in result.output and "storage" in result.output.lower()
    finally:
        stop(data)


def test_kms_plugin_stanza_for_openbao_27(tmp_path):
    """OpenBao >= 2.7 has awskms only as an external plugin: the stanza is rendered as documented (check mode)."""
    data, vars_path = install_vars(
        tmp_path, vault_server_seal={"type": "awskms", "region": "eu-west-1", "kms_key_id": "alias/openbao"},
        vault_server_kms_plugin={"name": "awskms", "command": "openbao-plugin-kms-aws", "sha256sum": "ab" * 32})
    result = run(tmp_path, vars_path, "--check", "--diff", "--tags", "never,all")
    config = result.output
    assert 'plugin "kms" "awskms" {' in config and 'command   = "openbao-plugin-kms-aws"' in config
    assert 'sha256sum = "%s"' % ("ab" * 32) in config and 'seal "awskms" {' in config


def test_tls_listener_and_dedicated_system_user(tmp_path):
    """TLS with a private CA, and a system user created by the role that owns the data and runs the server."""
    import grp
    import pwd
    import subprocess
    import uuid

    from lab.tls import make_ca_and_server_cert

    import tempfile

    user = "kbao%s" % uuid.uuid4().hex[:6]
    # pytest's own tmp directories are private to root; the server's user must reach its files.
    base = tempfile.mkdtemp(prefix="keyops-tls-")
    os.chmod(base, 0o755)
    tls = make_ca_and_server_cert(os.path.join(base, "tls"))
    os.chmod(os.path.join(base, "tls"), 0o755)
    data = lab_install.install_vars(os.path.join(base, "node"), keys_file=str(tmp_path / "secrets" / "init.json"),
                                    vault_server_manage_user=True, vault_server_user=user, vault_server_group=user,
                                    vault_server_client_ca_cert=tls["ca"])
    os.chmod(os.path.join(base, "node"), 0o755)
    os.chmod(data["vault_server_bin_dir"], 0o755)
    vars_path = tmp_path / "vars.json"
    address = data["vault_server_listener"]["address"]
    data["vault_server_listener"].update(tls_disable=False, tls_cert_file=tls["cert"], tls_key_file=tls["key"])
    vars_path.write_text(json.dumps(data))
    os.chmod(tls["key"], 0o644)  # the server runs as the new user and must read its key
    try:
        run(tmp_path, vars_path, expect_rc=0)
        keys = json.loads(open(data["vault_keys_file"]).read())
        client = hvac.Client(url="https://%s" % address, token=keys["root_token"], verify=tls["ca"])
        assert not client.sys.is_sealed() and "transit/" in client.sys.list_mounted_secrets_engines()["data"]
        pid = int(open(os.path.join(data["vault_server_run_dir"], "openbao.pid")).read())
        with open("/proc/%d/status" % pid) as handle:
            uid = [line.split()[1] for line in handle if line.startswith("Uid:")][0]
        assert int(uid) == pwd.getpwnam(user).pw_uid
        assert os.stat(data["vault_server_data_dir"]).st_uid == pwd.getpwnam(user).pw_uid
        assert grp.getgrnam(user).gr_gid == pwd.getpwnam(user).pw_gid
        config = open(os.path.join(data["vault_server_config_dir"], "openbao.hcl")).read()
        assert "tls_disable" not in config and 'tls_cert_file   = "%s"' % tls["cert"] in config
    finally:
        stop(data)
        subprocess.run(["userdel", user], check=False, capture_output=True)
        subprocess.run(["groupdel", user], check=False, capture_output=True)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_postgresql_storage(tmp_path):
    """vault_server_storage type postgresql against a real PostgreSQL on loopback; data survives a restart."""
    from lab.postgres import PostgresServer

    with PostgresServer() as postgres:
        data, vars_path = install_vars(tmp_path, vault_server_storage={"type": "postgresql",
                                                                       "connection_url": postgres.url})
        try:
            run(tmp_path, vars_path, expect_rc=0)
            keys = json.loads(open(data["vault_keys_file"]).read())
            client = hvac.Client(url=lab_install.server_address(data), token=keys["root_token"])
            assert client.sys.read_seal_status()["storage_type"] == "postgresql"
            client.secrets.transit.create_key(name="in-postgres", mount_point="transit")
            stop(data)
            run(tmp_path, vars_path, expect_rc=0)  # restart: started again and unsealed from the keys file
            assert client.secrets.transit.read_key(name="in-postgres", mount_point="transit")["data"]["name"] \
                == "in-postgres"
        finally:
            stop(data)
