"""The race of the keystone rsync race, measured: token issuers and validators on N nodes while rotations run.

Runs with the Python of keystone's own venv (``build/keystone-venv``, see lab/keystone.py), because the
validators load keys with keystone's own code (``keystone.common.fernet_utils.FernetUtils.load_keys``,
re-read on every validation as keystone does) and decrypt with ``MultiFernet`` as keystone's token formatter
does; the baseline rotates with keystone's own ``FernetUtils.rotate_keys`` and distributes with real
``rsync -a --delete``.

One process per node loops: pick another node, issue a token with that node's current primary key (what its
keystone would do at that instant), validate it on this node.  A rejection is false unless the key the token
was made with had legitimately aged out: the rotations completed between issue and validation reached
``max_active_keys - 2`` (a worker descheduled for a while on a busy machine); those are counted apart as
``aged_out``.

``ours-merged`` is the role's merged pass (promote and purge in one step on each node, nodes one after the
other); ``unsafe-merged`` purges one key too many in it - the control showing the validators catch a key purged
while a node still issues tokens with it.

    python lab/keyrepo_race.py --protocol ours|ours-merged|unsafe-merged|baseline --nodes 5 --rotations 1000 \
        --workdir DIR  -> JSON
"""

import argparse
import hashlib
import importlib.util
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time

import keystone.conf  # noqa: F401  (registers the options FernetUtils reads)
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from keystone.common import fernet_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
keystone.conf.configure()
keystone.conf.CONF([], project="keystone", default_config_files=[])


