"""rotate_keys.yml + the transit_rotation role against real OpenBao."""

import json
import os
import subprocess

import pytest

from lab import transit_data

from rotation_helpers import Rotation

KEYS = {"alpha": ([300, 100], None), "beta": ([200], "secret")}


@pytest.mark.compat
def test_full_rotation_report_and_idempotent_rerun(vault, transit_mount, tmp_path):
    rotation = Rotation(vault, transit_mount, tmp_path, KEYS, rotate_older_than="{{ age | default('30d') }}",
                        trim=("beta",))
    data = rotation.rotation_vars
    data["transit_rotation_keys"][1]["trim_without_backup"] = True  # beta allows no backups
    rotation.write_vars(data)
    first = rotation.run("-e", "age=0s", expect_rc=0)
    rotation.check_complete()
    report = rotation.report()
    alpha, beta = report["alpha"], report["beta"]
    assert (alpha["version_before"], alpha["version_after"]) == (2, 3)
    assert (alpha["min_decryption_version_before"], alpha["min_decryption_version_after"]) == (1, 3)
    assert alpha["consumers"][0]["census_before"] == {"1": 300, "2": 100}
    assert alpha["consumers"][0]["census_after"] == {"3": 400}
    assert alpha["blocked_by"] == [] and alpha["rotated"] is True
    assert beta["min_available_version_after"] == 2  # trimmed
    assert rotation.key("beta")["min_available_version"] == 2
    assert beta["trim"] == {"below": 2, "backup": None, "irreversible": True} and alpha["trim"] is None
    markdown = (rotation.report_dir / "rotation-report.md").read_text()
    assert "| alpha | %s | yes | 2 → 3 | 1 → 3 | 3 | ok |" % transit_mount in markdown
    assert "v1: 300, v2: 100" in markdown
    assert "| beta | %s | 2 | none - IRREVERSIBLE (trim_without_backup) |" % transit_mount in markdown
    assert "changed=0" not in first.stdout

    # Same schedule a moment later: nothing is due, nothing changes, report says so.
    second = rotation.run(expect_rc=0)
    assert "changed=0" in second.stdout.split("PLAY RECAP")[1]
    assert rotation.report()["alpha"]["rotated"] is False
    for entry in rotation.tmp_path.glob("consumers/.*keyops-rewrap*"):
        raise AssertionError("temp file left behind: %s" % entry)
    # Nothing due: one look at Vault, no consumer read (steps 2-4 skipped), and the report says why.
    assert second.status("Steps 2-4 - re-encrypt, raise min_decryption_version, trim (only when a key has work left)") \
        == "skipped"
    assert "nothing due" in rotation.report()["alpha"]["note"] and rotation.report()["alpha"]["consumers"] == []
    # ... unless the census is asked for: then every consumer is read again (and a lost one is reported).
    consumer = rotation.consumers("alpha")[0]["path"]
    os.rename(consumer, consumer + ".away")
    third = rotation.run("-e", "transit_rotation_census_always=true", expect_rc=2)
    assert rotation.report()["alpha"]["blocked_by"] and "min_decryption_version was not raised" in third.stdout
    steps = "Steps 2-4 - re-encrypt, raise min_decryption_version, trim (only when a key has work left)"
    assert rotation.run(expect_rc=0).status(steps) == "skipped"
    os.rename(consumer + ".away", consumer)


def test_a_run_stopped_after_step_1_is_completed_when_nothing_is_due_any_more(vault, transit_mount, tmp_path):
    """Rotated but not re-encrypted (a crash after step 1): the key is no longer due, yet older versions still
    decrypt, so steps 2-4 run and finish the job."""
    rotation = Rotation(vault, transit_mount, tmp_path, KEYS, rotate_older_than="30d")
    for name in KEYS:
        rotation.client.secrets.transit.rotate_key(name=name, mount_point=transit_mount)
    run = rotation.run(expect_rc=0)
    assert not run.task("Step 1 - rotate every key that is due")["changed"]
    rotation.check_complete()


def test_check_mode_changes_nothing(vault, transit_mount, tmp_path):
    rotation = Rotation(vault, transit_mount, tmp_path, KEYS)
    before = {name: rotation.key(name) for name in KEYS}
    files = {c["path"]: open(c["path"]).read() for name in KEYS for c in rotation.consumers(name)}
    run = rotation.run("--check", expect_rc=0)
    assert {name: rotation.key(name) for name in KEYS} == before
    assert {path: open(path).read() for path in files} == files
    assert "changed=" in run.stdout


