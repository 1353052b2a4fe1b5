"""Where `make test`'s CPU goes, from the kernel's process accounting (every process, however short-lived).

    apt-get install acct && touch /tmp/pacct && accton /tmp/pacct
    make test; accton off
    python3 benchmarks/cpu_by_phase.py /tmp/pacct

Prints the CPU seconds of each pytest session (the integration run, the race harness, each compatibility line),
sanity, molecule, ansible-lint and docs, and how many ansible-playbook controllers and workers ran fresh.  A
process's parent is the one with its parent pid alive when it started (pids are reused over a run).
"""

import collections
import datetime
import subprocess
import sys

PHASES = (("molecule", "molecule"), ("ansible-test", "sanity"), ("ansible-lint", "ansible-lint"),
          ("sphinx-build", "docs"), ("antsibull-docs", "docs"))


def records(path):
    out = subprocess.run(["dump-acct", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) < 15:
            continue
        start = datetime.datetime.strptime(fields[14], "%a %b %d %H:%M:%S %Y").timestamp()
        yield {"comm": fields[0], "cpu": (float(fields[2]) + float(fields[3])) / 100, "pid": int(fields[9]),
               "ppid": int(fields[10]), "start": start, "end": start + float(fields[4]) / 100}


def link_parents(procs):
    by_pid = collections.defaultdict(list)
    for proc in procs:
        by_pid[proc["pid"]].append(proc)
    for proc in procs:
        alive = [p for p in by_pid.get(proc["ppid"], ())
                 if p is not proc and p["start"] <= proc["start"] + 1 and p["end"] >= proc["end"] - 1]
        proc["parent"] = max(alive, key=lambda p: p["start"]) if alive else None


def ancestors(proc):
    chain = []
    while proc is not None and len(chain) < 100:
        chain.append(proc)
        proc = proc["parent"]
    return chain


def phase(proc):
    chain = ancestors(proc)
    names = [p["comm"] for p in chain]
    for comm, label in PHASES:
        if comm in names:
            return label
    for p in chain:  # a pytest session: the topmost python started by a shell
        if p["comm"] == "python" and p["parent"] and p["parent"]["comm"] == "bash":
            return "pytest session of %.0f s (pid %d)" % (p["end"] - p["start"], p["pid"])
    return "other (%s)" % chain[-1]["comm"]


def main(path):
    procs = list(records(path))
    link_parents(procs)
    print("%d processes, %.0f CPU-s" % (len(procs), sum(p["cpu"] for p in procs)))
    totals = collections.Counter()
    for proc in procs:
        totals[phase(proc)] += proc["cpu"]
    for label, cpu in totals.most_common(12):
        print("%8.1f  %s" % (cpu, label))
    fresh = [p for p in procs if p["comm"] == "ansible-playboo"]
    workers = [p for p in fresh if p["parent"] and p["parent"]["comm"] == "ansible-playboo"]
    print("fresh ansible-playbook: %d controllers %.0f CPU-s, %d workers %.0f CPU-s"
          % (len(fresh) - len(workers), sum(p["cpu"] for p in fresh) - sum(p["cpu"] for p in workers),
             len(workers), sum(p["cpu"] for p in workers)))


if __name__ == "__main__":
    main(sys.argv[1])
