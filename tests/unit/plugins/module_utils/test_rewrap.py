"""The streaming rewrap engine with a fake Vault: order, census, contexts, errors, atomicity, appends, open writers."""

import base64
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _rewrap
from ansible_collections.keyops.lifecycle.plugins.module_utils._errors import KeyopsModuleError


def ct(version, body="QUJD"):
    return "vault:v%d:%s" % (version, body)


class FakeVault:
    """Rewraps vault:vN:X to vault:v<latest>:X; items listed in ``fail`` get an error; counts calls.

    ``on_call(n)`` runs before answering the n-th call (to append to the file mid-run).
    """

    def __init__(self, latest, fail=(), max_items=None, on_call=None):
        self.latest = latest
        self.fail = set(fail)
        self.max_items = max_items
        self.on_call = on_call
        self.calls = []
        self.contexts = []

    def __call__(self, ciphertexts, contexts=None):
        if self.max_items is not None and len(ciphertexts) > self.max_items:
            raise _rewrap.TooLargeError("refused JSON input due to high complexity")
        self.calls.append(len(ciphertexts))
        if contexts is not None:
            assert len(contexts) == len(ciphertexts)
            self.contexts.extend(contexts)
        if self.on_call is not None:
            self.on_call(len(self.calls))
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


def run(path, vault, target, field=None, batch_size=100, workers=1, fmt=None, **kwargs):
    """rewrite_in_place with a fake /proc (no other process holds anything) unless one is given."""
    kwargs.setdefault("proc", _empty_proc(os.path.dirname(path)))
    return _rewrap.rewrite_in_place(path, fmt or _rewrap.LineFormat(field), target, vault, batch_size, workers,
                                    **kwargs)


def _empty_proc(directory):
    proc = os.path.join(directory, "proc")
    if not os.path.isdir(proc):
        os.makedirs(proc)
        open(os.path.join(proc, "locks"), "w").close()
    return proc


def data_files(tmp_path):
    return sorted(name for name in os.listdir(tmp_path) if name != "proc")


# -- parsing ---------------------------------------------------------------------------------------


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


def test_line_format_contexts():
    fmt = _rewrap.LineFormat("secret", "ctx")
    line = ('{"secret": "%s", "ctx": "dXNlci0x"}\n' % ct(1)).encode()
    assert fmt.parse(line)[1:] == (ct(1), {"secret": ct(1), "ctx": "dXNlci0x"}, 1, "dXNlci0x")
    text = _rewrap.LineFormat("secret", "tenant", "text")
    line = ('{"secret": "%s", "tenant": "t\u00e9nant-7"}\n' % ct(1)).encode()
    assert base64.b64decode(text.parse(line)[4]).decode() == "t\u00e9nant-7"
    assert fmt.parse(b"\n")[3:] == (None, None)  # blank lines need no context


@pytest.mark.parametrize("document, encoding, text", [
    ({"secret": ct(1)}, "base64", "has no context field 'ctx'"),
    ({"secret": ct(1), "ctx": ""}, "text", "context field 'ctx' is empty or not a string"),
    ({"secret": ct(1), "ctx": 7}, "base64", "is empty or not a string"),
    ({"secret": ct(1), "ctx": "tenant hunter2"}, "base64", "is not base64"),
])
def test_bad_contexts_are_malformed_and_never_quoted(document, encoding, text):
    with pytest.raises(ValueError) as info:
        _rewrap.LineFormat("secret", "ctx", encoding).parse((json.dumps(document) + "\n").encode())
    assert text in str(info.value) and "hunter2" not in str(info.value)


def test_line_format_refuses_context_without_field():
    with pytest.raises(_rewrap.RewrapError, match="context_field needs field"):
        _rewrap.LineFormat(None, "ctx")
    with pytest.raises(_rewrap.RewrapError, match="must name another field"):
        _rewrap.LineFormat("secret", "secret")
    with pytest.raises(_rewrap.RewrapError, match="context_encoding must be one of base64, text"):
        _rewrap.LineFormat("secret", "ctx", "hex")


