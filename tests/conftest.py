"""Shared pytest setup: the collection is importable as ansible_collections.keyops.lifecycle."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "keyops", "lifecycle")

# `make` creates this link too; doing it here keeps a plain `pytest` run working.
if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
for path in (COLLECTIONS, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (COLLECTIONS, os.environ.get("PYTHONPATH")) if p)


# KEYOPS_TEST_CPU=<file>: one JSON line per test with the CPU seconds it cost - this process's and its reaped
# children's (ansible-playbook runs, servers a fixture stopped) - to find where make test's time goes. The wall
# time of a test under -n 4 says little on 2 cores; its CPU does not depend on the neighbours.
if os.environ.get("KEYOPS_TEST_CPU"):
    import json

    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        before = os.times()
        yield
        after = os.times()
        own = (after.user - before.user) + (after.system - before.system)
        children = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        with open(os.environ["KEYOPS_TEST_CPU"], "a") as handle:
            handle.write(json.dumps({"test": item.nodeid, "own": round(own, 2), "children": round(children, 2),
                                     "wall": round(after.elapsed - before.elapsed, 2)}) + "\n")
