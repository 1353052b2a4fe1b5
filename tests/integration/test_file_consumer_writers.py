"""Applications appending to a consumer file while vault_transit_rewrap runs, against real OpenBao.

Writers are separate processes appending JSON lines with unique ids (ciphertexts of the key's first version,
so lines appended during a run must be caught up and rewrapped too).  Each test runs at least two
rewraps (rotate, rewrap, rotate, rewrap) of a 20,000-line file while the writers go on, then stops them
and checks that no line was lost or duplicated, that every line decrypts to what was written, and that
the census the task returned counts exactly the lines it left at the target version.  A writer that
keeps the file open across the run must make the task fail (or report), never succeed.

The counts are printed and kept in build/file-consumers/writers.jsonl.
"""

import collections
import json
import os
import subprocess
import sys
import time

import pytest

from lab import transit_data

from _ansible import ROOT

LINES = 20_000
POOL = 400  # distinct ciphertexts per writer (ids stay unique: id n carries pool[n % POOL])

# One writer process.  Modes: open (open/append/close per line), flock (the same under flock), keep (open
# once, append per line), keep-flock (open once, flock per line).  One os.write() per line, O_APPEND.
WRITER = r"""
import fcntl, json, os, sys, time
path, pool_path, prefix, mode, interval, stop, report = sys.argv[1:8]
pool = open(pool_path).read().split()
interval = float(interval)
written = 0
held = os.open(path, os.O_WRONLY | os.O_APPEND) if mode.startswith("keep") else None
open(report + ".started", "w").close()
while not os.path.exists(stop):
    line = (json.dumps({"id": "%s-%06d" % (prefix, written), "secret": pool[written % len(pool)]}) + "\n").encode()
    fd = held if held is not None else os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        if mode.endswith("flock"):
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        if mode.endswith("flock"):
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if held is None:
            os.close(fd)
    written += 1
    time.sleep(interval)
with open(report, "w") as handle:
    json.dump({"written": written}, handle)
"""


def record(counts):
    print("file consumer writers: %s" % json.dumps(counts, sort_keys=True))
    directory = os.path.join(ROOT, "build", "file-consumers")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "writers.jsonl"), "a") as handle:
        handle.write(json.dumps(counts, sort_keys=True) + "\n")


class Writers:
    """Writer processes on one file; ``stop()`` returns how many lines each wrote."""

    def __init__(self, tmp_path, path, pools, modes, interval=0.002):
        self.tmp_path, self.path, self.modes = tmp_path, path, modes
        self.stop_file = tmp_path / "stop-writers"
        self.procs, self.reports = [], []
        for index, mode in enumerate(modes):
            prefix = "w%d" % index
            report = tmp_path / ("writer-%s.json" % prefix)
            self.reports.append((prefix, report))
            self.procs.append(subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(pools[prefix][0]), prefix,
                                                mode, str(interval), str(self.stop_file), str(report)]))
        deadline = time.monotonic() + 30
        while not all(os.path.exists(str(r) + ".started") for _p, r in self.reports):
            assert time.monotonic() < deadline, "writers did not start"
            time.sleep(0.01)
        time.sleep(0.2)  # some lines before the run starts

    @property
    def pids(self):
        return [proc.pid for proc in self.procs]

    def stop(self):
        self.stop_file.write_text("")
        written = {}
        for proc, (prefix, report) in zip(self.procs, self.reports):
            proc.wait(timeout=30)
            written[prefix] = json.loads(report.read_text())["written"]
        return written

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture()
def writers_factory():
    made = []

    def make(*args, **kwargs):
        made.append(Writers(*args, **kwargs))
        return made[-1]

    yield make
    for writers in made:
        writers.kill()


def seed(vault, mount, tmp_path, prefixes):
    """Key ``k`` at version 2; a 20,000-line file and one pool per writer of version-1 ciphertexts."""
    client = transit_data.client(vault.address, vault.token)
    client.adapter.request("POST", "/v1/%s/keys/k" % mount, json={})
    values = transit_data.plaintexts(LINES, "init")
    path = tmp_path / "consumer.jsonl"
    with open(path, "w") as handle:
        for index, ciphertext in enumerate(transit_data.encrypt_many(client, mount, "k", values)):
            handle.write(json.dumps({"id": "init-%06d" % index, "secret": ciphertext}) + "\n")
    expected = dict(("init-%06d" % index, value) for index, value in enumerate(values))
    pools = {}
    for prefix in prefixes:
        plain = transit_data.plaintexts(POOL, "pool-%s" % prefix)
        pool_path = tmp_path / ("pool-%s.txt" % prefix)
        pool_path.write_text("\n".join(transit_data.encrypt_many(client, mount, "k", plain)) + "\n")
        pools[prefix] = (pool_path, plain)
    client.adapter.request("POST", "/v1/%s/keys/k/rotate" % mount, json={})
    return client, path, expected, pools


def rewrap_task(mount, path, **options):
    # One request in flight, small batches: the 20,000 lines take a second or more, so writers overlap it.
    args = dict(name="k", mount=mount, path=str(path), field="secret", workers=1, batch_size=50)
    args.update(options)
    return {"name": "rewrap", "keyops.lifecycle.vault_transit_rewrap": args}


