"""P2-scale: rotate_keys.yml for 100 keys x 10,000 ciphertexts (1,000,000) vs the single-process hvac script of P2.

The same approach as ``bench_p2_rotate_keys.py`` (whole ansible-playbook run against the script's wall time, both
from identical seeds in two fresh mounts of one OpenBao, alternated pairs, median ratio), at a scale where the
per-task floor of Ansible should matter less.  Target: <= 0.9x.  Linear strategy only (each pair takes about a
minute).

Only with ``KEYOPS_BENCH_SCALE=1`` (``make bench`` runs it then): seeding and three pairs take several minutes.
``KEYOPS_BENCH_SCALE_CIPHERTEXTS`` sets the ciphertexts per key (default 10,000).  Seeding is cheap: each key
encrypts one batch of distinct plaintexts (400, one request) and its consumer file repeats those lines up to the
count - Vault rewraps every line all the same.

``KEYOPS_BENCH_PROFILE=1`` adds two more playbook runs under ``py-spy record --subprocesses --threads`` (py-spy on
PATH or in the venv; not a requirement): with ``--idle``, the rewrap task's thread time sorted into Vault round
trips, file I/O, ``/proc`` scans, settle waits and the rest; with ``--gil``, its Python CPU time sorted the same way
(``build/p2-scale-profile-{idle,gil}.json``).
"""

import collections
import json
import os
import resource
import shutil
import sys
import time

import pytest
import yaml

from lab import transit_data

from _ansible import ansible_playbook
from bench_p2_rotate_keys import hvac_script
from conftest import ROOT, alternated_pairs, record, strategy_env, timed
from rotation_helpers import ROTATE_KEYS

KEYS = ["k%03d" % index for index in range(100)]
PER_KEY = int(os.environ.get("KEYOPS_BENCH_SCALE_CIPHERTEXTS", "10000"))
DISTINCT = 400  # distinct ciphertexts per key: one encrypt request each
PAIRS = 3
RUN_TIMEOUT = 900  # seconds for one playbook run

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(os.environ.get("KEYOPS_BENCH_SCALE") != "1",
                       reason="P2-scale (1M ciphertexts, several minutes) runs only with KEYOPS_BENCH_SCALE=1"),
]


