"""The streaming rewrap engine with a fake Vault: order, census, errors, atomicity, batch splitting."""

import json
import os
import stat

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _rewrap


def ct(version, body="QUJD"):
    return "vault:v%d:%s" % (version, body)


class FakeVault:
    """Rewraps vault:vN:X to vault:v<latest>:X; items listed in ``fail`` get an error; counts calls."""

    def __init__(self, latest, fail=(), max_items=None):
        self.latest = latest
        self.fail = set(fail)
        self.max_items = max_items
        self.calls = []

    def __call__(self, ciphertexts):
        if self.max_items is not None and len(ciphertexts) > self.max_items:
            raise _rewrap.TooLargeError("refused JSON input due to high complexity")
        self.calls.append(len(ciphertexts))
        results = []
        for value in ciphertexts:
            if value in self.fail:
                results.append({"error": "cipher: message authentication failed"})
            else:
                results.append({"ciphertext": "vault:v%d:%s" % (self.latest, value.split(":", 2)[2])})
        return results


def write(tmp_path, lines, name="data"):
    path = tmp_path / name
    path.write_text("".join(lines))
    return str(path)


def test_parse_line_plain_json_and_blank():
    assert _rewrap.parse_line(ct(2) + "\n", None) == (ct(2), None, 2)
    value, document, version = _rewrap.parse_line('{"id": 1, "secret": "%s"}\n' % ct(3), "secret")
    assert value == ct(3) and document["id"] == 1 and version == 3
    assert _rewrap.parse_line("   \n", "secret") == (None, None, None)


@pytest.mark.parametrize("line, field, text", [
    ("hunter2\n", None, "not a Vault transit ciphertext"),
    ("vault:vX:abc\n", None, "not a Vault transit ciphertext"),
    ('{"id": 1}\n', "secret", "has no field 'secret'"),
    ("not json\n", "secret", "not a JSON document"),
    ('{"secret": 5}\n', "secret", "not a Vault transit ciphertext"),
])
def test_parse_line_errors_never_quote_the_line(line, field, text):
    with pytest.raises(ValueError) as info:
        _rewrap.parse_line(line, field)
    assert text in str(info.value)
    assert "hunter2" not in str(info.value)


def test_replace_keeps_every_other_byte():
    line = '{"b": 1,   "secret": "%s", "c": "x"}\n' % ct(1)
    document = json.loads(line)
    assert _rewrap.replace_ciphertext(line, document, "secret", ct(1), ct(2)) == line.replace("v1", "v2")
    # The same ciphertext twice in one line: rewritten through JSON, only the field changes.
    twice = '{"copy": "%s", "secret": "%s"}\n' % (ct(1), ct(1))
    out = json.loads(_rewrap.replace_ciphertext(twice, json.loads(twice), "secret", ct(1), ct(2)))
    assert out == {"copy": ct(1), "secret": ct(2)}


def test_census_and_malformed_lines(tmp_path):
    path = write(tmp_path, [ct(1) + "\n", ct(2) + "\n", "\n", ct(1) + "\n"])
    assert _rewrap.take_census(path, None) == {"1": 2, "2": 1}
    bad = write(tmp_path, [ct(1) + "\n", "plaintext-secret\n", ct(1) + "\n", "x\n"], "bad")
    with pytest.raises(_rewrap.RewrapError) as info:
        _rewrap.take_census(bad, None)
    assert [e["line"] for e in info.value.errors] == [2, 4]
    assert "plaintext-secret" not in info.value.msg + str(info.value.errors)


@pytest.mark.parametrize("workers", [1, 3])
def test_rewrite_streams_in_order_and_counts(tmp_path, workers):
    lines = []
    for index in range(1003):
        lines.append("%s\n" % ct(1 + index % 3, "A%04d" % index) if index % 50 else "\n")
    path = write(tmp_path, lines)
    vault = FakeVault(latest=3)
    temp, before, census, rewrapped = _rewrap.rewrite(path, None, 3, vault, batch_size=100, workers=workers)
    assert before == {"1": 328, "2": 327, "3": 327}
    out = open(temp).read().splitlines(True)
    assert len(out) == len(lines)
    for before, after in zip(lines, out):
        assert after == (before.replace(before[:8], "vault:v3") if before.strip() else before)
    assert sum(census.values()) == 1003 - 21 and set(census) == {"3"}
    assert rewrapped == sum(1 for line in lines if line.strip() and not line.startswith("vault:v3"))
    assert max(vault.calls) <= 100


def test_rewrite_error_writes_nothing_and_names_lines(tmp_path):
    lines = [ct(1, "A%03d" % i) + "\n" for i in range(300)]
    path = write(tmp_path, lines)
    vault = FakeVault(latest=2, fail={ct(1, "A007"), ct(1, "A250")})
    with pytest.raises(_rewrap.RewrapError) as info:
        _rewrap.rewrite(path, None, 2, vault, batch_size=64, workers=2)
    assert [e["line"] for e in info.value.errors] == [8, 251]
    assert "nothing was written" in info.value.msg
    assert open(path).read() == "".join(lines)
    assert [name for name in os.listdir(tmp_path) if "keyops-rewrap" in name] == []


def test_too_large_batches_are_split(tmp_path):
    path = write(tmp_path, [ct(1, "A%03d" % i) + "\n" for i in range(200)])
    vault = FakeVault(latest=2, max_items=30)
    rewrapper = _rewrap.BatchRewrapper(vault, 100)
    _temp, _before, census, rewrapped = _rewrap.rewrite(path, None, 2, rewrapper, batch_size=100)
    assert rewrapped == 200 and census == {"2": 200}
    assert max(vault.calls) <= 30 and rewrapper.batch_size <= 30


def test_replace_file_keeps_mode_and_is_atomic(tmp_path):
    path = write(tmp_path, [ct(1) + "\n"])
    os.chmod(path, 0o640)
    temp = _rewrap.rewrite(path, None, 2, FakeVault(latest=2), batch_size=10)[0]
    assert stat.S_IMODE(os.stat(temp).st_mode) == 0o600  # private while being written
    _rewrap.replace_file(temp, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert open(path).read() == ct(2) + "\n"


def test_nothing_due_writes_nothing(tmp_path):
    path = write(tmp_path, [ct(2) + "\n", "\n", ct(3) + "\n"])
    vault = FakeVault(latest=3)
    assert _rewrap.rewrite(path, None, 2, vault, batch_size=10) == (None, {"2": 1, "3": 1}, {"2": 1, "3": 1}, 0)
    assert vault.calls == [] and os.listdir(tmp_path) == ["data"]


def test_malformed_line_in_rewrite_pass_writes_nothing(tmp_path):
    lines = [ct(1, "A%03d" % i) + "\n" for i in range(50)]
    lines[30] = "secret-plaintext\n"
    path = write(tmp_path, lines)
    with pytest.raises(_rewrap.RewrapError) as info:
        _rewrap.rewrite(path, None, 2, FakeVault(latest=2), batch_size=10)
    assert [e["line"] for e in info.value.errors] == [31]
    assert open(path).read() == "".join(lines) and os.listdir(tmp_path) == ["data"]


def test_stale_temps_are_removed(tmp_path):
    path = write(tmp_path, [ct(1) + "\n"])
    stale = tmp_path / ".data.keyops-rewrap-abc"
    stale.write_text("half")
    _rewrap.remove_stale_temps(path)
    assert not stale.exists() and os.path.exists(path)


def test_min_version():
    assert _rewrap.min_version({"3": 1, "2": 5}) == 2
    assert _rewrap.min_version({}) is None
