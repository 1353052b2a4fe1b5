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