def test_rewrap_error_is_the_collection_error():
    error = _rewrap.RewrapError("boom", [{"line": 3, "error": "x"}])
    assert isinstance(error, KeyopsModuleError)
    assert error.details == {"errors": [{"line": 3, "error": "x"}]} and error.errors == error.details["errors"]


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


def test_census_checks_contexts(tmp_path):
    path = write(tmp_path, ['{"s": "%s", "c": "YQ=="}\n' % ct(1), '{"s": "%s"}\n' % ct(2)])
    assert _rewrap.take_census(path, "s") == {"1": 1, "2": 1}
    with pytest.raises(_rewrap.RewrapError) as info:
        _rewrap.take_census(path, "s", "c")
    assert info.value.errors == [{"line": 2, "error": "JSON line has no context field 'c'"}]


# -- batches and the sender ------------------------------------------------------------------------


def test_too_large_batches_are_split_with_their_contexts():
    vault = FakeVault(latest=2, max_items=30)
    rewrapper = _rewrap.BatchRewrapper(vault, 100)
    cts = [ct(1, "A%03d" % i) for i in range(100)]
    contexts = ["Yy%03d" % i for i in range(100)]
    assert len(rewrapper(cts, contexts)) == 100
    assert vault.contexts == contexts and max(vault.calls) <= 30 and rewrapper.batch_size <= 30
    assert len(rewrapper(cts)) == 100  # the plain form still works


class FakeConnection:
    def __init__(self):
        self.bodies = []

    def write(self, path, body):
        self.bodies.append((path, body))
        return {"data": {"batch_results": [{"ciphertext": ct(2)} for _item in body["batch_input"]]}}


def test_make_sender_plain_and_with_contexts():
    connection = FakeConnection()
    send = _rewrap.make_sender(connection, "/transit/", "k", key_version=2)
    send([ct(1)])
    send([ct(1), ct(1, "QkNE")], contexts=["YQ==", "Yg=="])
    assert connection.bodies[0] == ("transit/rewrap/k", {"batch_input": [{"ciphertext": ct(1), "key_version": 2}],
                                                         "key_version": 2})
    assert connection.bodies[1][1]["batch_input"] == [{"ciphertext": ct(1), "context": "YQ==", "key_version": 2},
                                                      {"ciphertext": ct(1, "QkNE"), "context": "Yg==", "key_version": 2}]
    with pytest.raises(ValueError, match="1 contexts for 2 ciphertexts"):
        send([ct(1), ct(1)], contexts=["YQ=="])


# -- the rewrite in place --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 3])
def test_rewrite_streams_in_order_and_counts(tmp_path, workers):
    lines = []
    for index in range(1003):
        lines.append("%s\n" % ct(1 + index % 3, "A%04d" % index) if index % 50 else "\n")
    path = write(tmp_path, lines)
    vault = FakeVault(latest=3)
    result = run(path, vault, 3, batch_size=100, workers=workers)
    assert result["census_before"] == {"1": 328, "2": 327, "3": 327}
    out = open(path).read().splitlines(True)
    assert len(out) == len(lines)
    for before, after in zip(lines, out):
        assert after == (before.replace(before[:8], "vault:v3") if before.strip() else before)
    assert result["census_after"] == {"3": 1003 - 21} and result["changed"] is True
    assert result["rewrapped"] == sum(1 for line in lines if line.strip() and not line.startswith("vault:v3"))
    assert max(vault.calls) <= 100 and result["caught_up"] == 0 and result["carried_over"] == 0


def test_derived_contexts_travel_with_their_lines(tmp_path):
    lines = ['{"id": %d, "s": "%s", "tenant": "t-%d"}\n' % (i, ct(1, "A%03d" % i), i) for i in range(250)]
    path = write(tmp_path, lines)
    vault = FakeVault(latest=2)
    result = run(path, vault, 2, fmt=_rewrap.LineFormat("s", "tenant", "text"), batch_size=64, workers=2)
    assert result["rewrapped"] == 250
    assert [base64.b64decode(c).decode() for c in vault.contexts] == ["t-%d" % i for i in range(250)]
    assert [json.loads(line)["tenant"] for line in open(path)] == ["t-%d" % i for i in range(250)]


