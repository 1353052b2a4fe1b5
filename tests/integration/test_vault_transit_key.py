"""vault_transit_key / vault_transit_key_info through real ansible-playbook runs against real OpenBao."""

import time

import hvac
import pytest

from lab.openbao import OpenBaoDevServer

from _ansible import play, run_playbook


def key_task(mount, name="k", **options):
    args = dict(name=name, mount=mount)
    args.update(options)
    return {"name": "key", "keyops.lifecycle.vault_transit_key": args}


def read_key(client, mount, name="k"):
    return client.secrets.transit.read_key(name=name, mount_point=mount)["data"]


def test_create_then_rerun_is_unchanged(ansible, vault_client, transit_mount):
    first = ansible([key_task(transit_mount, type="chacha20-poly1305")], expect_rc=0)
    result = first.task("key")
    assert result["changed"] is True
    assert result["key"]["type"] == "chacha20-poly1305"
    assert result["key"]["latest_version"] == 1
    assert list(result["key"]["versions"]) == ["1"]
    assert result["actions"] == ["created (chacha20-poly1305)"]
    assert read_key(vault_client, transit_mount)["type"] == "chacha20-poly1305"

    second = ansible([key_task(transit_mount, type="chacha20-poly1305")], expect_rc=0)
    assert second.task("key")["changed"] is False
    assert second.task("key")["actions"] == []


def test_every_documented_type_is_accepted_by_openbao(ansible, vault_client, transit_mount):
    from ansible_collections.keyops.lifecycle.plugins.module_utils._transit import KEY_TYPES

    tasks = []
    for key_type in KEY_TYPES:
        options = {"type": key_type}
        if key_type == "hmac":
            options["key_size"] = 32
        tasks.append(dict(key_task(transit_mount, name="t-" + key_type, **options), name=key_type))
    run = ansible(tasks, expect_rc=0)
    for key_type in KEY_TYPES:
        assert run.task(key_type)["key"]["type"] == key_type
        # Asymmetric keys carry public keys in Vault's answer; the result carries none.
        assert "public_key" not in str(run.task(key_type))


