"""Reliability suite: faults against the real servers, argument fuzzing, and the secret scan of a whole run.

Counts (faults injected / recovered / reported, fuzz cases, scanned files and hits) are written to
build/reliability/<suite>.json and printed at the end of the session.
"""

import json
import os
import sys

from reliability_counts import COUNTS, REPORT_DIR, ROOT

# The integration tests' helpers (_ansible, rotation_helpers) and the lab.
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def pytest_configure(config):
    # The controller (or a run without xdist) starts from no counts.
    if not os.environ.get("PYTEST_XDIST_WORKER") and os.path.isdir(REPORT_DIR):
        for name in os.listdir(REPORT_DIR):
            if name.startswith("counts-"):
                os.unlink(os.path.join(REPORT_DIR, name))


def pytest_sessionfinish(session, exitstatus):
    if not COUNTS:
        return
    os.makedirs(REPORT_DIR, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(REPORT_DIR, "counts-%s.json" % worker), "w") as handle:
        json.dump(COUNTS, handle, indent=2, sort_keys=True)


def pytest_terminal_summary(terminalreporter):
    merged = {}
    if not os.path.isdir(REPORT_DIR):
        return
    for name in sorted(os.listdir(REPORT_DIR)):
        if name.startswith("counts-"):
            with open(os.path.join(REPORT_DIR, name)) as handle:
                for suite, values in json.load(handle).items():
                    for key, value in values.items():
                        merged.setdefault(suite, {}).setdefault(key, 0)
                        merged[suite][key] += value
    if merged:
        terminalreporter.section("reliability counts")
        for suite, values in sorted(merged.items()):
            terminalreporter.write_line("%s: %s" % (suite, ", ".join("%s=%s" % kv for kv in sorted(values.items()))))