def test_line_without_its_context_writes_nothing(tmp_path):
    lines = ['{"s": "%s", "c": "YQ=="}\n' % ct(1)] * 20
    lines[13] = '{"s": "%s"}\n' % ct(1)
    path = write(tmp_path, lines)
    vault = FakeVault(latest=2)
    with pytest.raises(_rewrap.RewrapError) as info:
        run(path, vault, 2, fmt=_rewrap.LineFormat("s", "c"), batch_size=5)
    assert "1 malformed line(s), first at line 14" in info.value.msg
    assert open(path).read() == "".join(lines) and data_files(tmp_path) == ["data"]


def test_rewrite_error_writes_nothing_and_names_lines(tmp_path):
    lines = [ct(1, "A%03d" % i) + "\n" for i in range(300)]
    path = write(tmp_path, lines)
    vault = FakeVault(latest=2, fail={ct(1, "A007"), ct(1, "A250")})
    with pytest.raises(_rewrap.RewrapError) as info:
        run(path, vault, 2, batch_size=64, workers=2)
    assert [e["line"] for e in info.value.errors] == [8, 251]
    assert "nothing was written" in info.value.msg
    assert open(path).read() == "".join(lines)
    assert data_files(tmp_path) == ["data"]


def test_mode_is_kept_and_twin_is_private(tmp_path):
    path = write(tmp_path, [ct(1) + "\n"])
    os.chmod(path, 0o640)
    modes = []

    def look(_call):
        twins = [name for name in os.listdir(tmp_path) if name.startswith(".data.keyops-rewrap-")]
        modes.extend(stat.S_IMODE(os.stat(os.path.join(tmp_path, name)).st_mode) for name in twins)

    run(path, FakeVault(latest=2, on_call=look), 2)
    assert modes == [0o600]  # private while being written
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert open(path).read() == ct(2) + "\n"


def test_nothing_due_writes_nothing(tmp_path):
    path = write(tmp_path, [ct(2) + "\n", "\n", ct(3) + "\n"])
    inode = os.stat(path).st_ino
    vault = FakeVault(latest=3)
    result = run(path, vault, 2, batch_size=10)
    assert (result["census_before"], result["census_after"], result["rewrapped"]) == ({"2": 1, "3": 1},) * 2 + (0,)
    assert vault.calls == [] and data_files(tmp_path) == ["data"] and os.stat(path).st_ino == inode


def test_malformed_line_writes_nothing(tmp_path):
    lines = [ct(1, "A%03d" % i) + "\n" for i in range(50)]
    lines[30] = "secret-plaintext\n"
    path = write(tmp_path, lines)
    with pytest.raises(_rewrap.RewrapError) as info:
        run(path, FakeVault(latest=2), 2, batch_size=10)
    assert [e["line"] for e in info.value.errors] == [31]
    assert open(path).read() == "".join(lines) and data_files(tmp_path) == ["data"]


def test_last_line_without_newline_is_rewrapped(tmp_path):
    path = write(tmp_path, [ct(1, "A") + "\n", ct(1, "B")])
    result = run(path, FakeVault(latest=2), 2)
    assert open(path).read() == ct(2, "A") + "\n" + ct(2, "B") and result["census_after"] == {"2": 2}


def test_stale_temps_are_removed(tmp_path):
    path = write(tmp_path, [ct(1) + "\n"])
    stale = tmp_path / ".data.keyops-rewrap-abc"
    stale.write_text("half")
    _rewrap.remove_stale_temps(path)
    assert not stale.exists() and os.path.exists(path)


def test_min_version():
    assert _rewrap.min_version({"3": 1, "2": 5}) == 2
    assert _rewrap.min_version({}) is None


