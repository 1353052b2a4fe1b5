"""keyrepo_rotate on key repositories in tmp_path: keystone's format kept, no gap, idempotent, no key material out."""

import json
import os
import stat

import pytest
from _fake_k8s import isolated_warnings  # noqa: F401  - a fixture: ansible-core's warnings are process-wide  # pylint: disable=unused-import
from _module_runner import assert_not_in_result, module_kwargs, no_log_options, run_module
from ansible_collections.keyops.lifecycle.plugins.module_utils import _keyrepo as kr
from ansible_collections.keyops.lifecycle.plugins.modules import keyrepo_rotate


def make_repo(path, *indexes):
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    keys = {}
    for index in indexes:
        keys[index] = kr.new_key()
        (path / str(index)).write_bytes(keys[index])
        os.chmod(path / str(index), 0o600)
    return keys


def on_disk(path):
    return dict((int(n), (path / n).read_bytes()) for n in os.listdir(path) if n.isdigit())


def materials(keys):
    return [k.decode() for k in keys.values()]


def fp(material):
    return kr.fingerprint(material)


@pytest.fixture
def repo(tmp_path):
    return tmp_path / "fernet-keys"


def rotate(repo_path, state, check_mode=False, diff=False, **kwargs):
    args = dict(path=str(repo_path), state=state, settle_seconds=0)
    args.update(kwargs)
    return run_module(keyrepo_rotate.main, args, check_mode=check_mode, diff=diff)


def test_argument_spec():
    kwargs = module_kwargs(keyrepo_rotate.main)
    spec = kwargs["argument_spec"]
    assert spec["path"]["required"] is True and spec["state"]["required"] is True
    assert spec["state"]["choices"] == ["present", "rotated", "staged", "promoted", "purged", "synced"]
    assert spec["repo_type"]["choices"] == ["fernet", "credential", "receipt"]
    assert spec["credential_migrate"]["choices"] == ["auto", "always", "never"]
    assert no_log_options(spec) == {"staged_key", "new_staged_key", "sync_keys"}
    assert sorted(kwargs["required_if"]) == sorted([("state", "staged", ["staged_key"]),
                                                    ("state", "promoted", ["expect_staged", "new_staged_key"]),
                                                    ("state", "synced", ["sync_keys"])])


def test_present_sets_up_like_fernet_setup_then_changes_nothing(repo):
    result = rotate(repo, "present")
    assert result["changed"] is True and result["actions"] == ["write 0", "write 1"]
    keys = on_disk(repo)
    assert sorted(keys) == [0, 1] and keys[0] != keys[1] and all(kr.valid_key(k) for k in keys.values())
    assert stat.S_IMODE(os.stat(repo).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(repo / n).st_mode) == 0o600 for n in ("0", "1"))
    assert result["keys"] == [{"index": 0, "fingerprint": fp(keys[0])}, {"index": 1, "fingerprint": fp(keys[1])}]
    assert result["primary_index"] == 1 and result["staged_fingerprint"] == fp(keys[0])
    assert result["mode_problems"] == [] and "diff" not in result
    assert_not_in_result(result, *materials(keys))
    again = rotate(repo, "present")
    assert again["changed"] is False and again["actions"] == [] and on_disk(repo) == keys


def test_check_mode_creates_nothing(repo):
    result = rotate(repo, "present", check_mode=True, diff=True)
    assert result["changed"] is True and result["actions"] == ["write 0", "write 1"]
    assert not os.path.lexists(repo)
    assert [k["index"] for k in result["diff"]["after"]] == [0, 1] and result["diff"]["before"] == []


def test_rotated_links_before_replacing_and_purges(repo):
    keys = make_repo(repo, 0, 1, 2)
    result = rotate(repo, "rotated", diff=True)
    assert result["actions"] == ["link 0 -> 3", "write 0", "remove 1"]
    after = on_disk(repo)
    assert sorted(after) == [0, 2, 3] and after[3] == keys[0] and after[2] == keys[2] and after[0] != keys[0]
    assert stat.S_IMODE(os.stat(repo / "0").st_mode) == stat.S_IMODE(os.stat(repo / "3").st_mode) == 0o600
    assert result["diff"]["before"] == [{"index": i, "fingerprint": fp(keys[i])} for i in (0, 1, 2)]
    assert [k["index"] for k in result["diff"]["after"]] == [0, 2, 3]
    assert_not_in_result(result, *materials(after))


def test_rotated_check_mode_leaves_the_files_alone(repo):
    keys = make_repo(repo, 0, 1)
    result = rotate(repo, "rotated", check_mode=True)
    assert result["changed"] is True and result["actions"] == ["link 0 -> 2", "write 0"]
    assert on_disk(repo) == keys and result["primary_index"] == 2


