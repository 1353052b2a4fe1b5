"""Counts the reliability suites measure, merged and printed by conftest.py at the end of the session."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REPORT_DIR = os.path.join(ROOT, "build", "reliability")

COUNTS = {}


def count(suite, key, n=1):
    """``COUNTS[suite][key] += n``: what the reliability suites measured."""
    COUNTS.setdefault(suite, {}).setdefault(key, 0)
    COUNTS[suite][key] += n
