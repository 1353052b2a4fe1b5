"""keyrepo_rotate against keystone itself: keystone accepts our repositories and we accept keystone's."""

import os
import stat

import pytest

from lab.keystone_lab import KeystoneConfig


def task(name, **args):
    return {"name": name, "keyops.lifecycle.keyrepo_rotate": dict({"owner": "", "group": ""}, **args)}


def listing(path):
    return sorted(int(n) for n in os.listdir(path) if n.isdigit())


def test_keystone_accepts_what_we_write_and_we_accept_keystones(ansible, tmp_path):
    conf = KeystoneConfig(str(tmp_path / "ks"))
    ours = str(tmp_path / "ours")
    created = ansible([task("setup", path=ours, state="present")], expect_rc=0).task("setup")
    assert created["changed"] and [k["index"] for k in created["keys"]] == [0, 1] and created["primary_index"] == 1
    assert stat.S_IMODE(os.stat(ours).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(os.path.join(ours, n)).st_mode) == 0o600 for n in os.listdir(ours))
    assert ansible([task("setup", path=ours, state="present")], expect_rc=0).task("setup")["changed"] is False
    rotated = ansible([task("rotate", path=ours, state="rotated", settle_seconds=0)], expect_rc=0).task("rotate")
    assert rotated["actions"] == ["link 0 -> 2", "write 0"] and listing(ours) == [0, 1, 2]
    # keystone's loader takes it, and a token made with our primary decrypts through keystone's key list
    assert conf.validate(ours) == (3, True)
    # keystone-manage rotates our repository further
    ours_conf = KeystoneConfig(str(tmp_path / "ks-ours"))
    os.rename(ours, ours_conf.fernet)
    result = ours_conf.manage("fernet_rotate")
    assert result.returncode == 0, result.stderr
    assert listing(ours_conf.fernet) == [0, 2, 3]

    # keystone's own fernet_setup + fernet_rotate; our module reads it and rotates it
    assert conf.manage("fernet_setup").returncode == 0
    assert conf.manage("fernet_rotate").returncode == 0
    info = ansible([{"name": "info", "keyops.lifecycle.keyrepo_info": {"path": conf.fernet}}],
                   expect_rc=0).task("info")
    assert [k["index"] for k in info["keys"]] == [0, 1, 2] and info["mode_problems"] == []
    again = ansible([task("rotate", path=conf.fernet, state="rotated", settle_seconds=0)], expect_rc=0)
    assert listing(conf.fernet) == [0, 2, 3] and again.task("rotate")["primary_index"] == 3
    assert conf.validate(conf.fernet) == (3, True)
    # receipts got set up by keystone too, in the temporary directory (never /etc)
    assert listing(conf.receipts) == [0, 1, 2]


def test_credential_repository(ansible, tmp_path):
    conf = KeystoneConfig(str(tmp_path / "ks"))
    result = conf.manage("credential_setup")
    assert result.returncode == 0, result.stderr
    too_many = ansible([task("cred", path=conf.credential, repo_type="credential", max_active_keys=4,
                             state="purged")])
    assert too_many.rc != 0 and "at most 3 keys" in too_many.task("cred")["msg"]
    rotated = ansible([task("cred", path=conf.credential, repo_type="credential", state="rotated",
                            settle_seconds=0, keystone_manage="/nonexistent/keystone-manage")], expect_rc=0)
    result = rotated.task("cred")
    assert result["credential_migrate"] == "not run: keystone-manage not found"
    assert "credential_migrate did not run" in rotated.output
    assert listing(conf.credential) == [0, 1, 2]


