"""Bulk forms: vault_transit_keys and vault_transit_rewrap with `consumers`, against real OpenBao."""

from lab import transit_data


def keys_task(keys, **options):
    args = dict(keys=keys)
    args.update(options)
    return {"name": "keys", "keyops.lifecycle.vault_transit_keys": args}


def test_bulk_rotate_check_mode_and_idempotence(ansible, vault_client, transit_mount):
    other = transit_mount + "-b"
    vault_client.sys.enable_secrets_engine("transit", path=other)
    try:
        for mount, name in ((transit_mount, "a"), (transit_mount, "b"), (other, "c")):
            vault_client.secrets.transit.create_key(name=name, mount_point=mount)
        request = [{"name": "a", "rotate": True}, {"name": "b", "rotate_older_than": "1h"},
                   {"name": "c", "mount": other, "rotate": True}]
        check = ansible([keys_task(request, mount=transit_mount)], check=True, diff=True, expect_rc=0).task("keys")
        assert check["changed"] is True
        assert [(k["name"], k["changed"], k["key"]["latest_version"]) for k in check["keys"]] == [
            ("a", True, 2), ("b", False, 1), ("c", True, 2)]
        assert vault_client.secrets.transit.read_key(name="a", mount_point=transit_mount)["data"]["latest_version"] == 1

        run = ansible([keys_task(request, mount=transit_mount)], expect_rc=0).task("keys")
        assert [k["actions"] for k in run["keys"]] == [["rotated to version 2"], [], ["rotated to version 2"]]
        assert vault_client.secrets.transit.read_key(name="c", mount_point=other)["data"]["latest_version"] == 2
        again = ansible([keys_task([{"name": "a", "rotate_older_than": "1h"}], mount=transit_mount)], expect_rc=0)
        assert again.task("keys")["changed"] is False
    finally:
        vault_client.sys.disable_secrets_engine(other)


def test_bulk_refusal_changes_no_key(ansible, vault_client, transit_mount):
    for name in ("a", "b"):
        vault_client.secrets.transit.create_key(name=name, mount_point=transit_mount)
        vault_client.secrets.transit.rotate_key(name=name, mount_point=transit_mount)
    request = [{"name": "a", "rotate": True}, {"name": "b", "min_decryption_version": 2},
               {"name": "missing", "rotate": True}]
    run = ansible([keys_task(request, mount=transit_mount)])
    msg = run.task("keys")["msg"]
    assert run.rc != 0 and msg.startswith("nothing was changed:")
    assert "key b: refusing to raise min_decryption_version from 1 to 2" in msg
    assert "transit key missing does not exist in mount %s" % transit_mount in msg
    assert vault_client.secrets.transit.read_key(name="a", mount_point=transit_mount)["data"]["latest_version"] == 2


def test_bulk_rewrap_reports_each_consumer(ansible, vault, transit_mount, tmp_path):
    client = transit_data.client(vault.address, vault.token)
    for name in ("a", "b"):
        client.adapter.request("POST", "/v1/%s/keys/%s" % (transit_mount, name), json={})
    a_file, b_file = tmp_path / "a.txt", tmp_path / "b.jsonl"
    transit_data.write_lines(a_file, transit_data.encrypt_many(client, transit_mount, "a", ["x", "y"]))
    transit_data.write_lines(b_file, transit_data.encrypt_many(client, transit_mount, "b", ["z"]), field="ct")
    for name in ("a", "b"):
        client.adapter.request("POST", "/v1/%s/keys/%s/rotate" % (transit_mount, name), json={})
    consumers = [{"name": "a", "path": str(a_file)}, {"name": "b", "path": str(b_file), "field": "ct"},
                 {"name": "a", "path": str(tmp_path / "gone.txt")}]
    task = {"name": "bulk", "keyops.lifecycle.vault_transit_rewrap": {
        "mount": transit_mount, "consumers": consumers, "fail_on_error": False}}
    result = ansible([task], expect_rc=0).task("bulk")
    assert [(c["ok"], c["rewrapped"]) for c in result["consumers"]] == [(True, 2), (True, 1), (False, 0)]
    assert "does not exist" in result["consumers"][2]["error"]
    assert transit_data.versions_in(a_file) == [2] and transit_data.versions_in(b_file, "ct") == [2]

    strict = dict(task, **{"keyops.lifecycle.vault_transit_rewrap": dict(task["keyops.lifecycle.vault_transit_rewrap"],
                                                                         fail_on_error=True)})
    run = ansible([strict])
    assert run.rc != 0 and "1 of 3 consumer(s) could not be rewrapped" in run.task("bulk")["msg"]