def documents(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def count_at(path, version):
    return sum(1 for d in documents(path) if d["secret"].startswith("vault:v%d:" % version))


def check_nothing_lost(client, mount, path, expected, pools, written):
    """Every line written is in the file once and decrypts to its value; returns (lines, lost, duplicated)."""
    for prefix, count in written.items():
        plain = pools[prefix][1]
        expected.update(("%s-%06d" % (prefix, n), plain[n % POOL]) for n in range(count))
    docs = documents(path)
    seen = collections.Counter(d["id"] for d in docs)
    lost = sorted(set(expected) - set(seen))
    duplicated = sorted(i for i, n in seen.items() if n > 1)
    unknown = sorted(set(seen) - set(expected))
    assert not unknown, unknown[:10]
    plaintexts = transit_data.decrypt_many(client, mount, "k", [d["secret"] for d in docs])
    wrong = [d["id"] for d, p in zip(docs, plaintexts) if p != expected[d["id"]]]
    assert wrong == [], "%d line(s) do not decrypt to what was written, e.g. %s" % (len(wrong), wrong[:5])
    return len(docs), lost, duplicated


@pytest.mark.parametrize("modes", [("open",), ("flock",), ("open", "open", "flock", "flock")],
                         ids=["open-per-line", "flock-per-line", "four-appenders"])
def test_appenders_lose_nothing_over_two_rewraps(ansible, vault, transit_mount, tmp_path, writers_factory, modes):
    prefixes = ["w%d" % index for index in range(len(modes))]
    client, path, expected, pools = seed(vault, transit_mount, tmp_path, prefixes)
    writers = writers_factory(tmp_path, path, pools, modes)
    rounds = []
    for target in (2, 3):
        if target == 3:
            client.adapter.request("POST", "/v1/%s/keys/k/rotate" % transit_mount, json={})
        run = ansible([rewrap_task(transit_mount, path)], expect_rc=0)
        result = run.task("rewrap")
        # Everything the task read is at the target version, and the census counts exactly those lines
        # (the writers only ever add version-1 lines).
        assert list(result["census_after"]) == [str(target)] and result["oldest_version_in_use"] == target
        assert count_at(path, target) == result["census_after"][str(target)]
        rounds.append({"target": target, "seconds": round(run.seconds("rewrap"), 2), "rewrapped": result["rewrapped"],
                       "caught_up": result["caught_up"], "carried_over": result["carried_over"],
                       "lines_at_target": result["census_after"][str(target)]})
    written = writers.stop()
    lines, lost, duplicated = check_nothing_lost(client, transit_mount, path, expected, pools, written)
    record({"test": "appenders", "modes": list(modes), "initial_lines": LINES, "appended": sum(written.values()),
            "lines_in_file": lines, "lost": len(lost), "duplicated": len(duplicated), "rounds": rounds})
    assert lost == [] and duplicated == []
    assert lines == LINES + sum(written.values())
    assert max(r["seconds"] for r in rounds) >= 1.0, "the rewrap was too quick to overlap the writers: %s" % rounds
    assert sum(r["caught_up"] + r["carried_over"] for r in rounds) > 0, rounds


def test_writer_keeping_the_file_open_fails_the_task(ansible, vault, transit_mount, tmp_path, writers_factory):
    client, path, expected, pools = seed(vault, transit_mount, tmp_path, ["w0", "w1"])
    writers = writers_factory(tmp_path, path, pools, ("keep", "open"))
    outcomes = []
    for attempt in range(2):
        before = count_at(path, 1)
        run = ansible([rewrap_task(transit_mount, path)])
        result = run.task("rewrap")
        assert run.rc != 0 and run.status("rewrap") == "failed" and not result.get("changed")
        assert "is kept open for writing by pid %d" % writers.pids[0] in result["msg"], result["msg"]
        assert "Nothing was written" in result["msg"]
        assert [w["pid"] for w in result["open_writers"]] == [writers.pids[0]]  # the per-line appender is fine
        assert count_at(path, 2) == 0 and count_at(path, 1) >= before  # untouched
        outcomes.append("failed")

    # open_writers=report: the file is left as it is, the task says so and returns the census it holds.
    run = ansible([rewrap_task(transit_mount, path, open_writers="report")], expect_rc=0)
    result = run.task("rewrap")
    assert result["changed"] is False and result["rewrapped"] == 0 and result["oldest_version_in_use"] == 1
    assert [w["pid"] for w in result["open_writers"]] == [writers.pids[0]]
    assert "is kept open for writing by pid %d" % writers.pids[0] in run.output  # the warning
    assert "DEPRECATION" not in run.output
    assert count_at(path, 2) == 0
    outcomes.append("reported")

    written = writers.stop()
    lines, lost, duplicated = check_nothing_lost(client, transit_mount, path, expected, pools, written)
    record({"test": "writer keeping the file open", "modes": ["keep", "open"], "initial_lines": LINES,
            "appended": sum(written.values()), "lines_in_file": lines, "lost": len(lost),
            "duplicated": len(duplicated), "outcomes": outcomes})
    assert lost == [] and duplicated == []


def test_writer_keeping_the_file_open_with_flock_fails_after_the_rename(ansible, vault, transit_mount, tmp_path,
                                                                        writers_factory):
    """A long-lived writer that flocks each line waits on our lock, so it looks like a per-write opener before
    the rename; it then writes into the replaced file.  Its lines are carried over while we watch, and the
    task fails because it still holds the replaced file: never a success."""
    client, path, _expected, pools = seed(vault, transit_mount, tmp_path, ["w0"])
    writers = writers_factory(tmp_path, path, pools, ("keep-flock",))
    run = ansible([rewrap_task(transit_mount, path)])
    result = run.task("rewrap")
    written = writers.stop()
    assert run.rc != 0 and run.status("rewrap") == "failed", result
    msg = result["msg"]
    # Detected after the rename (the usual case: it waited on our lock) or, by chance, before it.
    assert ("pid %d" % writers.pids[0] in msg and "from now on is lost" in msg) or "is kept open for writing" in msg, msg
    record({"test": "writer keeping the file open with flock", "appended": written["w0"],
            "outcome": "failed", "carried_over_before_failing": result.get("carried_over"),
            "lines_at_risk": result.get("lines_at_risk")})