def test_the_settle_pause_lies_between_link_and_write(repo, monkeypatch):
    make_repo(repo, 0, 1)
    pauses = []
    monkeypatch.setattr(kr.time, "sleep", pauses.append)
    result = run_module(keyrepo_rotate.main, dict(path=str(repo), state="rotated"))
    assert result["changed"] is True and pauses == [2.0]


def test_staged_writes_the_given_key_once(repo):
    make_repo(repo, 0, 1)
    staged = kr.new_key().decode()
    result = rotate(repo, "staged", staged_key=staged)
    assert result["changed"] is True and result["actions"] == ["write 0"]
    assert on_disk(repo)[0] == staged.encode() and result["staged_fingerprint"] == fp(staged.encode())
    again = rotate(repo, "staged", staged_key=staged)
    assert again["changed"] is False and again["actions"] == []


def test_a_staged_key_that_is_no_fernet_key_is_refused_unshown(repo):
    keys = make_repo(repo, 0, 1)
    result = rotate(repo, "staged", staged_key="not-a-fernet-key-but-secret")
    assert result["failed"] is True and result["msg"] == "staged_key is not a Fernet key (32 bytes, URL-safe base64)"
    assert on_disk(repo) == keys
    assert_not_in_result(result, "not-a-fernet-key-but-secret")


def test_promoted_checks_the_staged_fingerprint_and_is_idempotent(repo):
    keys = make_repo(repo, 0, 1)
    new_staged = kr.new_key().decode()
    refused = rotate(repo, "promoted", expect_staged="0" * 16, new_staged_key=new_staged)
    assert refused["failed"] is True and "refusing to promote" in refused["msg"]
    assert refused["staged_fingerprint"] == fp(keys[0]) and on_disk(repo) == keys
    result = rotate(repo, "promoted", expect_staged=fp(keys[0]), new_staged_key=new_staged)
    assert result["changed"] is True and result["actions"] == ["link 0 -> 2", "write 0"]
    assert on_disk(repo) == {0: new_staged.encode(), 1: keys[1], 2: keys[0]}
    again = rotate(repo, "promoted", expect_staged=fp(keys[0]), new_staged_key=new_staged)
    assert again["changed"] is False and again["actions"] == []
    assert_not_in_result(result, new_staged, *materials(keys))


def test_promoted_completes_a_promotion_a_crash_interrupted(repo):
    keys = make_repo(repo, 0, 1)
    os.link(repo / "0", repo / "2")  # crashed after the link
    (repo / ".0.keyops-tmp-x").write_bytes(b"half")  # and left a temporary file
    new_staged = kr.new_key().decode()
    result = rotate(repo, "promoted", expect_staged=fp(keys[0]), new_staged_key=new_staged)
    assert result["actions"] == ["write 0"]
    assert on_disk(repo) == {0: new_staged.encode(), 1: keys[1], 2: keys[0]}
    assert sorted(os.listdir(repo)) == ["0", "1", "2"]


def test_promoted_with_purge(repo):
    keys = make_repo(repo, 0, 1, 2)
    new_staged = kr.new_key().decode()
    result = rotate(repo, "promoted", expect_staged=fp(keys[0]), new_staged_key=new_staged, purge=True)
    assert result["actions"] == ["link 0 -> 3", "write 0", "remove 1"]
    assert sorted(on_disk(repo)) == [0, 2, 3]
    refused = rotate(repo, "promoted", expect_staged=fp(new_staged.encode()), new_staged_key=kr.new_key().decode(),
                     purge=True, max_active_keys=2)
    assert refused["failed"] is True
    assert "purging in the promotion needs max_active_keys of at least 3" in refused["msg"]
    assert sorted(on_disk(repo)) == [0, 2, 3]


def test_purged_keeps_staged_and_primary(repo):
    make_repo(repo, 0, 1, 2, 3, 4)
    result = rotate(repo, "purged", max_active_keys=3)
    assert result["actions"] == ["remove 1", "remove 2"] and sorted(on_disk(repo)) == [0, 3, 4]
    assert rotate(repo, "purged", max_active_keys=3)["changed"] is False


def test_synced_adds_missing_keys_and_refuses_divergence(repo, tmp_path):
    reference = make_repo(tmp_path / "reference", 0, 3, 4)
    make_repo(repo)
    (repo / "3").write_bytes(reference[3])
    sync = dict((str(i), k.decode()) for i, k in reference.items())
    result = rotate(repo, "synced", sync_keys=sync)
    assert result["actions"] == ["write 4", "write 0"] and on_disk(repo) == reference
    assert rotate(repo, "synced", sync_keys=sync)["changed"] is False
    (repo / "4").write_bytes(kr.new_key())
    diverged = rotate(repo, "synced", sync_keys=sync)
    assert diverged["failed"] is True and "key 4 differs between nodes" in diverged["msg"]
    assert_not_in_result(diverged, *sync.values())


