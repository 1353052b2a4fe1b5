"""vault_init / vault_unseal against real OpenBao servers with raft storage (not dev mode)."""

import json
import os
import stat

import hvac
import pytest

from lab.openbao import OpenBaoRaftServer

from _ansible import play, run_playbook


@pytest.fixture()
def server(tmp_path):
    with OpenBaoRaftServer(str(tmp_path / "node")) as node:
        yield node


def init_task(server, keys_file=None, **options):
    args = dict(url=server.address, secret_shares=3, secret_threshold=2)
    if keys_file:
        args["keys_file"] = str(keys_file)
    args.update(options)
    return {"name": "init", "keyops.lifecycle.vault_init": args}


def unseal_task(server, **options):
    args = dict(url=server.address)
    args.update(options)
    return {"name": "unseal", "keyops.lifecycle.vault_unseal": args}


def client(server, token=None):
    return hvac.Client(url=server.address, token=token)


def secrets_in(keys_file):
    document = json.loads(open(keys_file).read())
    return document["unseal_keys_b64"] + document["unseal_keys_hex"] + [document["root_token"]]


@pytest.mark.compat
def test_init_writes_private_keys_file_once_then_unseal(server, tmp_path):
    keys_file = tmp_path / "secrets" / "init.json"
    check = run_playbook(tmp_path, play([init_task(server, keys_file)]), check=True, expect_rc=0)
    assert check.task("init")["changed"] is True
    assert client(server).sys.is_initialized() is False and not keys_file.exists()

    run = run_playbook(tmp_path, play([init_task(server, keys_file), unseal_task(server, keys_file=str(keys_file))]),
                       verbosity=3, diff=True, expect_rc=0)
    assert run.task("init") == {**run.task("init"), "changed": True, "initialized": True, "keys_file": str(keys_file)}
    assert stat.S_IMODE(os.stat(keys_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys_file.parent).st_mode) == 0o700
    document = json.loads(keys_file.read_text())
    assert len(document["unseal_keys_b64"]) == 3 and document["unseal_threshold"] == 2
    unseal = run.task("unseal")
    assert unseal["changed"] is True and unseal["sealed"] is False and unseal["keys_used"] == 2
    # The keys file is the only place the keys exist: nothing in -vvv output or results.
    for secret in secrets_in(keys_file):
        assert secret not in run.output
        assert secret not in json.dumps(run.results)
    root = client(server, document["root_token"])
    root.sys.enable_secrets_engine("transit")
    root.secrets.transit.create_key(name="k")
    assert not [name for name in os.listdir(keys_file.parent) if name != "init.json"]  # no temp files left

    again = run_playbook(tmp_path, play([init_task(server, keys_file), unseal_task(server, keys_file=str(keys_file))]),
                         expect_rc=0)
    assert again.task("init")["changed"] is False and again.task("unseal")["changed"] is False
    assert json.loads(keys_file.read_text()) == document  # never re-initialised, never rewritten


def test_init_refusals_leave_the_server_uninitialised(server, tmp_path):
    nowhere = run_playbook(tmp_path, play([init_task(server)]))
    assert "nowhere to keep the unseal keys" in nowhere.task("init")["msg"]
    bad_threshold = run_playbook(tmp_path, play([init_task(server, tmp_path / "k.json", secret_threshold=5)]))
    assert "secret_threshold must be between 1 and secret_shares" in bad_threshold.task("init")["msg"]
    existing = tmp_path / "old.json"
    existing.write_text('{"unseal_keys_b64": ["someone-elses"]}')
    clash = run_playbook(tmp_path, play([init_task(server, existing)]))
    assert "already exists and the server is not initialised" in clash.task("init")["msg"]
    assert existing.read_text() == '{"unseal_keys_b64": ["someone-elses"]}'
    for run in (nowhere, bad_threshold, clash):
        assert run.rc != 0 and "Traceback" not in run.output
    assert client(server).sys.is_initialized() is False


def test_unseal_with_wrong_keys_and_with_foreign_progress(tmp_path):
    with OpenBaoRaftServer(str(tmp_path / "a")) as first, OpenBaoRaftServer(str(tmp_path / "b")) as second:
        keys_a, keys_b = tmp_path / "a.json", tmp_path / "b.json"
        run_playbook(tmp_path, play([init_task(first, keys_a), init_task(second, keys_b)]), expect_rc=0)

        wrong = run_playbook(tmp_path, play([unseal_task(first, keys_file=str(keys_b))]))
        assert wrong.rc != 0 and "do not unseal" in wrong.task("unseal")["msg"]
        assert client(first).sys.is_sealed() is True

        # Someone fed a stranger's share: our keys still unseal (Vault resets the failed round itself).
        foreign = json.loads(keys_b.read_text())["unseal_keys_b64"][0]
        client(first).sys.submit_unseal_key(foreign)
        assert client(first).sys.read_seal_status()["progress"] == 1
        keys = json.loads(keys_a.read_text())["unseal_keys_b64"]
        ok = run_playbook(tmp_path, play([unseal_task(first, keys=keys)]), verbosity=3, expect_rc=0)
        assert ok.task("unseal")["sealed"] is False
        assert not any(key in ok.output for key in keys)

        bad_format = run_playbook(tmp_path, play([unseal_task(second, keys=["not base64!"])]))
        assert "unseal key #1 was refused" in bad_format.task("unseal")["msg"]


def test_unseal_before_init_is_explained(server, tmp_path):
    run = run_playbook(tmp_path, play([unseal_task(server, keys=["AAAA"])]))
    assert run.rc != 0 and "is not initialised: run keyops.lifecycle.vault_init first" in run.task("unseal")["msg"]


def test_pgp_encrypted_init_returns_only_encrypted_shares(server, tmp_path):
    """With pgp_keys there is no keys file: shares and root token come back encrypted to the given key."""
    import base64
    import subprocess

    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "keyops <ops@keyops.invalid>",
                    "default", "default", "never"], env=env, check=True, capture_output=True)
    public = base64.b64encode(subprocess.run(["gpg", "--export", "ops@keyops.invalid"], env=env, check=True,
                                             capture_output=True).stdout).decode()
    run = run_playbook(tmp_path, play([init_task(server, secret_shares=1, secret_threshold=1, pgp_keys=[public],
                                                 root_token_pgp_key=public)]), expect_rc=0)
    result = run.task("init")
    assert "keys_file" not in result and len(result["keys_pgp"]) == 1 and result["root_token_pgp"]

    def decrypt(value):
        return subprocess.run(["gpg", "--batch", "--decrypt"], input=base64.b64decode(value), env=env, check=True,
                              capture_output=True).stdout.decode().strip()

    try:
        key, root_token = decrypt(result["keys_pgp"][0]), decrypt(result["root_token_pgp"])
    finally:
        # gpg leaves an agent running for this GNUPGHOME; stop it with the test.
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False, capture_output=True)
    assert key not in run.output and root_token not in run.output
    unsealed = run_playbook(tmp_path, play([unseal_task(server, keys=[key])]), expect_rc=0).task("unseal")
    assert unsealed["sealed"] is False
    assert client(server, root_token).auth.token.lookup_self()["data"]["policies"] == ["root"]
