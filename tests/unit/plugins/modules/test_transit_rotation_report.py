"""transit_rotation_report: the JSON and Markdown report written atomically, unchanged when already there."""

import json
import os
import stat

import pytest
from _module_runner import module_spec, run_module
from ansible_collections.keyops.lifecycle.plugins.modules import transit_rotation_report


def entry(**overrides):
    """One entry of the transit_rotation role's transit_rotation_results."""
    return dict({
        "name": "kasten", "mount": "transit", "rotated": True, "trim": None,
        "version_before": 2, "version_after": 3, "min_decryption_version_before": 1,
        "min_decryption_version_after": 3, "min_available_version_after": 0, "oldest_version_in_use": 3,
        "consumers": [{"id": "file:/var/lib/app/ciphertexts.txt", "census_before": {"2": 5, "10": 1},
                       "census_after": {"3": 6}, "rewrapped": 6, "ok": True, "error": None}],
        "blocked_by": [], "note": "ok",
    }, **overrides)


def run(tmp_path, results, check_mode=False, **options):
    return run_module(transit_rotation_report.main, dict(path=str(tmp_path / "reports"), results=results, **options),
                      check_mode=check_mode)


def test_argument_spec():
    spec = module_spec(transit_rotation_report.main)
    assert spec["path"]["required"] is True and spec["results"]["required"] is True
    assert spec["name"]["default"] == "rotation-report" and spec["mode"]["default"] == "0640"
    assert not any(option.get("no_log") for option in spec.values())  # a report holds no secret by design


def test_writes_both_files_with_the_mode(tmp_path):
    result = run(tmp_path, [entry()])
    directory = tmp_path / "reports"
    assert result["changed"] is True
    assert result["files"] == [str(directory / "rotation-report.json"), str(directory / "rotation-report.md")]
    assert json.loads((directory / "rotation-report.json").read_text()) == [entry()]
    markdown = (directory / "rotation-report.md").read_text()
    assert markdown == result["markdown"] and markdown.startswith("# Transit key rotation report\n")
    assert "| kasten | transit | yes | 2 → 3 | 1 → 3 | 3 | ok |" in markdown
    assert "v2: 5, v10: 1" in markdown  # versions sorted as numbers, not text
    for name in ("rotation-report.json", "rotation-report.md"):
        assert stat.S_IMODE(os.stat(directory / name).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(directory).st_mode) & 0o027 == 0  # created 0750 (or stricter under the umask)


def test_a_second_run_is_unchanged(tmp_path):
    run(tmp_path, [entry()])
    before = os.stat(tmp_path / "reports" / "rotation-report.md")
    result = run(tmp_path, [entry()])
    assert result["changed"] is False
    assert os.stat(tmp_path / "reports" / "rotation-report.md").st_ino == before.st_ino  # not rewritten


def test_a_changed_mode_alone_is_a_change(tmp_path):
    run(tmp_path, [entry()])
    result = run(tmp_path, [entry()], mode="0600")
    assert result["changed"] is True
    assert stat.S_IMODE(os.stat(tmp_path / "reports" / "rotation-report.json").st_mode) == 0o600


def test_check_mode_writes_nothing(tmp_path):
    result = run(tmp_path, [entry()], check_mode=True)
    assert result["changed"] is True and "# Transit key rotation report" in result["markdown"]
    assert not (tmp_path / "reports").exists()


def test_trims_and_blocking_consumers_are_reported(tmp_path):
    trimmed = entry(trim={"below": 3, "irreversible": False, "backup": {
        "path": "/backups/transit.kasten.v1-v3.transit-backup", "first_version": 1, "last_version": 3,
        "encrypted": True, "sha256": "ab" * 32}})
    blocked = entry(name="payroll", trim={"below": 2, "backup": None, "irreversible": True}, consumers=[
        {"id": "db:payroll", "census_before": {}, "census_after": {}, "rewrapped": 0, "ok": False,
         "error": "cannot connect"}])
    markdown = run(tmp_path, [trimmed, blocked])["markdown"]
    assert "| kasten | transit | 3 | `/backups/transit.kasten.v1-v3.transit-backup` (v1-v3, GPG-encrypted" in markdown
    assert "| payroll | transit | 2 | none - IRREVERSIBLE (trim_without_backup) |" in markdown
    assert "| payroll | `db:payroll` | - | - | 0 | BLOCKING: cannot connect |" in markdown


@pytest.mark.parametrize("mode", ["rw-r-----", "0999"])
def test_a_mode_that_is_not_octal_is_explained(tmp_path, mode):
    result = run(tmp_path, [entry()], mode=mode)
    assert result["failed"] and result["msg"] == "mode must be an octal string like '0640' (got %r)" % mode
    assert not (tmp_path / "reports").exists()


def test_results_of_another_shape_are_explained(tmp_path):
    result = run(tmp_path, [{"name": "kasten"}])
    assert result["failed"] and result["msg"].startswith("results are not transit_rotation_results (missing ")


def test_results_must_be_dictionaries(tmp_path):
    result = run(tmp_path, ["kasten"])
    assert result["failed"] and "results" in result["msg"]


def test_a_path_that_is_a_file_is_explained(tmp_path):
    (tmp_path / "reports").write_text("not a directory")
    result = run(tmp_path, [entry()])
    assert result["failed"] and result["msg"].startswith("cannot write the report %s" % (tmp_path / "reports"))


def test_a_census_of_the_wrong_type_is_explained(tmp_path):
    bad = entry(consumers=[dict(entry()["consumers"][0], census_before=["2", "5"])])
    result = run(tmp_path, [bad])
    assert result["failed"] and "results are not transit_rotation_results" in result["msg"]


def test_an_integer_mode_is_the_mode_itself(tmp_path):
    run(tmp_path, [entry()], mode=0o640)
    assert stat.S_IMODE(os.stat(tmp_path / "reports" / "rotation-report.json").st_mode) == 0o640
