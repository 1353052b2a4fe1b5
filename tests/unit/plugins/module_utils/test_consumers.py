"""The consumer contract: every type complete, everything derived from it in sync."""

import glob
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _consumers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
TYPES = sorted(_consumers.CONSUMER_TYPES)


def _integration_sources():
    text = ""
    for path in glob.glob(os.path.join(ROOT, "tests", "integration", "*.py")):
        with open(path) as handle:
            text += handle.read()
    return text


@pytest.mark.parametrize("name", TYPES)
def test_every_type_has_its_task_file_module_utils_module_and_tests(name):
    row = _consumers.CONSUMER_TYPES[name]
    assert os.path.isfile(os.path.join(ROOT, "roles", "transit_rotation", "tasks", "consumer_%s.yml" % name))
    assert os.path.isfile(os.path.join(ROOT, "plugins", "module_utils", row.module_utils))
    assert os.path.isfile(os.path.join(ROOT, "plugins", "modules", row.module.rsplit(".", 1)[1] + ".py"))
    assert os.path.isfile(os.path.join(ROOT, "tests", "unit", "plugins", "module_utils",
                                       "test_%s" % row.module_utils.lstrip("_")))
    # The rotation role is exercised with this type against real servers.
    assert re.search(r"""["']?type["']?\s*:\s*["']%s["']""" % name, _integration_sources()), name
    assert row.records in ("per_item", "per_host", "shared")


def test_no_task_file_without_a_type():
    files = glob.glob(os.path.join(ROOT, "roles", "transit_rotation", "tasks", "consumer_*.yml"))
    assert sorted(os.path.basename(f)[len("consumer_"):-len(".yml")] for f in files) == TYPES


def test_generated_files_match_the_contract():
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "consumer_contract.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr + " (run tools/consumer_contract.py)"


def test_check_consumer_messages():
    with pytest.raises(_consumers.ConsumerInputError, match=r"unknown type 'tape' \(known: database, file"):
        _consumers.check_consumer({"type": "tape"})
    with pytest.raises(_consumers.ConsumerInputError, match=r"\(database\) needs table, column"):
        _consumers.check_consumer({"type": "database", "url": "postgresql://db/x", "primary_key": "id"})
    with pytest.raises(_consumers.ConsumerInputError, match="must be a dictionary"):
        _consumers.check_consumer("file")


@pytest.mark.parametrize("url, shown", [
    ("postgresql://app:s3cr:et@db1:5432/payments", "postgresql://app:********@db1:5432/payments"),
    ("mysql+pymysql://root:pw@127.0.0.1/x?charset=utf8", "mysql+pymysql://root:********@127.0.0.1/x?charset=utf8"),
    ("postgresql://app@db1/payments", "postgresql://app@db1/payments"),
    ("postgresql://db1/payments", "postgresql://db1/payments"),
])
def test_masked_url(url, shown):
    assert _consumers.masked_url(url) == shown


def test_public_args_leave_secrets_and_routing_out():
    row = _consumers.CONSUMER_TYPES["database"]
    args = _consumers.public_args(row, {"type": "database", "url": "postgresql://a:pw@h/d", "password": "pw",
                                        "table": "t", "column": "c", "primary_key": "id", "hosts": ["a"]})
    assert args == {"url": "postgresql://a:********@h/d", "table": "t", "column": "c", "primary_key": "id"}


def test_role_spec_is_the_union_and_requires_per_type():
    specs = _consumers.role_option_specs()
    assert specs["type"]["choices"] == TYPES and specs["password"]["no_log"] is True
    assert "Consumer types file, database." in specs["context_encoding"]["description"]
    assert ["type", "database", ["url", "table", "column", "primary_key"]] in _consumers.role_required_if()