def test_sync_keys_with_a_non_integer_index(repo):
    result = rotate(repo, "synced", sync_keys={"primary": kr.new_key().decode()})
    assert result["failed"] is True and result["msg"] == "sync_keys must map integer indexes to keys"


@pytest.mark.parametrize("state,extra", [("rotated", {}), ("purged", {})])
def test_an_empty_repository_must_be_set_up_first(repo, state, extra):
    result = rotate(repo, state, **extra)
    assert result["failed"] is True and "holds no keys: set it up first (state=present" in result["msg"]


def test_required_options_per_state(repo):
    result = rotate(repo, "promoted", new_staged_key=kr.new_key().decode())
    assert result["failed"] is True and "state is promoted but all of the following are missing: expect_staged" \
        in result["msg"]


@pytest.mark.parametrize("extra,text", [
    ({"max_active_keys": 1}, "max_active_keys must be at least 2"),
    ({"max_active_keys": 4, "repo_type": "credential"}, "a credential key repository holds at most 3 keys"),
    ({"owner": "no-such-keystone-user"}, "no such user or group"),
    ({"path": ""}, "path is empty"),
])
def test_bad_settings_are_explained_and_nothing_is_written(repo, extra, text):
    keys = make_repo(repo, 0, 1)
    result = rotate(repo, "rotated", **extra)
    assert result["failed"] is True and text in result["msg"]
    assert on_disk(repo) == keys


def test_a_file_where_the_directory_should_be(tmp_path):
    path = tmp_path / "keys"
    path.write_text("x")
    result = rotate(path, "present")
    assert result["failed"] is True and "exists but is not a directory" in result["msg"]


def test_an_os_error_is_reported_with_the_keys_unchanged(tmp_path):
    (tmp_path / "file").write_text("x")
    result = rotate(tmp_path / "file" / "keys", "present")
    assert result["failed"] is True
    assert result["msg"].startswith("cannot update the key repository %s" % (tmp_path / "file" / "keys"))
    assert "the keys already there are unchanged" in result["msg"]


def test_a_damaged_repository_is_an_error(repo):
    make_repo(repo, 0, 1)
    (repo / "2").write_bytes(b"garbage")
    result = rotate(repo, "rotated")
    assert result["failed"] is True and result["msg"] == "%s is not a Fernet key (32 bytes, URL-safe base64): the " \
        "repository is damaged" % (repo / "2")


def test_credential_rotation_runs_credential_migrate(repo, tmp_path):
    make_repo(repo, 0, 1)
    script = tmp_path / "keystone-manage"
    record = tmp_path / "called"
    script.write_text("#!/bin/sh\necho \"$@\" > %s\n" % record)
    script.chmod(0o755)
    result = rotate(repo, "rotated", repo_type="credential", keystone_manage=str(script))
    assert result["credential_migrate"] == "ran keystone-manage credential_migrate"
    assert record.read_text().strip() == "credential_migrate"


def test_credential_migrate_failing_is_reported(repo, tmp_path):
    make_repo(repo, 0, 1)
    script = tmp_path / "keystone-manage"
    script.write_text("#!/bin/sh\necho 'no database' >&2\nexit 3\n")
    script.chmod(0o755)
    result = rotate(repo, "rotated", repo_type="credential", keystone_manage=str(script))
    assert result["failed"] is True
    assert result["msg"] == "keystone-manage credential_migrate failed (rc=3): no database"


@pytest.mark.parametrize("mode,expected", [
    ("never", "skipped (credential_migrate=never)"),
    ("auto", "not run: keystone-manage not found"),
])
def test_credential_migrate_skipped_or_missing(repo, isolated_warnings, mode, expected):
    make_repo(repo, 0, 1)
    result = rotate(repo, "rotated", repo_type="credential", credential_migrate=mode,
                    keystone_manage="keyops-test-no-such-keystone-manage")
    assert result["changed"] is True and result["credential_migrate"].startswith(expected)
    assert ("keystone-manage was not found" in json.dumps(result.get("warnings") or [])) is (mode == "auto")


def test_credential_migrate_always_without_the_command_fails(repo):
    make_repo(repo, 0, 1)
    result = rotate(repo, "rotated", repo_type="credential", credential_migrate="always",
                    keystone_manage="keyops-test-no-such-keystone-manage")
    assert result["failed"] is True and "keyops-test-no-such-keystone-manage" in result["msg"]


def test_mode_problems_are_reported(repo):
    make_repo(repo, 0, 1)
    os.chmod(repo / "1", 0o644)
    result = rotate(repo, "purged")
    assert result["changed"] is False and result["mode_problems"] == [str(repo / "1")]