def load_keyrepo():
    """The collection's own module_utils/_keyrepo.py (the code keyrepo_rotate runs), loaded by path."""
    spec = importlib.util.spec_from_file_location(
        "keyops_keyrepo", os.path.join(ROOT, "plugins", "module_utils", "_keyrepo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keystone_keys(path, max_active_keys):
    """Keys as keystone loads them (primary first); a file purged between listdir and open is retried."""
    utils = fernet_utils.FernetUtils(path, max_active_keys, "fernet_tokens")
    for attempt in range(5):
        try:
            return utils.load_keys(), attempt
        except FileNotFoundError:
            continue
    return [], 5


def short(key):
    """A few hex digits naming a key in a report (keystone's loader returns str, ours bytes)."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else bytes(key)).hexdigest()[:8]


def node_loop(index, nodes, max_active_keys, stop, counters, seed, rotations_done, pause=0.0, live=None):
    rng = random.Random(seed)
    validations = rejections = issue_failures = retries = aged_out = 0
    samples = []  # the first false rejections, described (short hashes of keys, never keys)
    others = [n for i, n in enumerate(nodes) if i != index]
    while not stop.is_set():
        if pause:
            time.sleep(pause)
        issuer = rng.choice(others)
        issuer_keys, tries = keystone_keys(issuer, max_active_keys)
        retries += tries
        if not issuer_keys:
            issue_failures += 1  # that node could not issue at all at this instant
            continue
        issued_at = rotations_done.value
        token = Fernet(issuer_keys[0]).encrypt(b"user=demo;project=demo")
        issued = time.monotonic()
        keys, tries = keystone_keys(nodes[index], max_active_keys)
        loaded = time.monotonic()
        retries += tries
        validations += 1
        try:
            MultiFernet([Fernet(k) for k in keys]).decrypt(token)
        except (InvalidToken, ValueError):
            if rotations_done.value - issued_at >= max_active_keys - 2:
                aged_out += 1
            else:
                rejections += 1
                if live is not None:
                    with live.false_rejections.get_lock():
                        live.false_rejections.value += 1
                if len(samples) < 10:
                    samples.append({"issuer": os.path.basename(issuer), "validator": os.path.basename(nodes[index]),
                                    "token_key": short(issuer_keys[0]),
                                    "issuer_keys": [short(k) for k in issuer_keys],
                                    "validator_keys": [short(k) for k in keys],
                                    "validator_load_seconds": round(loaded - issued, 4), "at": time.time()})
        if live is not None:
            live.validations[index] = validations  # validated (or rejected): this node's own slot, one writer
    counters.put({"validations": validations, "false_rejections": rejections, "issue_failures": issue_failures,
                  "load_retries": retries, "aged_out": aged_out, "rejection_samples": samples})


def setup(nodes, keyrepo):
    staged, primary = keyrepo.new_key(), keyrepo.new_key()
    for path in nodes:
        repo = keyrepo.KeyRepo(path)
        repo.ensure_dir()
        repo.write(0, staged)
        repo.write(1, primary)


def _agreed_staged_key(nodes, keyrepo):
    """Every node's repository and keys, the staged key they all hold (the barrier), and the next staged key."""
    repos = [keyrepo.KeyRepo(path) for path in nodes]
    states = [repo.read() for repo in repos]
    staged = {keyrepo.fingerprint(keys[0]) for keys in states}
    assert len(staged) == 1, "staged keys differ: %s" % staged
    return repos, states, staged.pop(), keyrepo.new_key()


def rotate_ours(nodes, keyrepo, max_active_keys, settle_seconds):
    """The keyrepo role's protocol: barrier on the staged key, promote everywhere, then purge everywhere.

    The role promotes all nodes in parallel, each one linking, pausing ``settle_seconds`` and replacing 0;
    here the links of all nodes come first, then one pause, then the new 0 on all nodes - the same order
    per node, in the same wall time.
    """
    repos, states, expect, new_staged = _agreed_staged_key(nodes, keyrepo)
    plans = [keyrepo.plan_promote(keys, expect, keyrepo.fingerprint(new_staged)) for keys in states]
    for repo, actions in zip(repos, plans):
        repo.apply([a for a in actions if a[0] == "link"], {})
    time.sleep(settle_seconds)
    for repo, actions in zip(repos, plans):
        repo.apply([a for a in actions if a[0] != "link"], {0: new_staged})
    for repo in repos:
        repo.apply(keyrepo.plan_purge(repo.read(), max_active_keys), {})


def rotate_merged(nodes, keyrepo, max_active_keys, settle_seconds, rng, unsafe=False):
    """The keyrepo role's merged pass (max_active_keys >= 3): each node promotes and purges in one step.

    The role runs the nodes in parallel; here they go one after the other in a random order - the widest spread
    the role allows, where some nodes have promoted and purged while others still issue tokens with the previous
    primary.  ``unsafe`` purges one key more (down to max_active_keys - 1, so the previous primary goes too): what
    a wrong merged pass would do; the validators must catch it.
    """
    repos, states, expect, new_staged = _agreed_staged_key(nodes, keyrepo)
    order = list(range(len(repos)))
    rng.shuffle(order)
    for index in order:
        keys = states[index]
        if unsafe:
            actions = keyrepo.plan_promote(keys, expect, keyrepo.fingerprint(new_staged))
            after = set(keys) | set(i for verb, i in actions if verb == "link")
            actions += keyrepo.plan_purge(dict.fromkeys(after), max_active_keys - 1)
        else:
            actions = keyrepo.plan_promote_purge(keys, expect, keyrepo.fingerprint(new_staged), max_active_keys)
        repos[index].apply(actions, {0: new_staged}, settle_seconds)


def rotate_baseline(nodes, max_active_keys):
    """the keystone rsync race as deployed: keystone's rotation on one node, then rsync --delete to the others."""
    fernet_utils.FernetUtils(nodes[0], max_active_keys, "fernet_tokens").rotate_keys()
    for path in nodes[1:]:
        subprocess.run(["rsync", "-a", "--delete", nodes[0] + "/", path + "/"], check=True)


class LiveCounts:
    """What the validators have done so far, readable while they run: validations per node, false rejections."""

    def __init__(self, node_count):
        self.validations = multiprocessing.Array("l", node_count, lock=False)
        self.false_rejections = multiprocessing.Value("l", 0)


class Validators:
    """One issuing/validating process per node; ``finish()`` stops them and sums their counts."""

    def __init__(self, nodes, max_active_keys, pause=0.0):
        self.stop = multiprocessing.Event()
        self.counters = multiprocessing.Queue()
        self.rotations_done = multiprocessing.Value("l", 0)
        self.live = LiveCounts(len(nodes))
        self.workers = [multiprocessing.Process(target=node_loop, args=(
            i, nodes, max_active_keys, self.stop, self.counters, i, self.rotations_done, pause, self.live))
            for i in range(len(nodes))]
        for worker in self.workers:
            worker.start()

    def rotated(self):
        with self.rotations_done.get_lock():
            self.rotations_done.value += 1

    def finish(self):
        self.stop.set()
        totals = {"validations": 0, "false_rejections": 0, "issue_failures": 0, "load_retries": 0, "aged_out": 0,
                  "rejection_samples": []}
        for _worker in self.workers:
            for key, value in self.counters.get(timeout=60).items():
                totals[key] += value
        totals["rejection_samples"] = sorted(totals["rejection_samples"], key=lambda sample: sample["at"])[:20]
        for worker in self.workers:
            worker.join(timeout=30)
        return totals


def run(protocol, node_count, rotations, workdir, max_active_keys=5, interval=0.0, settle_seconds=0.05,
        stop_after_rejections=0):
    """``rotations`` rotations by ``protocol`` on ``node_count`` nodes, validators running: their counts (JSON).

    ``stop_after_rejections``: stop rotating once the validators have seen that many false rejections (a run that
    is to show the rejections need not go on after it has)."""
    keyrepo = load_keyrepo()
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    nodes = [os.path.join(workdir, "node%d" % i) for i in range(node_count)]
    setup(nodes, keyrepo)
    validators = Validators(nodes, max_active_keys)
    rng = random.Random(rotations)
    started = time.monotonic()
    try:
        for _rotation in range(rotations):
            if protocol == "ours":
                rotate_ours(nodes, keyrepo, max_active_keys, settle_seconds)
            elif protocol in ("ours-merged", "unsafe-merged"):
                rotate_merged(nodes, keyrepo, max_active_keys, settle_seconds, rng, unsafe=protocol != "ours-merged")
            else:
                rotate_baseline(nodes, max_active_keys)
            validators.rotated()
            if interval:
                time.sleep(interval)
            if stop_after_rejections and validators.live.false_rejections.value >= stop_after_rejections:
                break
    finally:
        elapsed = time.monotonic() - started
        totals = validators.finish()
    final = [keyrepo.describe(keyrepo.KeyRepo(path).read()) for path in nodes]
    consistent = all(state["keys"] == final[0]["keys"] for state in final)
    return dict(totals, protocol=protocol, nodes=node_count, rotations=validators.rotations_done.value,
                seconds=round(elapsed, 2), consistent=consistent, primary_index=final[0]["primary_index"])


def publish(progress_file, counts):
    with open(progress_file + ".tmp", "w") as handle:
        json.dump(counts, handle)
    os.rename(progress_file + ".tmp", progress_file)


def watch(nodes, max_active_keys, stop_file, result_file, nice=0, pause=0.0, progress_file=None):
    """Validators on ``nodes`` until ``stop_file`` exists (rotations are driven from outside, e.g. by Ansible);
    every rejection counts as false (``aged_out`` is not told apart: the driver rotates slowly).

    ``progress_file``: the validations so far of each node, rewritten every 20 ms, so that whoever drives the
    rotations can wait until the validators have seen each state (tests/integration/callback_plugins/
    watch_barrier.py) instead of hoping they were scheduled.

    ``nice``, ``pause``: the validators never sleep, so each takes a core's share; a test suite running other
    tests beside them lowers their priority and lets each pause ``pause`` seconds between validations (still
    hundreds a second per node, each reading the keys afresh); the race harness and the benchmarks keep 0.
    """
    if nice:
        os.nice(nice)
    validators = Validators(nodes, max_active_keys, pause)
    parent = os.getppid()
    deadline = time.monotonic() + 3600
    # Also stop when whoever started us is gone (a failed test must not leave validators spinning).
    while not os.path.exists(stop_file) and os.getppid() == parent and time.monotonic() < deadline:
        if progress_file:
            publish(progress_file, list(validators.live.validations))
        time.sleep(0.02)
    totals = validators.finish()
    with open(result_file + ".tmp", "w") as handle:
        json.dump(totals, handle)
    os.rename(result_file + ".tmp", result_file)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--protocol", choices=("ours", "ours-merged", "unsafe-merged", "baseline", "watch"),
                        required=True)
    parser.add_argument("--node-dirs", help="watch: comma-separated repositories")
    parser.add_argument("--stop-file", help="watch: stop when this file exists")
    parser.add_argument("--result-file", help="watch: where the counts go")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rotations", type=int, default=1000)
    parser.add_argument("--max-active-keys", type=int, default=5)
    parser.add_argument("--settle-seconds", type=float, default=0.05)
    parser.add_argument("--nice", type=int, default=0, help="watch: lower the validators' priority by this much")
    parser.add_argument("--pause", type=float, default=0.0, help="watch: seconds between two validations")
    parser.add_argument("--progress-file", help="watch: each node's validations so far, rewritten every 20 ms")
    parser.add_argument("--workdir", help="ours/baseline: where the node repositories go")
    parser.add_argument("--stop-after-rejections", type=int, default=0,
                        help="stop rotating once this many false rejections were seen (0: never)")
    args = parser.parse_args(argv)
    if args.protocol == "watch":
        watch(args.node_dirs.split(","), args.max_active_keys, args.stop_file, args.result_file, args.nice, args.pause,
              args.progress_file)
        return 0
    print(json.dumps(run(args.protocol, args.nodes, args.rotations, args.workdir, args.max_active_keys,
                         settle_seconds=args.settle_seconds, stop_after_rejections=args.stop_after_rejections)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
