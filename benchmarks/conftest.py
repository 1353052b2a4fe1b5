"""Benchmarks: ratios against a baseline measured in the same run on the same OpenBao.

Run with `make bench` (never part of `make test`).  Each benchmark appends its numbers to
build/bench-results.json and prints a table row for benchmarks/README.md.
"""

import json
import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, ROOT)

from lab.openbao import OpenBaoDevServer  # noqa: E402


class Target:
    def __init__(self, address, token):
        self.address, self.token = address, token

    @property
    def env(self):
        return {"VAULT_ADDR": self.address, "VAULT_TOKEN": self.token}


@pytest.fixture(scope="session")
def vault(tmp_path_factory):
    with OpenBaoDevServer(str(tmp_path_factory.mktemp("bench-openbao"))) as server:
        yield Target(server.address, server.token)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def record(name, **numbers):
    path = os.path.join(ROOT, "build", "bench-results.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    results = {}
    if os.path.exists(path):
        with open(path) as handle:
            results = json.load(handle)
    results[name] = numbers
    with open(path, "w") as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
    print("\n%s: %s" % (name, json.dumps(numbers, sort_keys=True)))


def alternated_pairs(baseline, ours, pairs=3):
    """Time ``baseline()`` and ``ours()`` alternately ``pairs`` times (each call returns None or a number of
    seconds to use instead of its wall time); returns both lists of seconds and the median of the per-pair ratios
    ours/baseline.  Alternating spreads a noisy neighbour over both sides; the median drops the odd pair."""
    seconds = {"baseline": [], "ours": []}
    ratios = []
    for _pair in range(pairs):
        for name, function in (("baseline", baseline), ("ours", ours)):
            elapsed, value = timed(function)
            seconds[name].append(round(value if isinstance(value, (int, float)) else elapsed, 3))
        ratios.append(seconds["ours"][-1] / seconds["baseline"][-1])
    return seconds["baseline"], seconds["ours"], round(sorted(ratios)[len(ratios) // 2], 2)


STRATEGIES = ("linear", "mitogen_linear")


def strategy_env(strategy):
    """ansible-playbook environment for ``strategy`` (the default linear one, or mitogen's)."""
    if strategy == "linear":
        return {}
    from _ansible import mitogen_env  # pylint: disable=import-outside-toplevel
    return mitogen_env()