@pytest.mark.compat
def test_consumers_that_cannot_be_rewrapped_keep_min_decryption_version(vault, transit_mount, tmp_path):
    keys = {"guarded": ([100, 50], None)}
    rotation = Rotation(vault, transit_mount, tmp_path, keys)
    good = rotation.consumers("guarded")[0]["path"]
    frozen = str(tmp_path / "frozen.txt")
    client = rotation.client
    transit_data.write_lines(frozen, transit_data.encrypt_many(client, transit_mount, "guarded", ["f1", "f2"]))
    if subprocess.run(["chattr", "+i", frozen], capture_output=True, check=False).returncode != 0:
        pytest.skip("this filesystem does not support immutable files (chattr +i)")
    try:
        data = rotation.rotation_vars
        data["transit_rotation_keys"][0]["consumers"] += [
            {"type": "file", "path": frozen},
            {"type": "file", "path": str(tmp_path / "missing.txt")},
            {"type": "file", "path": good, "host": "ghost"},
        ]
        rotation.write_vars(data)
        inventory = tmp_path / "hosts.ini"
        inventory.write_text("localhost ansible_connection=local\n"
                             "ghost ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh "
                             "ansible_ssh_common_args='-o ConnectTimeout=3 -o BatchMode=yes'\n")
        run = rotation.run(inventory=str(inventory))
        assert run.rc != 0
        assert "min_decryption_version was not raised for guarded" in run.output
        blocked = rotation.report()["guarded"]["blocked_by"]
        assert blocked == ["file:localhost:%s" % frozen, "file:localhost:%s/missing.txt" % tmp_path,
                           "file:ghost:%s" % good]
        errors = {c["id"]: c["error"] for c in rotation.report()["guarded"]["consumers"] if not c["ok"]}
        assert "not writable" in errors["file:localhost:%s" % frozen]
        assert "does not exist" in errors["file:localhost:%s/missing.txt" % tmp_path]
        assert "unreachable" in errors["file:ghost:%s" % good]
        key = rotation.key("guarded")
        assert key["latest_version"] == 3 and key["min_decryption_version"] == 1
        rotation.check_all_decryptable()
        assert "min_decryption_version kept: blocked by" in (rotation.report_dir / "rotation-report.md").read_text()
    finally:
        subprocess.run(["chattr", "-i", frozen], check=False)

    # The operator fixes the consumers; the re-run completes the job.
    data = rotation.rotation_vars
    data["transit_rotation_keys"][0]["consumers"] = data["transit_rotation_keys"][0]["consumers"][:2]
    rotation.write_vars(data)
    rotation.run(expect_rc=0)
    key = rotation.key("guarded")
    assert key["min_decryption_version"] == key["latest_version"]
    assert transit_data.versions_in(frozen) == [key["latest_version"]]


def test_missing_key_is_a_clear_error(vault, transit_mount, tmp_path):
    rotation = Rotation(vault, transit_mount, tmp_path, {"present": ([10], None)})
    data = rotation.rotation_vars
    data["transit_rotation_keys"].append({"name": "absent", "mount": transit_mount, "consumers": []})
    rotation.write_vars(data)
    run = rotation.run()
    assert run.rc != 0 and "transit key absent does not exist in mount %s" % transit_mount in run.output


def test_key_without_consumers_is_rotated_but_min_decryption_version_left(vault, transit_mount, tmp_path):
    rotation = Rotation(vault, transit_mount, tmp_path, {"lonely": ([10], None)})
    data = rotation.rotation_vars
    data["transit_rotation_keys"][0]["consumers"] = []
    rotation.write_vars(data)
    rotation.run(expect_rc=0)
    key = rotation.key("lonely")
    assert key["latest_version"] == 2 and key["min_decryption_version"] == 1
    assert rotation.report()["lonely"]["note"] == "no consumers declared: min_decryption_version left as is"
    assert json.loads((rotation.report_dir / "rotation-report.json").read_text())[0]["name"] == "lonely"
    assert os.path.exists(rotation.report_dir / "rotation-report.md")
