"""Key repository decisions without I/O, and the I/O layer on a temporary directory."""

import os
import stat

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _keyrepo as kr


def keys(*indexes):
    return dict((i, kr.new_key()) for i in indexes)


def test_keys_needed_formula():
    assert kr.keys_needed(3600, 172800, 3600) == 51
    assert kr.keys_needed(3600, 0, 86400) == 3
    with pytest.raises(kr.KeyRepoError):
        kr.keys_needed(1, 1, 0)


def test_max_active_keys_limits():
    with pytest.raises(kr.KeyRepoError, match="at least 2"):
        kr.check_max_active_keys(1, "fernet")
    with pytest.raises(kr.KeyRepoError, match="at most 3"):
        kr.check_max_active_keys(4, "credential")
    kr.check_max_active_keys(5, "fernet")


def test_purge_keeps_staged_and_primary():
    assert kr.plan_purge(keys(0, 1, 2, 3, 4), 3) == [("remove", 1), ("remove", 2)]
    assert kr.plan_purge(keys(0, 7), 2) == []
    assert kr.plan_purge(keys(0, 5), 1) == []  # never the primary


def test_promote_plans_and_crash_completion():
    repo = keys(0, 1, 2)
    staged, new = kr.fingerprint(repo[0]), kr.new_key()
    assert kr.plan_promote(repo, staged, kr.fingerprint(new)) == [("link", 3), ("write", 0)]
    linked = {**repo, 3: repo[0]}  # crashed after the link
    assert kr.plan_promote(linked, staged, kr.fingerprint(new)) == [("write", 0)]
    done = {**linked, 0: new}
    assert kr.plan_promote(done, staged, kr.fingerprint(new)) == []
    with pytest.raises(kr.KeyRepoError, match="refusing to promote"):
        kr.plan_promote(repo, "0" * 16, kr.fingerprint(new))
    with pytest.raises(kr.KeyRepoError, match="no staged key"):
        kr.plan_promote({}, staged, kr.fingerprint(new))


def test_sync_adds_only_and_refuses_divergence():
    ref = keys(0, 3, 4)
    wanted = dict((i, kr.fingerprint(v)) for i, v in ref.items())
    behind = {0: ref[0], 3: ref[3]}
    assert kr.plan_sync(behind, wanted) == [("write", 4)]
    other_staged = {0: kr.new_key(), 3: ref[3], 4: ref[4]}
    assert kr.plan_sync(other_staged, wanted) == [("write", 0)]
    assert kr.plan_sync({}, wanted) == [("write", 3), ("write", 4), ("write", 0)]  # 0 last
    with pytest.raises(kr.KeyRepoError, match="diverged"):
        kr.plan_sync({0: ref[0], 3: kr.new_key()}, wanted)


def report(repo):
    return kr.describe(repo)["keys"]


def test_cluster_plan():
    ahead = keys(0, 2, 3)
    behind = {0: ahead[0], 2: ahead[2]}
    plan = kr.plan_cluster({"a": report(ahead), "b": report(behind), "c": []})
    assert plan["reference"] == "a" and plan["sync"] == {"b": [3], "c": [0, 2, 3]} and plan["needed"] == [0, 2, 3]
    assert plan["staged_fingerprint"] == kr.fingerprint(ahead[0])
    assert kr.plan_cluster({"a": [], "b": []})["initialize"] is True
    diverged = {0: ahead[0], 2: kr.new_key()}
    with pytest.raises(kr.KeyRepoError, match="differs between b and a"):
        kr.plan_cluster({"a": report(ahead), "b": report(diverged)})


def test_describe_never_holds_material():
    repo = keys(0, 1)
    text = repr(kr.describe(repo))
    assert all(material.decode() not in text for material in repo.values())
    assert kr.describe(repo)["primary_index"] == 1 and kr.describe({})["primary_index"] is None


def test_io_writes_private_files_and_links(tmp_path):
    repo = kr.KeyRepo(str(tmp_path / "r"))
    repo.ensure_dir()
    material = keys(0, 1)
    repo.apply([("write", 0), ("write", 1)], material)
    repo.apply([("link", 2), ("write", 0)], {0: kr.new_key()}, settle_seconds=0.01)
    state = repo.read()
    assert sorted(state) == [0, 1, 2] and state[2] == material[0]
    assert stat.S_IMODE(os.stat(repo.path).st_mode) == 0o700 and repo.modes_ok() == []
    (tmp_path / "r" / "7").write_text("garbage")
    with pytest.raises(kr.KeyRepoError, match="not a Fernet key"):
        repo.read()