def seed(client, mount, directory, per_key=PER_KEY):
    """A fresh transit mount with KEYS, each with a consumer file of ``per_key`` v1 ciphertexts; the vars file."""
    client.sys.enable_secrets_engine("transit", path=mount)
    os.makedirs(directory, mode=0o700)
    entries = []
    for name in KEYS:
        client.adapter.request("POST", "/v1/%s/keys/%s" % (mount, name), json={})
        distinct = transit_data.encrypt_many(client, mount, name,
                                             transit_data.plaintexts(min(DISTINCT, per_key), "%s-v1" % name))
        lines = (distinct * (per_key // len(distinct) + 1))[:per_key]
        path = os.path.join(directory, "%s.txt" % name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        entries.append({"name": name, "mount": mount, "consumers": [{"type": "file", "path": path}], "trim": False})
    vars_path = os.path.join(directory, "rotation.yml")
    with open(vars_path, "w") as handle:
        handle.write("---\n" + yaml.safe_dump({"transit_rotation_keys": entries}, sort_keys=False))
    return vars_path


def check_rotated(client, mount, directory, files=KEYS):
    """Every key at v2 with min_decryption_version 2; the named keys' files all v2, and their lines decrypt."""
    for name in KEYS:
        key = client.adapter.request("GET", "/v1/%s/keys/%s" % (mount, name)).json()["data"]
        assert (key["latest_version"], key["min_decryption_version"]) == (2, 2), (mount, name, key)
    for name in files:
        path = os.path.join(directory, "%s.txt" % name)
        assert transit_data.versions_in(path) == [2], path
        values = transit_data.read_ciphertexts(path)
        assert len(values) == PER_KEY, (path, len(values))
    for name in (files[0], files[-1]):
        values = transit_data.read_ciphertexts(os.path.join(directory, "%s.txt" % name))
        plain = transit_data.decrypt_many(client, mount, name, values[:DISTINCT])
        assert plain == transit_data.plaintexts(min(DISTINCT, PER_KEY), "%s-v1" % name), name


def run_rotation(vault, vars_path, directory):
    inventory = os.path.join(directory, "local.ini")
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local\n")
    report_dir = os.path.join(directory, "reports")
    return ansible_playbook(ROTATE_KEYS, os.path.join(directory, "run.jsonl"), env=dict(vault.env),
                            args=["-e", "@" + vars_path, "-e", "rotation_report_dir=%s" % report_dir],
                            inventory=inventory, expect_rc=0, timeout=RUN_TIMEOUT)


def server_pid(address):
    """The pid of the OpenBao dev server listening on ``address`` (its command line names the address)."""
    wanted = ("-dev-listen-address=" + address.split("://", 1)[-1]).encode()
    for pid in (name for name in os.listdir("/proc") if name.isdigit()):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                if wanted in handle.read().split(b"\0"):
                    return int(pid)
        except OSError:
            continue
    return None


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` so far (None when it cannot be read)."""
    if pid is None:
        return None
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu():
    times = os.times()
    return times.user + times.system


def task_seconds(runs):
    """Median seconds of every task (record_results: from the task's start to its last result) over ``runs``."""
    by_task = collections.OrderedDict()
    for run in runs:
        totals = collections.OrderedDict()
        for entry in run.results:
            totals[entry["task"]] = max(totals.get(entry["task"], 0.0), entry["seconds"] or 0.0)
        for task, seconds in totals.items():
            by_task.setdefault(task, []).append(seconds)
    return collections.OrderedDict((task, round(sorted(values)[len(values) // 2], 3))
                                   for task, values in by_task.items())


def test_p2_scale_rotate_keys_1m(vault, tmp_path):
    assert strategy_env("linear") == {}
    client = transit_data.client(vault.address, vault.token)
    rounds = {"n": 0}
    runs, seeding = [], []
    server = server_pid(vault.address)
    cpu = {"script_client": [], "script_openbao": [], "playbook_client": [], "playbook_openbao": []}

    def measured(side, client_cpu, function, *args):
        """``function(*args)`` timed, with the CPU seconds of the client (``client_cpu``) and of OpenBao."""
        before = client_cpu(), cpu_seconds(server)
        seconds, value = timed(function, *args)
        after = client_cpu(), cpu_seconds(server)
        cpu[side + "_client"].append(round(after[0] - before[0], 2))
        cpu[side + "_openbao"].append(round(after[1] - before[1], 2) if server else None)
        return seconds, value

    def fresh(side):
        mount = "bench-p2s-%s-%d" % (side, rounds["n"])
        directory = str(tmp_path / mount)
        seconds, vars_path = timed(seed, client, mount, directory)
        seeding.append(round(seconds, 1))
        return mount, directory, vars_path

    def script():
        mount, directory, vars_path = fresh("script")
        with open(vars_path) as handle:
            rotation_vars = yaml.safe_load(handle)
        seconds = measured("script", own_cpu, hvac_script, vault, mount, rotation_vars)[0]
        check_rotated(client, mount, directory, files=KEYS[:2] + KEYS[-2:])
        shutil.rmtree(directory)
        return seconds

    def playbook():
        mount, directory, vars_path = fresh("playbook")
        rounds["n"] += 1
        seconds, run = measured("playbook", children_cpu, run_rotation, vault, vars_path, directory)
        check_rotated(client, mount, directory)
        runs.append(run)
        shutil.rmtree(directory)
        return seconds

    load = [round(value, 2) for value in os.getloadavg()]
    script_seconds, playbook_seconds, ratio = alternated_pairs(script, playbook, pairs=PAIRS)
    load += [round(value, 2) for value in os.getloadavg()]
    profile = task_seconds(runs)
    numbers = dict(keys=len(KEYS), ciphertexts=len(KEYS) * PER_KEY, hvac_script_seconds=script_seconds,
                   rotate_keys_playbook_seconds=playbook_seconds, median_ratio=ratio, target="<= 0.9",
                   seeding_seconds=seeding, load_average=load, cpu_seconds=cpu, task_seconds_median=profile,
                   tasks_total_seconds=round(sum(profile.values()), 2))
    if os.environ.get("KEYOPS_BENCH_PROFILE") == "1":
        for mode in ("idle", "gil"):
            mount, directory, vars_path = fresh("profiled-" + mode)
            numbers["py_spy_" + mode] = profile_rewrap(vault, vars_path, directory, mode)
            check_rotated(client, mount, directory)
            shutil.rmtree(directory)
    record("P2-scale (linear)", **numbers)
    assert ratio <= 0.9, ("rotate_keys.yml took %.2fx the hvac script's wall time at %d ciphertexts (target 0.9x)"
                          % (ratio, len(KEYS) * PER_KEY))


# --- py-spy: where the rewrap task's time goes -------------------------------------------------------------------

REWRAP_FILES = ("module_utils/_rewrap.py", "module_utils/_atomic.py", "modules/vault_transit_rewrap.py")
PROC_SCANS = ("_walk_descriptors", "_fd_state", "scan_writers", "flock_waiters", "persistent_writers", "command_of")
PARSING = ("_chunks", "parse", "parse_line", "census_add", "ciphertext_version", "loose_version", "_new_version",
           "replace_ciphertext", "take_census", "_as_census")


def py_spy():
    found = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(found):
        pytest.skip("KEYOPS_BENCH_PROFILE=1 needs py-spy (pip install py-spy)")
    return found


def parse_frame(frame):
    """'Class.function (path:line)' -> (function without its class, path, line)."""
    function, _sep, where = frame.rpartition(" (")
    path, _sep, line = where.rstrip(")").rpartition(":")
    return function.rsplit(".", 1)[-1], path, int(line) if line.isdigit() else 0


_SOURCE = {}


def source_line(path, line):
    if path not in _SOURCE:
        try:
            with open(path) as handle:
                _SOURCE[path] = handle.read().splitlines()
        except OSError:
            _SOURCE[path] = []
    lines = _SOURCE[path]
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def classify(frames):
    """(thread kind, category) of one py-spy sample of the rewrap module (frames root first), or None.

    Thread kinds: the module's main thread (waits for the files), file threads (up to 16 files in flight: read,
    parse, batches to Vault, fsyncs, the open-writer scans and the settle window of one file each) and request
    threads (one per file in flight, sending that file's rewrap batches; at most ``workers`` (4) requests at once)."""
    parsed = [parse_frame(frame) for frame in frames if " (" in frame]
    if not any(path.endswith(REWRAP_FILES) for _f, path, _l in parsed):
        return None
    functions = [function for function, _p, _l in parsed]
    leaf = functions[-1]
    ours = [entry for entry in parsed if entry[1].endswith(REWRAP_FILES)]
    function, path, line = ours[-1]  # the deepest frame of the collection's code, and its statement
    statement = source_line(path, line)
    if "_send" in functions:
        if "limited" in functions and "acquire" in functions:
            return "request threads", "waiting for a request slot (at most `workers` requests at once)"
        if leaf in ("readinto", "recv_into", "recv") or "_read_status" in functions:
            return "request threads", "Vault round trip: waiting for the response"
        return "request threads", "client CPU: JSON, requests, urllib3"
    if "one" not in functions:
        if "rewrap_many" in functions:
            return "module main thread", "waiting for the file threads"
        return "module main thread", "module start and arguments"
    if any(name in PROC_SCANS for name in functions) or function == "descriptors":
        return "file threads", "/proc scans (open-writer checks before the rename and in the settle window)"
    if function == "_drain" and "result" in statement:
        return "file threads", "Vault: waiting for the file's rewrap batches"
    if function == "feed" and "submit" in statement:
        return "file threads", "Vault: handing a batch to the request thread"
    if "key_info" in functions or "latest_version" in functions:
        return "file threads", "Vault: reading the key (once per key)"
    if "sleep" in statement:
        return "file threads", "settle window / catch-up polls (sleep)"
    if "fsync" in statement or function in ("commit", "fsync_directory"):
        return "file threads", "file I/O: fsync of the new file and its directory, rename"
    if function in ("_flock", "locked") or "flock" in statement:
        return "file threads", "file I/O: flock"
    if function in ("_lines", "pending_bytes") or "for raw in source" in statement:
        return "file threads", "file I/O: reading the file"
    if function == "_drain" and "sink" in statement or function == "_append_locked":
        return "file threads", "file I/O: writing the new file"
    if function in PARSING:
        return "file threads", "census and line parsing (CPU)"
    if function in ("remove_stale_temps", "stale_twins"):
        return "file threads", "file I/O: looking for stale temporary files"
    if leaf in ("_wait_for_tstate_lock", "join", "shutdown", "__exit__") or "ThreadPoolExecutor" in statement:
        return "file threads", "starting and stopping the file's request thread"
    return "file threads", "other (%s: %s)" % (function, statement[:60])


JSON_ENCODE = ("dumps", "encode", "iterencode", "prepare_body")
JSON_DECODE = ("loads", "decode", "raw_decode", "json", "_answer")


def innermost_process(frames):
    """The process a py-spy --subprocesses sample was taken in (its last ``process PID:"command"`` frame)."""
    processes = [frame for frame in frames if frame.startswith("process ")]
    return processes[-1].split(":", 1)[0] if processes else "?"


def classify_gil(frames):
    """(part, category) of one ``py-spy --gil`` sample (the thread holding the GIL) of the process running the
    rewrap task, or None for another process.  Parts: the rewrap's own code, and Ansible's work in that process."""
    parsed = [parse_frame(frame) for frame in frames if " (" in frame and not frame.startswith("process ")]
    functions = [function for function, _p, _l in parsed]
    if not any(path.endswith(REWRAP_FILES) for _f, path, _l in parsed):
        return "other", innermost_process(frames)
    if "_send" in functions or "key_info" in functions:
        if any(name in JSON_ENCODE for name in functions):
            return "rewrap", "Vault requests: JSON encoding of the batch"
        if any(name in JSON_DECODE for name in functions):
            return "rewrap", "Vault requests: JSON decoding of the response"
        return "rewrap", "Vault requests: requests, urllib3, http.client"
    if any(name in PROC_SCANS for name in functions) or "descriptors" in functions:
        return "rewrap", "/proc scans"
    ours = [entry for entry in parsed if entry[1].endswith(REWRAP_FILES)]
    function, path, line = ours[-1]
    statement = source_line(path, line)
    if function in PARSING or function == "_lines":
        return "rewrap", "reading and parsing lines, census"
    if function == "_drain":
        return "rewrap", "putting the new ciphertexts into the lines, writing them"
    if "fsync" in statement or function in ("commit", "fsync_directory", "_flock", "locked"):
        return "rewrap", "fsync, rename, flock"
    if function in ("feed", "submit") or "ThreadPoolExecutor" in statement or "pool" in statement:
        return "rewrap", "threads: submitting batches, starting request threads"
    return "rewrap", "other (%s: %s)" % (function, statement[:50])


def profile_rewrap(vault, vars_path, directory, mode="idle"):
    """One playbook run under py-spy; the rewrap task's samples sorted into categories.

    ``mode`` "idle": every thread, waiting or not (thread-seconds: where each thread's time goes); "gil": only the
    thread holding the GIL (seconds of Python CPU, one core at most per process)."""
    raw = os.path.join(ROOT, "build", "p2-scale-py-spy-%s.txt" % mode)
    rate = 50
    spy = [py_spy(), "record", "--subprocesses", "--threads", "--nonblocking", "--full-filenames",
           "--rate", str(rate), "--format", "raw", "--output", raw, "--idle" if mode == "idle" else "--gil", "--"]
    # Run the same command under py-spy: ansible_playbook's argv with py-spy in front.
    import _ansible  # pylint: disable=import-outside-toplevel
    original = _ansible.BIN
    wrapper = os.path.join(directory, "bin")
    os.makedirs(wrapper)
    with open(os.path.join(wrapper, "ansible-playbook"), "w") as handle:
        handle.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (" ".join(spy), os.path.join(original, "ansible-playbook")))
    os.chmod(os.path.join(wrapper, "ansible-playbook"), 0o755)
    _ansible.BIN = wrapper
    try:
        start = time.perf_counter()
        run = run_rotation(vault, vars_path, directory)
        wall = time.perf_counter() - start
    finally:
        _ansible.BIN = original
    samples = collections.defaultdict(collections.Counter)
    with open(raw) as handle:
        lines = [text.rstrip("\n").rpartition(" ") for text in handle]
    if mode == "idle":
        for stack, _sep, count in lines:
            found = classify(stack.split(";"))
            if found is not None:
                samples[found[0]][found[1]] += int(count)
    else:
        found = [(stack.split(";"), classify_gil(stack.split(";")), int(count)) for stack, _sep, count in lines]
        rewrap_processes = set(innermost_process(frames) for frames, (part, _c), _n in found if part == "rewrap")
        for _frames, (part, category), count in found:
            if part == "rewrap":
                samples["rewrap task's process: the module"][category] += count
            elif category in rewrap_processes:
                samples["rewrap task's process: Ansible"]["Ansible's worker (task set-up, result handling)"] += count
            else:
                samples["other processes (whole run)"]["ansible-playbook and the other tasks' workers"] += count
    rewrap_task = [entry["seconds"] for entry in run.results if entry["task"].startswith("Step 2 - rewrap")]
    summary = {
        "playbook_seconds_under_py_spy": round(wall, 2),
        "rewrap_task_seconds_under_py_spy": round(max(rewrap_task), 2) if rewrap_task else None,
        "raw_samples": raw,
        "sample_rate_hz": rate,
        "mode": mode,
    }
    for kind, counts in sorted(samples.items()):
        total = sum(counts.values())
        summary[kind] = collections.OrderedDict(
            [("thread_seconds", round(total / float(rate), 2))]
            + [(name, "%.2f s (%.1f %%)" % (count / float(rate), 100.0 * count / total))
               for name, count in counts.most_common()])
    with open(os.path.join(ROOT, "build", "p2-scale-profile-%s.json" % mode), "w") as handle:
        json.dump(summary, handle, indent=2)
    return summary
