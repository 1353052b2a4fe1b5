"""keyrepo_info on key repositories in tmp_path: indexes and fingerprints only, modes, age, damage."""

import os
import time

import pytest
from _module_runner import assert_not_in_result, module_spec, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils import _keyrepo as kr
from ansible_collections.keyops.lifecycle.plugins.modules import keyrepo_info


def make_repo(path, *indexes):
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    keys = {}
    for index in indexes:
        keys[index] = kr.new_key()
        (path / str(index)).write_bytes(keys[index] + b"\n")
        os.chmod(path / str(index), 0o600)
    return keys


def info(path, check_mode=False, **kwargs):
    return run_module(keyrepo_info.main, dict(path=str(path), **kwargs), check_mode=check_mode)


def test_argument_spec():
    spec = module_spec(keyrepo_info.main)
    assert spec["path"]["required"] is True and spec["path"]["type"] == "path"
    assert spec["repo_type"]["choices"] == ["fernet", "credential", "receipt"]
    assert no_log_options(spec) == set()


@pytest.mark.parametrize("check_mode", [False, True])
def test_keys_as_indexes_and_fingerprints_only(tmp_path, check_mode):
    repo = tmp_path / "fernet-keys"
    keys = make_repo(repo, 0, 1, 2)
    (repo / "0.tmp").write_text("ignored, as keystone ignores it")
    before = sorted(os.listdir(repo))
    result = info(repo, check_mode=check_mode)
    assert result["changed"] is False
    assert result["keys"] == [{"index": i, "fingerprint": kr.fingerprint(keys[i])} for i in (0, 1, 2)]
    assert result["primary_index"] == 2 and result["staged_fingerprint"] == kr.fingerprint(keys[0])
    assert result["mode_problems"] == [] and 0 <= result["staged_age_seconds"] < 60
    assert sorted(os.listdir(repo)) == before
    assert_not_in_result(result, *[k.decode() for k in keys.values()])


def test_staged_age_is_the_time_since_key_0_was_written(tmp_path):
    repo = tmp_path / "keys"
    make_repo(repo, 0, 1)
    an_hour_ago = time.time() - 3600
    os.utime(repo / "0", (an_hour_ago, an_hour_ago))
    assert 3599 <= info(repo)["staged_age_seconds"] <= 3660


def test_a_missing_repository_is_empty(tmp_path):
    result = info(tmp_path / "nope")
    assert not result.get("failed") and result["keys"] == [] and result["primary_index"] is None
    assert result["staged_fingerprint"] is None and result["staged_age_seconds"] is None
    assert result["mode_problems"] == []


def test_only_a_staged_key_has_no_primary(tmp_path):
    repo = tmp_path / "keys"
    make_repo(repo, 0)
    result = info(repo)
    assert result["primary_index"] is None and result["staged_fingerprint"] is not None


def test_modes_other_than_keystones_are_listed(tmp_path):
    repo = tmp_path / "keys"
    make_repo(repo, 0, 1)
    os.chmod(repo, 0o755)
    os.chmod(repo / "1", 0o644)
    assert info(repo)["mode_problems"] == [str(repo), str(repo / "1")]


def test_a_damaged_repository_is_an_error(tmp_path):
    repo = tmp_path / "keys"
    make_repo(repo, 0, 1)
    (repo / "7").write_text("not a key")
    result = info(repo)
    assert result["failed"] is True
    assert result["msg"] == ("%s is not a Fernet key (32 bytes, URL-safe base64): the repository is damaged"
                             % (repo / "7"))


def test_a_file_instead_of_a_directory(tmp_path):
    path = tmp_path / "keys"
    path.write_text("x")
    result = info(path)
    assert result["failed"] is True and "exists but is not a directory" in result["msg"]


def test_an_unreadable_entry_is_reported_not_raised(tmp_path):
    repo = tmp_path / "keys"
    make_repo(repo, 0)
    (repo / "1").mkdir()  # a directory named like a key: open() fails
    result = info(repo)
    assert result["failed"] is True
    assert result["msg"].startswith("cannot read the key repository %s: " % repo)
    assert "check the path and that this user may read it" in result["msg"]


def test_a_bad_repo_type_is_refused(tmp_path):
    result = info(tmp_path, repo_type="tokens")
    assert result["failed"] is True and "repo_type" in result["msg"] and "fernet, credential, receipt" in result["msg"]
