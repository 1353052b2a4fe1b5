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
