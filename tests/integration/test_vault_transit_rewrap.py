"""vault_transit_rewrap against real OpenBao through ansible-playbook."""

import base64
import json
import os
import stat
import subprocess

from lab import transit_data

from _ansible import ANSIBLE_PYTHON, BIN, play


def rewrap_task(mount, path, name="k", **options):
    args = dict(name=name, mount=mount, path=str(path))
    args.update(options)
    return {"name": "rewrap", "keyops.lifecycle.vault_transit_rewrap": args}


def make_key(vault, mount, name="k", rotations=0):
    client = transit_data.client(vault.address, vault.token)
    client.adapter.request("POST", "/v1/%s/keys/%s" % (mount, name), json={})
    for _rotation in range(rotations):
        client.adapter.request("POST", "/v1/%s/keys/%s/rotate" % (mount, name), json={})
    return client


def seed_versions(client, mount, name, counts, prefix="p"):
    """Encrypt counts[i] values while the key is at version i+1 (rotating in between)."""
    values, ciphertexts = [], []
    for index, count in enumerate(counts):
        if index:
            client.adapter.request("POST", "/v1/%s/keys/%s/rotate" % (mount, name), json={})
        batch = transit_data.plaintexts(count, "%s%d" % (prefix, index))
        values += batch
        ciphertexts += transit_data.encrypt_many(client, mount, name, batch)
    return values, ciphertexts


def test_plain_file_rewrap_idempotent_and_decryptable(ansible, vault, transit_mount, tmp_path):
    client = make_key(vault, transit_mount)
    values, ciphertexts = seed_versions(client, transit_mount, "k", [700, 300, 5])
    path = tmp_path / "consumer.txt"
    transit_data.write_lines(path, ciphertexts)
    os.chmod(path, 0o640)

    check = ansible([rewrap_task(transit_mount, path)], check=True, diff=True, expect_rc=0).task("rewrap")
    assert check["changed"] is True and check["census_before"] == {"1": 700, "2": 300, "3": 5}
    assert check["rewrapped"] == 1000 and check["oldest_version_in_use"] == 1
    assert transit_data.read_ciphertexts(path) == ciphertexts  # check mode wrote nothing

    run = ansible([rewrap_task(transit_mount, path, batch_size=97)], diff=True, expect_rc=0)
    result = run.task("rewrap")
    assert result["changed"] is True and result["rewrapped"] == 1000
    assert result["census_after"] == {"3": 1005} and result["oldest_version_in_use"] == 3
    assert result["diff"]["after"] == {"census": {"3": 1005}}
    assert transit_data.versions_in(path) == [3]
    assert transit_data.decrypt_many(client, transit_mount, "k", transit_data.read_ciphertexts(path)) == values
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert not any(ct in run.output for ct in ciphertexts[:50])

    again = ansible([rewrap_task(transit_mount, path)], expect_rc=0).task("rewrap")
    assert again["changed"] is False and again["rewrapped"] == 0


def test_json_lines_keep_other_fields(ansible, vault, transit_mount, tmp_path):
    client = make_key(vault, transit_mount)
    values, ciphertexts = seed_versions(client, transit_mount, "k", [50, 50])
    path = tmp_path / "records.jsonl"
    transit_data.write_lines(path, ciphertexts, field="secret", extra={"owner": "ops", "note": "ünïcode"})
    original = path.read_text().splitlines()
    result = ansible([rewrap_task(transit_mount, path, field="secret", backup=True)], expect_rc=0).task("rewrap")
    assert result["census_after"] == {"2": 100}
    assert os.path.exists(result["backup_file"]) and open(result["backup_file"]).read().splitlines() == original
    for before, after in zip(original, path.read_text().splitlines()):
        doc_before, doc_after = json.loads(before), json.loads(after)
        assert {k: v for k, v in doc_before.items() if k != "secret"} == {k: v for k, v in doc_after.items() if k != "secret"}
    assert transit_data.decrypt_many(client, transit_mount, "k", transit_data.read_ciphertexts(path, "secret")) == values