def test_stage_promote_purge_sync_check_mode_and_secrecy(ansible, tmp_path):
    import base64

    repo = str(tmp_path / "repo")
    ansible([task("setup", path=repo, state="present")], expect_rc=0)
    staged = base64.urlsafe_b64encode(b"s" * 32).decode()
    new_staged = base64.urlsafe_b64encode(b"n" * 32).decode()
    stage = ansible([task("stage", path=repo, state="staged", staged_key=staged)], diff=True, verbosity=3,
                    expect_rc=0)
    fp = stage.task("stage")["staged_fingerprint"]
    assert stage.task("stage")["changed"] and staged not in stage.output
    assert ansible([task("stage", path=repo, state="staged", staged_key=staged)], expect_rc=0).task("stage")[
        "changed"] is False

    wrong = ansible([task("promote", path=repo, state="promoted", expect_staged="0" * 16,
                          new_staged_key=new_staged)])
    assert wrong.rc != 0 and "refusing to promote" in wrong.task("promote")["msg"]
    promote = task("promote", path=repo, state="promoted", expect_staged=fp, new_staged_key=new_staged,
                   settle_seconds=0.1)
    check = ansible([promote], check=True, diff=True, expect_rc=0).task("promote")
    assert check["changed"] and listing(repo) == [0, 1]
    assert [k["index"] for k in check["diff"]["after"]] == [0, 1, 2]
    done = ansible([promote], verbosity=3, expect_rc=0)
    assert done.task("promote")["keys"][-1] == {"index": 2, "fingerprint": fp}
    assert new_staged not in done.output and staged not in done.output
    assert ansible([promote], expect_rc=0).task("promote")["changed"] is False  # idempotent
    with open(os.path.join(repo, "2")) as handle:
        assert handle.read() == staged

    for _round in range(3):
        ansible([task("rotate", path=repo, state="rotated", max_active_keys=9, settle_seconds=0)], expect_rc=0)
    purge = ansible([task("purge", path=repo, state="purged", max_active_keys=3)], expect_rc=0).task("purge")
    assert purge["actions"] == ["remove 1", "remove 2", "remove 3"] and listing(repo) == [0, 4, 5]

    other = str(tmp_path / "other")
    sync = {"0": new_staged, "5": staged}
    synced = ansible([task("sync", path=other, state="synced", sync_keys=sync)], verbosity=3, expect_rc=0)
    assert listing(other) == [0, 5] and new_staged not in synced.output

    broken = str(tmp_path / "broken")
    os.makedirs(broken)
    with open(os.path.join(broken, "1"), "w") as handle:
        handle.write("not a key")
    bad = ansible([{"name": "info", "keyops.lifecycle.keyrepo_info": {"path": broken}}])
    assert bad.rc != 0 and "is not a Fernet key" in bad.task("info")["msg"] and "Traceback" not in bad.output
    not_a_directory = str(tmp_path / "broken" / "1")
    for given in ({"name": "info", "keyops.lifecycle.keyrepo_info": {"path": not_a_directory}},
                  task("present", path=not_a_directory, state="present")):
        refused = ansible([given])
        assert refused.rc != 0 and "exists but is not a directory" in refused.task(given["name"])["msg"], refused.output
    os.makedirs(os.path.join(broken, "2", "x"))  # a key "file" that is a directory: unreadable, reported
    os.unlink(os.path.join(broken, "1"))
    unreadable = ansible([{"name": "info", "keyops.lifecycle.keyrepo_info": {"path": broken}}])
    assert unreadable.rc != 0 and "cannot read the key repository" in unreadable.task("info")["msg"]
    assert "Traceback" not in unreadable.output
    empty = ansible([task("promote", path=str(tmp_path / "none"), state="purged")])
    assert empty.rc != 0 and "holds no keys" in empty.task("promote")["msg"]


@pytest.mark.parametrize("max_keys,needed_ok", [(3, False), (52, True)])
def test_role_checks_max_active_keys(ansible, tmp_path, max_keys, needed_ok):
    run = ansible([{"name": "role", "ansible.builtin.include_role": {"name": "keyops.lifecycle.keyrepo"},
                    "vars": {"keyrepo_path": str(tmp_path / "repo"), "keyrepo_owner": "", "keyrepo_group": "",
                             "keyrepo_max_active_keys": max_keys, "keyrepo_rotation_interval": 3600}}])
    if needed_ok:
        assert run.rc == 0, run.output
    else:
        assert run.rc != 0 and "keyrepo_max_active_keys=3 is too small" in run.output
        assert not os.path.exists(str(tmp_path / "repo"))


def test_owner_and_group_are_applied(ansible, tmp_path):
    import grp
    import pwd
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("creating a keystone user needs root")
    if subprocess.run(["getent", "passwd", "keyops-keystone"], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "keyops-keystone"], check=True)
    repo = str(tmp_path / "owned")
    args = {"path": repo, "state": "present", "owner": "keyops-keystone", "group": "keyops-keystone"}
    ansible([{"name": "setup", "keyops.lifecycle.keyrepo_rotate": args}], expect_rc=0)
    uid, gid = pwd.getpwnam("keyops-keystone").pw_uid, grp.getgrnam("keyops-keystone").gr_gid
    for path in [repo] + [os.path.join(repo, n) for n in os.listdir(repo)]:
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (uid, gid)
    missing = ansible([{"name": "setup", "keyops.lifecycle.keyrepo_rotate": dict(args, owner="no-such-user-x")}])
    assert missing.rc != 0 and "no such user or group" in missing.task("setup")["msg"]


def test_min_rotation_age_makes_a_rerun_reconcile_only(tmp_path):
    """A job retried soon after a rotation must not rotate twice (that would purge a key still in use)."""
    from keyrepo_helpers import KeystoneNodes

    nodes = KeystoneNodes(tmp_path, count=3)
    nodes.rotate(args=["-e", "keyrepo_min_rotation_age=3600"])  # sets the repositories up, then rotates once
    first = dict((node, nodes.keys(node)) for node in nodes.nodes)
    again = nodes.rotate(args=["-e", "keyrepo_min_rotation_age=3600"])
    assert dict((node, nodes.keys(node)) for node in nodes.nodes) == first
    assert again.changed_count == 0
    assert again.status("(c) Promote the staged key on every node (and purge what exceeds max_active_keys)") == "skipped"
    # A node that lost its repository is still reconciled while the rotation waits.
    import shutil

    shutil.rmtree(nodes.paths[nodes.nodes[1]])
    repaired = nodes.rotate(args=["-e", "keyrepo_min_rotation_age=3600"])
    assert nodes.keys(nodes.nodes[1]) == first[nodes.nodes[1]] and repaired.changed_count > 0
    # Without the guard (or once the age is reached) it rotates.
    nodes.rotate(args=["-e", "keyrepo_min_rotation_age=0"])
    assert max(nodes.keys(nodes.nodes[0])) == max(first[nodes.nodes[0]]) + 1 and nodes.consistent()
