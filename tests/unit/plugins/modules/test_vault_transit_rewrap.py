"""vault_transit_rewrap against a fake transit engine: census, rewrite in place, all-or-nothing on bad lines,
and no ciphertext or line content in a result."""

import json
import os
import stat

import pytest
from _module_runner import assert_not_in_result, module_kwargs, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import vault_transit_rewrap

V1, V2, V3 = "vault:v1:QUFBQQ==", "vault:v2:QkJCQg==", "vault:v3:Q0NDQw=="
FAST = {"settle_time": 0.05}  # the shortest settle window the module accepts: a real run stays well under 0.1 s


def run(vault_args, check_mode=False, diff=False, **options):
    return run_module(vault_transit_rewrap.main, dict(vault_args, **dict(FAST, **options)), check_mode=check_mode,
                      diff=diff)


def consumer_file(tmp_path, lines, name="ciphertexts.txt", mode=0o640):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    os.chmod(path, mode)
    return path


def test_argument_spec():
    kwargs = module_kwargs(vault_transit_rewrap.main)
    spec = kwargs["argument_spec"]
    assert ("name", "path") in kwargs["required_together"]
    assert ("path", "consumers") in kwargs["required_one_of"] and ("path", "consumers") in kwargs["mutually_exclusive"]
    assert spec["context_encoding"]["choices"] == ["base64", "text"] and spec["context_encoding"]["default"] == "base64"
    assert spec["open_writers"]["choices"] == ["fail", "report"] and spec["open_writers"]["default"] == "fail"
    assert spec["batch_size"]["default"] == 400 and spec["fail_on_error"]["default"] is True
    assert spec["consumers"]["options"]["path"]["required"] is True
    assert no_log_options(spec) == {"token", "secret_id"}


def test_a_file_is_rewrapped_to_the_latest_version_in_place(fake_transit, fake_vault, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=3)
    path = consumer_file(tmp_path, [V1, "", V2, V3])
    result = run(vault_args, name="kasten", path=str(path), diff=True)
    assert result["changed"] is True and result["rewrapped"] == 2 and result["target_version"] == 3
    assert result["census_before"] == {"1": 1, "2": 1, "3": 1} and result["census_after"] == {"3": 3}
    assert result["oldest_version_in_use"] == 3
    assert result["diff"] == {"before": {"census": {"1": 1, "2": 1, "3": 1}}, "after": {"census": {"3": 3}}}
    assert path.read_text() == "vault:v3:QUFBQQ==\n\nvault:v3:QkJCQg==\n%s\n" % V3  # blank line kept
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # the original mode survives the rename
    assert [r[:2] for r in fake_vault.writes()] == [("POST", "transit/rewrap/kasten")]
    assert_not_in_result(result, V1, V2, V3, "QUFBQQ==", "QkJCQg==")


def test_a_file_at_the_latest_version_is_unchanged(fake_transit, fake_vault, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=3)
    path = consumer_file(tmp_path, [V3, V3])
    before = os.stat(path)
    result = run(vault_args, name="kasten", path=str(path))
    assert result["changed"] is False and result["rewrapped"] == 0 and result["census_after"] == {"3": 2}
    assert fake_vault.writes() == [] and os.stat(path).st_ino == before.st_ino  # not even rewritten


def test_check_mode_reports_the_census_and_writes_nothing(fake_transit, fake_vault, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=3)
    path = consumer_file(tmp_path, [V1, V2, V3])
    result = run(vault_args, check_mode=True, name="kasten", path=str(path))
    assert result["changed"] is True and result["rewrapped"] == 2
    assert result["census_before"] == result["census_after"] == {"1": 1, "2": 1, "3": 1}
    assert result["oldest_version_in_use"] == 1
    assert fake_vault.writes() == [] and path.read_text() == "%s\n%s\n%s\n" % (V1, V2, V3)


def test_json_lines_keep_every_other_byte(fake_transit, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2)
    line = '{"id": 7,  "secret": "%s", "note": "spaced  out"}' % V1
    path = consumer_file(tmp_path, [line], name="records.jsonl")
    result = run(vault_args, name="kasten", path=str(path), field="secret")
    assert result["changed"] is True
    assert path.read_text() == line.replace(V1, "vault:v2:QUFBQQ==") + "\n"


def test_key_version_rewraps_only_up_to_it(fake_transit, fake_vault, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=3)
    path = consumer_file(tmp_path, [V1, V2])
    result = run(vault_args, name="kasten", path=str(path), key_version=2)
    assert result["target_version"] == 2 and result["rewrapped"] == 1 and result["census_after"] == {"2": 2}
    assert fake_vault.writes()[0][2]["key_version"] == 2


def test_malformed_lines_are_reported_by_number_and_nothing_is_written(fake_transit, fake_vault, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2)
    secret_line = "password=hunter2"
    path = consumer_file(tmp_path, [V1, secret_line, V1])
    result = run(vault_args, name="kasten", path=str(path))
    assert result["failed"] and "1 malformed line(s), first at line 2; nothing was rewrapped" in result["msg"]
    assert result["errors"] == [{"line": 2, "error": "not a Vault transit ciphertext (expected vault:v<N>:<base64>)"}]
    assert path.read_text() == "%s\n%s\n%s\n" % (V1, secret_line, V1)
    assert not [name for name in os.listdir(tmp_path) if "keyops-rewrap" in name]  # no temporary twin left behind
    assert_not_in_result(result, "hunter2", V1)