def test_malformed_line_and_foreign_ciphertext_write_nothing(ansible, vault, transit_mount, tmp_path):
    client = make_key(vault, transit_mount, rotations=0)
    make_key(vault, transit_mount, name="other")
    _values, ciphertexts = seed_versions(client, transit_mount, "k", [20, 20])
    foreign = transit_data.encrypt_many(client, transit_mount, "other", ["x"])[0]

    malformed = tmp_path / "malformed.txt"
    malformed.write_text("\n".join(ciphertexts[:10] + ["a-plaintext-secret"] + ciphertexts[10:]) + "\n")
    before = malformed.read_text()
    run = ansible([rewrap_task(transit_mount, malformed)])
    result = run.task("rewrap")
    assert run.rc != 0 and "1 malformed line(s), first at line 11" in result["msg"]
    assert result["errors"] == [{"line": 11, "error": "not a Vault transit ciphertext (expected vault:v<N>:<base64>)"}]
    assert malformed.read_text() == before and "a-plaintext-secret" not in run.output

    # A ciphertext of another key fails inside a batch: reported by line, file untouched.
    mixed = tmp_path / "mixed.txt"
    transit_data.write_lines(mixed, ciphertexts[:5] + [foreign.replace("v1", "v1")] + ciphertexts[5:])
    before = mixed.read_text()
    run = ansible([rewrap_task(transit_mount, mixed)])
    assert run.rc != 0
    assert "could not rewrap 1 ciphertext(s), first at line 6" in run.task("rewrap")["msg"]
    assert mixed.read_text() == before
    assert not [name for name in os.listdir(tmp_path) if "keyops-rewrap" in name]


def test_key_version_rewraps_to_that_version(ansible, vault, transit_mount, tmp_path):
    client = make_key(vault, transit_mount)
    values, ciphertexts = seed_versions(client, transit_mount, "k", [600, 10, 10])
    path = tmp_path / "consumer.txt"
    transit_data.write_lines(path, ciphertexts)
    result = ansible([rewrap_task(transit_mount, path, key_version=2)], expect_rc=0).task("rewrap")
    assert result["target_version"] == 2 and result["rewrapped"] == 600
    assert result["census_after"] == {"2": 610, "3": 10} and result["oldest_version_in_use"] == 2
    assert transit_data.versions_in(path) == [2, 3]
    assert transit_data.decrypt_many(client, transit_mount, "k", transit_data.read_ciphertexts(path)) == values


def test_empty_file_missing_file_and_bad_options(ansible, vault, transit_mount, tmp_path):
    make_key(vault, transit_mount)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = ansible([rewrap_task(transit_mount, empty)], expect_rc=0).task("rewrap")
    assert result["changed"] is False and result["census_before"] == {} and result["oldest_version_in_use"] is None
    for options, text in [({"path": str(tmp_path / "nope")}, "does not exist"),
                          ({"batch_size": 5000}, "batch_size must be between 1 and 490"),
                          ({"name": "nokey"}, "transit key 'nokey' does not exist"),
                          ({"key_version": 7}, "key_version 7 is not a version")]:
        task = rewrap_task(transit_mount, empty)
        task["keyops.lifecycle.vault_transit_rewrap"].update(options)
        run = ansible([task])
        assert run.rc != 0 and text in run.task("rewrap")["msg"] and "Traceback" not in run.output