# -- appends while the rewrap runs -----------------------------------------------------------------


def append(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_lines_appended_during_the_pass_are_caught_up_and_censused(tmp_path):
    path = write(tmp_path, [ct(1, "A%03d" % i) + "\n" for i in range(300)])

    def writer(call):
        if call == 2:
            append(path, "IAL\n")  # ... complete now
        if call <= 12:  # old versions among the appended lines: rewrapped too (each catch-up calls again)
            append(path, "%s\n%s\n" % (ct(2, "N%d" % call), ct(1, "O%d" % call)))
        if call == 1:
            append(path, ct(2, "PART"))  # a line still being written ...

    vault = FakeVault(latest=2, on_call=writer)
    result = run(path, vault, 2, batch_size=50)
    lines = open(path).read().splitlines()
    assert len(lines) == 300 + 24 + 1 and ct(2, "PARTIAL") in lines and len(set(lines)) == len(lines)
    assert result["caught_up"] >= 2 and result["census_after"] == {"2": 325}
    assert result["census_before"] == {"1": 312, "2": 13} and result["rewrapped"] == 312


class OldInodeWriter:
    """Opens the file before the rename and writes into that (soon replaced) inode from the settle loop."""

    def __init__(self, path, lines_per_sleep=1, sleeps=3):
        self.path, self.lines_per_sleep, self.sleeps = path, lines_per_sleep, sleeps
        self.fd, self.written, self.calls = None, [], 0

    def on_call(self, _call):
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def sleep(self, seconds):
        self.calls += 1
        if self.fd is not None and len(self.written) < self.sleeps * self.lines_per_sleep:
            for _index in range(self.lines_per_sleep):
                line = ct(2, "L%05d" % len(self.written))
                os.write(self.fd, (line + "\n").encode())
                self.written.append(line)
        time.sleep(min(seconds, 0.001))


def test_lines_landing_in_the_old_inode_after_the_rename_are_carried_over(tmp_path):
    path = write(tmp_path, [ct(1, "A%03d" % i) + "\n" for i in range(100)])
    writer = OldInodeWriter(path, lines_per_sleep=2, sleeps=3)
    vault = FakeVault(latest=2, on_call=writer.on_call)
    try:
        result = run(path, vault, 2, batch_size=50, settle=0.05, sleep=writer.sleep)
    finally:
        os.close(writer.fd)
    lines = open(path).read().splitlines()
    assert writer.written and all(line in lines for line in writer.written)
    assert result["caught_up"] + result["carried_over"] == len(writer.written) == 6
    assert len(lines) == 106 and result["census_after"] == {"2": 106}


def test_a_quiet_file_costs_three_scans_before_and_after_the_rename(tmp_path, monkeypatch):
    """One scan before the rename (open writers) and two after it, QUIET_PROOF apart (the proof the old inode is
    quiet); a scan in between, or a last one after the proof, would prove nothing more and costs a /proc walk."""
    path = write(tmp_path, [ct(1, "A%03d" % i) + "\n" for i in range(50)])
    now, scans = [0.0], []
    real_scan = _rewrap.scan_writers

    def scan(dev, ino, proc="/proc", own_pid=None):
        scans.append(now[0])
        return real_scan(dev, ino, proc, own_pid)

    def sleep(seconds):
        now[0] += seconds

    monkeypatch.setattr(_rewrap, "scan_writers", scan)
    result = run(path, FakeVault(latest=2), 2, settle=1.0, sleep=sleep, clock=lambda: now[0])
    assert result["changed"] is True and result["census_after"] == {"2": 50}
    assert len(scans) == 3, scans
    assert scans[2] - scans[1] >= _rewrap.QUIET_PROOF
    assert now[0] < 1.0  # ended by the proof, long before the settle window


def test_a_holder_seen_after_the_rename_restarts_the_proof(tmp_path, monkeypatch):
    path = write(tmp_path, [ct(1, "A%03d" % i) + "\n" for i in range(50)])
    now, scans = [0.0], []

    def scan(dev, ino, proc="/proc", own_pid=None):
        scans.append(now[0])
        # The first scan after the rename sees a holder that then closes the file.
        return ({(77, 3): 0} if len(scans) == 2 else {}), 0

    def sleep(seconds):
        now[0] += seconds

    monkeypatch.setattr(_rewrap, "scan_writers", scan)
    monkeypatch.setattr(_rewrap, "_fd_state", lambda *args: None)  # closed by the time it is looked at again
    result = run(path, FakeVault(latest=2), 2, settle=1.0, sleep=sleep, clock=lambda: now[0])
    assert result["changed"] is True
    assert len(scans) == 4 and scans[3] - scans[2] >= _rewrap.QUIET_PROOF  # two quiet scans after the holder


def test_the_walk_skips_sockets_and_pipes_but_finds_files(tmp_path):
    path = write(tmp_path, ["x\n"])
    proc = fake_proc(tmp_path, path)
    fd_dir = os.path.join(proc, "4242", "fd")
    os.symlink("socket:[12345]", os.path.join(fd_dir, "6"))
    os.symlink("pipe:[777]", os.path.join(fd_dir, "7"))
    index, hidden = _rewrap._walk_descriptors(proc, own_pid=1)
    info = os.stat(path)
    assert index == {(info.st_dev, info.st_ino): [(4242, 5)]} and hidden == 0


def test_old_inode_still_growing_after_the_window_fails_with_lines_at_risk(tmp_path):
    path = write(tmp_path, [ct(1, "A%03d" % i) + "\n" for i in range(20)])
    writer = OldInodeWriter(path, sleeps=10 ** 6)
    now = [0.0]

    def sleep(seconds):
        writer.sleep(seconds)
        now[0] += 0.05

    vault = FakeVault(latest=2, on_call=writer.on_call)
    try:
        with pytest.raises(_rewrap.RewrapError) as info:
            run(path, vault, 2, settle=0.1, sleep=sleep, clock=lambda: now[0])
    finally:
        os.close(writer.fd)
    assert "still grows" in info.value.msg and "from now on is lost" in info.value.msg
    assert info.value.details["lines_at_risk"] > 0 and info.value.details["changed"] is True
    lines = open(path).read().splitlines()
    assert all(line in lines for line in writer.written[:-1])  # carried over up to the last poll


# -- processes that keep the file open -------------------------------------------------------------


def fake_proc(tmp_path, target, pid=4242, fd=5, flags="0102001", pos=10, waiting=False):
    proc = tmp_path / "proc"
    (proc / str(pid) / "fd").mkdir(parents=True)
    (proc / str(pid) / "fdinfo").mkdir()
    os.symlink(target, str(proc / str(pid) / "fd" / str(fd)))
    (proc / str(pid) / "fdinfo" / str(fd)).write_text("pos:\t%d\nflags:\t%s\nmnt_id:\t27\n" % (pos, flags))
    (proc / str(pid) / "comm").write_text("app\n")
    ino = os.stat(target).st_ino
    locks = "1: FLOCK  ADVISORY  WRITE 1 fe:00:%d 0 EOF\n" % ino
    if waiting:
        locks += "1: -> FLOCK  ADVISORY  WRITE %d fe:00:%d 0 EOF\n" % (pid, ino)
    (proc / "locks").write_text(locks)
    return str(proc)


def test_persistent_writers_from_a_proc_tree(tmp_path):
    path = write(tmp_path, ["x\n"])
    info = os.stat(path)
    proc = fake_proc(tmp_path, path)
    fast = dict(window=0.02, interval=0.005)
    assert _rewrap.persistent_writers(info.st_dev, info.st_ino, proc, own_pid=1, **fast) == (
        [{"pid": 4242, "command": "app"}], 0)
    # Reopened meanwhile (its position went back): a per-write opener.
    fdinfo = os.path.join(proc, "4242", "fdinfo", "5")
    calls = []

    def reopen(_seconds):
        calls.append(1)
        with open(fdinfo, "w") as handle:
            handle.write("pos:\t0\nflags:\t0102001\n")

    assert _rewrap.persistent_writers(info.st_dev, info.st_ino, proc, own_pid=1, sleep=reopen, **fast)[0] == []
    assert calls


def test_readers_and_flock_waiters_are_not_writers(tmp_path):
    path = write(tmp_path, ["x\n"])
    info = os.stat(path)
    (tmp_path / "r").mkdir()
    reader = fake_proc(tmp_path / "r", path, flags="0100000")
    assert _rewrap.persistent_writers(info.st_dev, info.st_ino, reader, own_pid=1, window=0.01)[0] == []
    (tmp_path / "w").mkdir()
    waiter = fake_proc(tmp_path / "w", path, waiting=True)
    assert _rewrap.flock_waiters(info.st_ino, waiter) == {4242}
    assert _rewrap.persistent_writers(info.st_dev, info.st_ino, waiter, own_pid=1, window=0.01)[0] == []


def test_a_real_process_keeping_the_file_open_is_found(tmp_path):
    path = write(tmp_path, ["x\n"])
    info = os.stat(path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'a'); "
                               "print('open', flush=True); time.sleep(60)", path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        writers, _hidden = _rewrap.persistent_writers(info.st_dev, info.st_ino)
        assert [w["pid"] for w in writers] == [holder.pid] and writers[0]["command"].startswith("python")
    finally:
        holder.kill()
        holder.wait()
    assert _rewrap.persistent_writers(info.st_dev, info.st_ino)[0] == []


@pytest.mark.parametrize("mode", ["fail", "report"])
def test_a_file_kept_open_is_left_untouched(tmp_path, mode):
    lines = [ct(1, "A%03d" % i) + "\n" for i in range(30)]
    path = write(tmp_path, lines)
    os.mkdir(str(tmp_path / "p"))
    proc = fake_proc(tmp_path / "p", path)
    if mode == "fail":
        with pytest.raises(_rewrap.RewrapError) as info:
            run(path, FakeVault(latest=2), 2, proc=proc, open_writers=mode)
        assert "kept open for writing by pid 4242 (app)" in info.value.msg and "Nothing was written" in info.value.msg
        assert info.value.details["open_writers"] == [{"pid": 4242, "command": "app"}]
    else:
        result = run(path, FakeVault(latest=2), 2, proc=proc, open_writers=mode)
        assert result["changed"] is False and result["census_after"] == {"1": 30} and "warning" in result
        assert result["open_writers"] == [{"pid": 4242, "command": "app"}]
    assert open(path).read() == "".join(lines)
    assert not [name for name in os.listdir(tmp_path) if "keyops-rewrap" in name]


def test_shared_walk_answers_only_questions_asked_before_it_started(monkeypatch):
    """Three files ask while a walk runs: the walk in progress started before they asked, so one new walk (not
    three) answers all of them; a question asked later gets a walk of its own."""
    import threading
    walks, release = [], threading.Event()

    def walk(proc, own_pid):
        walks.append(proc)
        if len(walks) == 1:
            release.wait(5)
        return {(1, len(walks)): [(99, 3)]}, 0

    monkeypatch.setattr(_rewrap, "_walk_descriptors", walk)
    shared = _rewrap._SharedWalk()
    answers = []
    first = threading.Thread(target=lambda: answers.append(shared.descriptors("/proc", 1)))
    first.start()
    while not walks:
        time.sleep(0.001)
    waiting = [threading.Thread(target=lambda: answers.append(shared.descriptors("/proc", 1))) for _number in range(3)]
    for thread in waiting:
        thread.start()
    time.sleep(0.05)
    release.set()
    for thread in [first] + waiting:
        thread.join(5)
    assert len(walks) == 2
    assert sorted(list(index)[0][1] for index, _hidden in answers) == [1, 2, 2, 2]
    assert list(shared.descriptors("/proc", 1)[0]) == [(1, 3)]  # asked after every walk so far: a new one