def test_check_mode_reports_malformed_lines_too(fake_transit, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2)
    path = consumer_file(tmp_path, ['{"secret": 5}'], name="records.jsonl")
    result = run(vault_args, check_mode=True, name="kasten", path=str(path), field="secret")
    assert result["failed"] and result["errors"][0]["line"] == 1


def test_vault_refusing_an_item_writes_nothing(fake_transit, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=3, min_decryption_version=2)
    path = consumer_file(tmp_path, [V2, V1])
    result = run(vault_args, name="kasten", path=str(path))
    assert result["failed"] and "Vault could not rewrap 1 ciphertext(s), first at line 2" in result["msg"]
    assert "disallowed by policy" in result["errors"][0]["error"]
    assert path.read_text() == "%s\n%s\n" % (V2, V1)
    assert_not_in_result(result, V1, V2)


def test_a_derived_key_needs_context_field(fake_transit, fake_vault, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2, derived=True)
    path = consumer_file(tmp_path, [V1])
    result = run(vault_args, name="kasten", path=str(path))
    assert result["failed"] and "is derived" in result["msg"] and "Set context_field" in result["msg"]
    assert fake_vault.writes() == []


def test_context_field_needs_field(fake_transit, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2, derived=True)
    path = consumer_file(tmp_path, [V1])
    result = run(vault_args, name="kasten", path=str(path), context_field="ctx")
    assert result["failed"] and result["msg"].startswith("context_field needs field")


def test_contexts_of_a_derived_key_are_sent_and_not_returned(fake_transit, fake_vault, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2, derived=True)
    path = consumer_file(tmp_path, [json.dumps({"c": V1, "ctx": "tenant-42"})], name="records.jsonl")
    result = run(vault_args, name="kasten", path=str(path), field="c", context_field="ctx", context_encoding="text")
    assert result["changed"] is True
    assert fake_vault.writes()[0][2]["batch_input"] == [{"ciphertext": V1, "context": "dGVuYW50LTQy"}]
    assert_not_in_result(result, "tenant-42", "dGVuYW50LTQy")


def test_a_missing_file_is_named(fake_transit, vault_args, tmp_path):
    fake_transit.add_key("kasten")
    result = run(vault_args, name="kasten", path=str(tmp_path / "absent.txt"))
    assert result["failed"] and "consumer file %s does not exist" % (tmp_path / "absent.txt") in result["msg"]


def test_a_missing_key_is_named(fake_transit, vault_args, tmp_path):
    path = consumer_file(tmp_path, [V1])
    result = run(vault_args, name="ghost", path=str(path))
    assert result["failed"] and result["msg"] == "transit key 'ghost' does not exist in mount 'transit'"


def test_key_version_beyond_the_latest_is_refused(fake_transit, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2)
    path = consumer_file(tmp_path, [V1])
    result = run(vault_args, name="kasten", path=str(path), key_version=5)
    assert result["failed"] and result["msg"] == "key_version 5 is not a version of key 'kasten' (latest is 2)"


@pytest.mark.parametrize("options, text", [
    ({"batch_size": 0}, "batch_size must be between 1 and 490 (got 0)"),
    ({"batch_size": 491}, "batch_size must be between 1 and 490 (got 491)"),
    ({"workers": 0}, "workers must be between 1 and 32 (got 0)"),
    ({"settle_time": 0.01}, "settle_time must be between 0.05 and 30 seconds (got 0.01)"),
    ({"open_writers": "ignore"}, "value of open_writers must be one of: fail, report"),
])
def test_option_values_out_of_range(fake_transit, fake_vault, vault_args, tmp_path, options, text):
    result = run(vault_args, name="kasten", path=str(tmp_path / "f"), **options)
    assert result["failed"] and text in result["msg"] and fake_vault.requests == []


@pytest.mark.parametrize("options, text", [
    ({"field": "secret"}, "one of the following is required: path, consumers"),
    ({"path": "/x"}, "parameters are required together: name, path"),
    ({"name": "k", "path": "/x", "consumers": [{"name": "k", "path": "/y"}]}, "mutually exclusive: path|consumers"),
    ({"consumers": [{"name": "k"}]}, "missing required arguments: path found in consumers"),
])
def test_option_combinations(fake_transit, fake_vault, vault_args, options, text):
    result = run(vault_args, **options)
    assert result["failed"] and text in result["msg"] and fake_vault.requests == []


def bulk(tmp_path):
    good = consumer_file(tmp_path, [V1], name="good.txt")
    return good, [{"name": "kasten", "path": str(good)}, {"name": "kasten", "path": str(tmp_path / "gone.txt")}]


def test_bulk_reports_each_consumer_and_fails_when_one_fails(fake_transit, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2)
    good, consumers = bulk(tmp_path)
    result = run(vault_args, consumers=consumers)
    assert result["failed"] and result["msg"].startswith("1 of 2 consumer(s) could not be rewrapped")
    assert [entry["ok"] for entry in result["consumers"]] == [True, False]
    assert result["changed"] is True  # the good file was still done, and the failure says so
    assert good.read_text() == "vault:v2:QUFBQQ==\n"


def test_bulk_without_fail_on_error_succeeds_with_per_consumer_outcomes(fake_transit, vault_args, tmp_path):
    fake_transit.add_key("kasten", versions=2)
    _good, consumers = bulk(tmp_path)
    result = run(vault_args, check_mode=True, consumers=consumers, fail_on_error=False)
    assert not result.get("failed") and result["changed"] is True
    good, gone = result["consumers"]
    assert good["ok"] is True and good["rewrapped"] == 1 and good["error"] is None
    assert gone["ok"] is False and "does not exist" in gone["error"] and gone["census_after"] == {}
    assert_not_in_result(result, V1)