def test_two_keys_sharing_a_large_file_concurrently(vault, transit_mount, tmp_path):
    """Two rewraps of one 100k-line file (one field per key) at the same time: both land."""
    client = make_key(vault, transit_mount, name="a")
    make_key(vault, transit_mount, name="b")
    count = 100_000
    a_values = transit_data.plaintexts(count, "a")
    a_cts = transit_data.encrypt_many(client, transit_mount, "a", a_values)
    b_cts = transit_data.encrypt_many(client, transit_mount, "b", transit_data.plaintexts(count, "b"))
    for key in ("a", "b"):
        client.adapter.request("POST", "/v1/%s/keys/%s/rotate" % (transit_mount, key), json={})
    path = tmp_path / "shared.jsonl"
    with open(path, "w") as handle:
        for index in range(count):
            handle.write(json.dumps({"id": index, "a": a_cts[index], "b": b_cts[index]}) + "\n")
    del b_cts

    procs = []
    for key in ("a", "b"):
        playbook = tmp_path / ("rewrap-%s.yml" % key)
        import yaml

        playbook.write_text(yaml.safe_dump(play([rewrap_task(transit_mount, path, name=key, field=key)])))
        env = dict(os.environ, VAULT_ADDR=vault.address, VAULT_TOKEN=vault.token,
                   ANSIBLE_PYTHON_INTERPRETER=ANSIBLE_PYTHON)
        procs.append(subprocess.Popen([os.path.join(BIN, "ansible-playbook"),
                                       "-i", "localhost,", str(playbook)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        output = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, output
    assert transit_data.versions_in(path, "a") == [2] and transit_data.versions_in(path, "b") == [2]
    assert transit_data.decrypt_many(client, transit_mount, "a", transit_data.read_ciphertexts(path, "a")) == a_values


def test_server_sealed_mid_rewrap_writes_nothing(tmp_path):
    """Seal the server while the rewrap is streaming: a clear error, the file untouched, no temp file left."""
    import threading
    import time

    import hvac

    from lab.openbao import OpenBaoDevServer
    from _ansible import run_playbook

    with OpenBaoDevServer(str(tmp_path / "server")) as server:
        client = transit_data.client(server.address, server.token)
        client.sys.enable_secrets_engine("transit")
        client.adapter.request("POST", "/v1/transit/keys/k", json={})
        path = tmp_path / "big.txt"
        transit_data.write_lines(path, transit_data.encrypt_many(client, "transit", "k",
                                                                 transit_data.plaintexts(150_000)))
        client.adapter.request("POST", "/v1/transit/keys/k/rotate", json={})
        before = path.read_bytes()

        def seal_when_rewrap_starts():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if any(name.startswith(".big.txt.keyops-rewrap-") for name in os.listdir(tmp_path)):
                    hvac.Client(url=server.address, token=server.token).sys.seal()
                    return
                time.sleep(0.01)

        sealer = threading.Thread(target=seal_when_rewrap_starts)
        sealer.start()
        run = run_playbook(tmp_path, play([rewrap_task("transit", path, workers=1, batch_size=100)]),
                           env={"VAULT_ADDR": server.address, "VAULT_TOKEN": server.token})
        sealer.join()
        assert hvac.Client(url=server.address).sys.is_sealed()
        assert run.rc != 0 and "Traceback" not in run.output
        msg = run.task("rewrap")["msg"]
        assert "is sealed" in msg and "unseal it" in msg
        assert path.read_bytes() == before
        assert not [name for name in os.listdir(tmp_path) if "keyops-rewrap" in name]


# -- derived keys: a key derivation context per line ---------------------------------------------------------


def _b64(text):
    return base64.b64encode(text.encode()).decode()


CONTEXT_BATCH = 200  # items with a context carry twice the strings (OpenBao's JSON complexity limit)


def encrypt_with_contexts(client, mount, name, values, contexts):
    """Encrypt values[i] with the base64 context contexts[i] (derived key) in batches."""
    out = []
    for start in range(0, len(values), CONTEXT_BATCH):
        batch = [{"plaintext": _b64(value), "context": context}
                 for value, context in zip(values[start:start + CONTEXT_BATCH],
                                           contexts[start:start + CONTEXT_BATCH])]
        body = client.adapter.request("POST", "/v1/%s/encrypt/%s" % (mount, name), json={"batch_input": batch}).json()
        out.extend(item["ciphertext"] for item in body["data"]["batch_results"])
    return out


def decrypt_with_contexts(client, mount, name, ciphertexts, contexts):
    out = []
    for start in range(0, len(ciphertexts), CONTEXT_BATCH):
        batch = [{"ciphertext": c, "context": x} for c, x in zip(ciphertexts[start:start + CONTEXT_BATCH],
                                                                 contexts[start:start + CONTEXT_BATCH])]
        body = client.adapter.request("POST", "/v1/%s/decrypt/%s" % (mount, name), json={"batch_input": batch},
                                      raise_exception=False).json()
        for item in (body.get("data") or {}).get("batch_results") or [{}] * len(batch):
            ok = "plaintext" in item and not item.get("error")  # a refused item may carry an empty plaintext
            out.append(base64.b64decode(item["plaintext"]).decode() if ok else None)
    return out


def make_derived_file(client, mount, path, count):
    client.adapter.request("POST", "/v1/%s/keys/d" % mount, json={"derived": True})
    values = transit_data.plaintexts(count, "derived")
    tenants = ["tenant-%04d-\u00e9" % (index % 97) for index in range(count)]
    ciphertexts = encrypt_with_contexts(client, mount, "d", values, [_b64(t) for t in tenants])
    client.adapter.request("POST", "/v1/%s/keys/d/rotate" % mount, json={})
    with open(path, "w") as handle:
        for index, (ciphertext, tenant) in enumerate(zip(ciphertexts, tenants)):
            handle.write(json.dumps({"id": index, "secret": ciphertext, "ctx": _b64(tenant), "tenant": tenant}) + "\n")
    return values, tenants


def test_derived_key_rewrap_with_base64_and_text_contexts(ansible, vault, transit_mount, tmp_path):
    client = transit_data.client(vault.address, vault.token)
    path = tmp_path / "derived.jsonl"
    values, tenants = make_derived_file(client, transit_mount, path, 900)
    original = [json.loads(line) for line in path.read_text().splitlines()]

    # The check-mode task and the rewrap in one playbook (an ansible-playbook start is the costly part).
    check = dict(rewrap_task(transit_mount, path, name="d", field="secret", context_field="ctx"), name="check", check_mode=True)
    run = ansible([check, rewrap_task(transit_mount, path, name="d", field="secret", context_field="ctx", batch_size=128)],
                  expect_rc=0)
    assert run.task("check")["census_before"] == {"1": 900} and run.task("check")["rewrapped"] == 900
    result = run.task("rewrap")
    assert result["census_after"] == {"2": 900} and result["oldest_version_in_use"] == 2
    after = [json.loads(line) for line in path.read_text().splitlines()]
    assert [{k: v for k, v in d.items() if k != "secret"} for d in after] == \
        [{k: v for k, v in d.items() if k != "secret"} for d in original]
    cts = [d["secret"] for d in after]
    assert decrypt_with_contexts(client, transit_mount, "d", cts, [_b64(t) for t in tenants]) == values
    # The context matters: the same ciphertexts do not decrypt under other contexts.
    assert set(decrypt_with_contexts(client, transit_mount, "d", cts[:5], [_b64("other")] * 5)) == {None}

    # Next rotation: the plain-text field as context, in bulk mode.  A second playbook: the key rotates, and the
    # file is checked above, between the two rewraps.
    client.adapter.request("POST", "/v1/%s/keys/d/rotate" % transit_mount, json={})
    bulk = {"name": "rewrap", "keyops.lifecycle.vault_transit_rewrap": {
        "mount": transit_mount, "consumers": [{"name": "d", "path": str(path), "field": "secret",
                                               "context_field": "tenant", "context_encoding": "text"}]}}
    # The rerun (nothing left to rewrap) in the same playbook: neither run prints a value or a context.
    run = ansible([bulk, dict(bulk, name="rewrap again")], expect_rc=0)
    entry = run.task("rewrap")["consumers"][0]
    assert entry["ok"] is True and entry["census_after"] == {"3": 900} and entry["oldest_version_in_use"] == 3
    cts = transit_data.read_ciphertexts(path, "secret")
    assert decrypt_with_contexts(client, transit_mount, "d", cts, [_b64(t) for t in tenants]) == values
    assert run.status("rewrap again") == "ok"
    assert not any(value in run.output for value in values[:20] + tenants[:20])


def test_derived_key_refusals_write_nothing(ansible, vault, transit_mount, tmp_path):
    client = transit_data.client(vault.address, vault.token)
    path = tmp_path / "derived.jsonl"
    make_derived_file(client, transit_mount, path, 50)
    before = path.read_bytes()
    cases = [
        ({"field": "secret"}, "transit key 'd' (mount '%s') is derived" % transit_mount),
        ({}, "is derived"),
        ({"context_field": "ctx"}, "context_field needs field"),
        ({"field": "secret", "context_field": "missing"}, "50 malformed line(s), first at line 1"),
        ({"field": "secret", "context_field": "tenant"}, "context field 'tenant' is not base64"),
    ]
    for options, text in cases:
        run = ansible([rewrap_task(transit_mount, path, name="d", **options)])
        result = run.task("rewrap")
        assert run.rc != 0 and text in result["msg"] + json.dumps(result.get("errors")), result["msg"]
        assert "Traceback" not in run.output
        assert path.read_bytes() == before
        assert not [name for name in os.listdir(tmp_path) if "keyops-rewrap" in name]
    assert "context_field" in ansible([rewrap_task(transit_mount, path, name="d", field="secret")]).task("rewrap")["msg"]

    # One line without its context among good ones: reported by line number, nothing written.
    lines = path.read_text().splitlines(True)
    document = json.loads(lines[17])
    del document["ctx"]
    lines[17] = json.dumps(document) + "\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    result = ansible([rewrap_task(transit_mount, path, name="d", field="secret", context_field="ctx")]).task("rewrap")
    assert "1 malformed line(s), first at line 18" in result["msg"]
    assert result["errors"] == [{"line": 18, "error": "JSON line has no context field 'ctx'"}]
    assert path.read_bytes() == before