def test_check_mode_creates_nothing_and_predicts(ansible, vault_client, transit_mount):
    run = ansible([key_task(transit_mount, rotate=True, deletion_allowed=True)], check=True, diff=True, expect_rc=0)
    result = run.task("key")
    assert result["changed"] is True
    assert result["key"]["latest_version"] == 2
    assert result["actions"] == ["created (aes256-gcm96)", "rotated to version 2",
                                 "configured: deletion_allowed False -> True"]
    assert result["diff"]["before"] == {}
    assert set(result["diff"]["after"]["versions"]) == {"1", "2"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault_client.secrets.transit.read_key(name="k", mount_point=transit_mount)


def test_check_mode_on_existing_key_leaves_vault_untouched(ansible, vault_client, transit_mount):
    ansible([key_task(transit_mount)], expect_rc=0)
    before = read_key(vault_client, transit_mount)
    run = ansible([key_task(transit_mount, rotate=True, min_encryption_version=1, auto_rotate_period="24h")],
                  check=True, expect_rc=0)
    predicted = run.task("key")
    assert predicted["changed"] is True
    assert predicted["key"]["latest_version"] == 2
    assert predicted["key"]["auto_rotate_period"] == 86400
    assert read_key(vault_client, transit_mount) == before
    # The real run then does exactly what check mode predicted.
    real = ansible([key_task(transit_mount, rotate=True, min_encryption_version=1, auto_rotate_period="24h")],
                   expect_rc=0).task("key")
    assert real["actions"] == predicted["actions"]
    for field in ("latest_version", "min_decryption_version", "min_encryption_version", "auto_rotate_period"):
        assert real["key"][field] == predicted["key"][field]


def test_rotate_always_rotates(ansible, vault_client, transit_mount):
    ansible([key_task(transit_mount)], expect_rc=0)
    run = ansible([key_task(transit_mount, rotate=True)], expect_rc=0)
    assert run.task("key")["changed"] is True
    assert run.task("key")["actions"] == ["rotated to version 2"]
    assert read_key(vault_client, transit_mount)["latest_version"] == 2


def test_rotate_older_than_rotates_only_when_due(ansible, vault_client, transit_mount):
    ansible([key_task(transit_mount)], expect_rc=0)
    not_due = ansible([key_task(transit_mount, rotate_older_than="1h")], expect_rc=0)
    assert not_due.task("key")["changed"] is False
    assert read_key(vault_client, transit_mount)["latest_version"] == 1

    time.sleep(2.1)
    due = ansible([key_task(transit_mount, rotate_older_than="2s")], expect_rc=0)
    assert due.task("key")["changed"] is True
    assert read_key(vault_client, transit_mount)["latest_version"] == 2
    # Just rotated: the same schedule is not due again.
    again = ansible([key_task(transit_mount, rotate_older_than="1h")], expect_rc=0)
    assert again.task("key")["changed"] is False


def test_config_changes_and_diff(ansible, vault_client, transit_mount):
    ansible([key_task(transit_mount)], expect_rc=0)
    options = dict(deletion_allowed=True, exportable=True, auto_rotate_period="48h", min_encryption_version=1)
    run = ansible([key_task(transit_mount, **options)], diff=True, expect_rc=0)
    result = run.task("key")
    assert result["changed"] is True
    assert result["diff"]["before"]["deletion_allowed"] is False
    assert result["diff"]["after"]["deletion_allowed"] is True
    assert result["diff"]["after"]["auto_rotate_period"] == 172800
    data = read_key(vault_client, transit_mount)
    assert data["deletion_allowed"] is True and data["exportable"] is True
    assert data["auto_rotate_period"] == 172800 and data["min_encryption_version"] == 1
    assert ansible([key_task(transit_mount, **options)], expect_rc=0).task("key")["changed"] is False

    # exportable cannot be switched off again: a clear refusal, not a silent no-op.
    refused = ansible([key_task(transit_mount, exportable=False)])
    assert refused.rc != 0
    assert "cannot be turned off once enabled" in refused.task("key")["msg"]


def test_guarded_min_decryption_version_and_trim(ansible, vault_client, transit_mount):
    ansible([key_task(transit_mount)] + [key_task(transit_mount, rotate=True)] * 2, expect_rc=0)
    assert read_key(vault_client, transit_mount)["latest_version"] == 3

    refused = ansible([key_task(transit_mount, min_decryption_version=3)])
    assert refused.rc != 0
    msg = refused.task("key")["msg"]
    assert "refusing to raise min_decryption_version from 1 to 3" in msg and "oldest_version_in_use" in msg
    assert read_key(vault_client, transit_mount)["min_decryption_version"] == 1

    too_high = ansible([key_task(transit_mount, min_decryption_version=3, oldest_version_in_use=2)])
    assert too_high.rc != 0
    assert "consumers still use key version 2" in too_high.task("key")["msg"]
    assert read_key(vault_client, transit_mount)["min_decryption_version"] == 1

    allowed = ansible([key_task(transit_mount, min_decryption_version=2, oldest_version_in_use=2)], expect_rc=0)
    assert allowed.task("key")["key"]["min_decryption_version"] == 2
    assert list(allowed.task("key")["key"]["versions"]) == ["2", "3"]

    forced = ansible([key_task(transit_mount, min_decryption_version=3, force=True, min_encryption_version=3,
                               min_available_version=3, irreversible_ok=True)], diff=True, expect_rc=0)
    result = forced.task("key")
    assert result["actions"] == ["configured: min_decryption_version 2 -> 3, min_encryption_version 0 -> 3",
                                 "trimmed versions below 3"]
    data = read_key(vault_client, transit_mount)
    assert data["min_available_version"] == 3 and list(data["keys"]) == ["3"]
    assert ansible([key_task(transit_mount, min_decryption_version=3, min_encryption_version=3,
                             min_available_version=3)], expect_rc=0).task("key")["changed"] is False


def test_trim_without_min_encryption_version_is_explained(ansible, transit_mount):
    ansible([key_task(transit_mount), key_task(transit_mount, rotate=True)], expect_rc=0)
    run = ansible([key_task(transit_mount, min_available_version=2)])
    assert run.rc != 0
    assert "requires min_encryption_version to be set first" in run.task("key")["msg"]


def test_delete_requires_deletion_allowed(ansible, vault_client, transit_mount):
    ansible([key_task(transit_mount)], expect_rc=0)
    refused = ansible([key_task(transit_mount, state="absent")])
    assert refused.rc != 0
    assert "deletion_allowed is false" in refused.task("key")["msg"]
    assert read_key(vault_client, transit_mount)["name"] == "k"

    check = ansible([key_task(transit_mount, state="absent", deletion_allowed=True, irreversible_ok=True)], check=True, expect_rc=0)
    assert check.task("key")["changed"] is True
    assert read_key(vault_client, transit_mount)["name"] == "k"

    deleted = ansible([key_task(transit_mount, state="absent", deletion_allowed=True, irreversible_ok=True)], expect_rc=0)
    assert deleted.task("key")["actions"] == ["configured: deletion_allowed False -> True", "deleted"]
    assert deleted.task("key")["key"] == {}
    again = ansible([key_task(transit_mount, state="absent", deletion_allowed=True, irreversible_ok=True)], expect_rc=0)
    assert again.task("key")["changed"] is False


@pytest.mark.parametrize("options, expected", [
    ({"type": "aes512-gcm"}, "value of type must be one of"),
    ({"min_decryption_version": -1}, "`min_decryption_version` must be 1 or more"),
    ({"min_encryption_version": 9}, "min_encryption_version 9 is above the latest key version 1"),
    ({"rotate_older_than": "soon"}, "`rotate_older_than` must be a duration"),
    ({"auto_rotate_period": "5m"}, "at least 1h"),
    ({"type": "hmac"}, "type hmac needs key_size"),
    ({"rotate": True, "rotate_older_than": "1d"}, "mutually exclusive"),
])
def test_bad_input_fails_clearly(ansible, transit_mount, options, expected):
    if "min_encryption_version" in options:
        ansible([key_task(transit_mount)], expect_rc=0)
    run = ansible([key_task(transit_mount, **options)])
    assert run.rc != 0
    assert expected in run.task("key")["msg"]
    assert "Traceback" not in run.output


def test_type_change_is_refused(ansible, transit_mount):
    ansible([key_task(transit_mount)], expect_rc=0)
    run = ansible([key_task(transit_mount, type="ed25519")])
    assert "a key's type cannot change" in run.task("key")["msg"]


def test_missing_mount_wrong_token_and_bad_address(ansible, vault):
    missing = ansible([key_task("no-such-mount")])
    assert "nothing is mounted at 'no-such-mount/'" in missing.task("key")["msg"]
    bad_token = ansible([key_task("transit")], env={"VAULT_TOKEN": "s.not-a-real-token"})
    assert "the Vault token was rejected" in bad_token.task("key")["msg"]
    unreachable = ansible([key_task("transit", url="http://127.0.0.1:9", retries=1)])
    assert "cannot reach Vault at http://127.0.0.1:9" in unreachable.task("key")["msg"]
    no_token = ansible([key_task("transit")], env={"VAULT_TOKEN": ""})
    assert "no Vault token" in no_token.task("key")["msg"]
    for run in (missing, bad_token, unreachable, no_token):
        assert run.rc != 0 and "Traceback" not in run.output


def test_least_privilege_token_gets_path_and_capability(ansible, vault_client, transit_mount):
    ansible([key_task(transit_mount)], expect_rc=0)
    vault_client.sys.create_or_update_policy(
        name="read-only-" + transit_mount, policy='path "%s/keys/k" { capabilities = ["read"] }' % transit_mount)
    token = vault_client.auth.token.create(policies=["read-only-" + transit_mount], ttl="10m")["auth"]["client_token"]
    run = ansible([key_task(transit_mount, rotate=True)], env={"VAULT_TOKEN": token})
    msg = run.task("key")["msg"]
    assert "permission denied on POST %s/keys/k/rotate" % transit_mount in msg
    assert "'update' capability" in msg


def test_sealed_server_is_reported(tmp_path):
    with OpenBaoDevServer(str(tmp_path / "sealed")) as server:
        client = hvac.Client(url=server.address, token=server.token)
        client.sys.enable_secrets_engine("transit")
        client.sys.seal()
        run = run_playbook(tmp_path, play([key_task("transit", rotate=True)]),
                           env={"VAULT_ADDR": server.address, "VAULT_TOKEN": server.token})
        assert run.rc != 0
        msg = run.task("key")["msg"]
        assert "is sealed" in msg and "unseal it" in msg
        assert "Traceback" not in run.output


def test_module_defaults_action_group_and_approle(tmp_path, vault, vault_client, transit_mount):
    """Connection set once for the group; AppRole login instead of a static token."""
    mount = "approle-" + transit_mount
    vault_client.sys.enable_auth_method("approle", path=mount)
    vault_client.sys.create_or_update_policy(
        name=mount, policy='path "%s/*" { capabilities = ["create", "read", "update", "list"] }' % transit_mount)
    vault_client.auth.approle.create_or_update_approle("rotator", token_policies=[mount], mount_point=mount)
    role_id = vault_client.auth.approle.read_role_id("rotator", mount_point=mount)["data"]["role_id"]
    secret_id = vault_client.auth.approle.generate_secret_id("rotator", mount_point=mount)["data"]["secret_id"]
    defaults = {"group/keyops.lifecycle.vault": {
        "url": vault.address, "auth_method": "approle", "auth_mount_point": mount,
        "role_id": role_id, "secret_id": secret_id}}
    tasks = [
        {"name": "key", "keyops.lifecycle.vault_transit_key": {"name": "k", "mount": transit_mount}},
        {"name": "info", "keyops.lifecycle.vault_transit_key_info": {"mount": transit_mount}},
    ]
    run = run_playbook(tmp_path, play(tasks, module_defaults=defaults), verbosity=3, expect_rc=0)
    assert run.task("key")["changed"] is True
    assert [k["name"] for k in run.task("info")["keys"]] == ["k"]
    assert secret_id not in run.output

    bad = dict(defaults["group/keyops.lifecycle.vault"], secret_id="00000000-0000-0000-0000-000000000000")
    failed = run_playbook(tmp_path, play(tasks[:1], module_defaults={"group/keyops.lifecycle.vault": bad}))
    assert "approle login on auth/%s/login failed" % mount in failed.task("key")["msg"]
    vault_client.sys.disable_auth_method(mount)


def test_info_one_all_and_missing(ansible, transit_mount):
    ansible([key_task(transit_mount, name="b"), key_task(transit_mount, name="a")], expect_rc=0)
    run = ansible([
        {"name": "all", "keyops.lifecycle.vault_transit_key_info": {"mount": transit_mount}},
        {"name": "one", "keyops.lifecycle.vault_transit_key_info": {"mount": transit_mount, "name": "a"}},
        {"name": "missing", "keyops.lifecycle.vault_transit_key_info": {"mount": transit_mount, "name": "zz"}},
    ], check=True, expect_rc=0)
    assert [k["name"] for k in run.task("all")["keys"]] == ["a", "b"]
    assert run.task("one")["key"]["name"] == "a" and run.task("one")["exists"] is True
    assert run.task("missing")["exists"] is False and run.task("missing")["keys"] == []


def test_verbose_output_never_shows_the_token_or_ciphertext(tmp_path, vault, vault_client, transit_mount):
    """-vvv prints module arguments; the token (given as a parameter here) must be masked."""
    vault_client.secrets.transit.create_key(name="k", mount_point=transit_mount)
    ciphertext = vault_client.secrets.transit.encrypt_data(
        name="k", plaintext="c2VjcmV0", mount_point=transit_mount)["data"]["ciphertext"]
    tasks = [
        {"name": "key", "keyops.lifecycle.vault_transit_key": {
            "name": "k", "mount": transit_mount, "url": vault.address, "token": vault.token, "rotate": True}},
        {"name": "info", "keyops.lifecycle.vault_transit_key_info": {
            "name": "k", "mount": transit_mount, "url": vault.address, "token": vault.token}},
    ]
    run = run_playbook(tmp_path, play(tasks), verbosity=3, diff=True, expect_rc=0)
    assert run.task("key")["changed"] is True
    assert vault.token not in run.output
    assert ciphertext not in run.output and ciphertext.split(":")[-1] not in run.output
    assert vault.token not in "".join(str(entry) for entry in run.results)
