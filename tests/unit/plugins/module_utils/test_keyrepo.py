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


def apply_plan(repo, actions, new_staged):
    """What ``actions`` leave (index -> material), as KeyRepo.apply would."""
    return kr.predict(repo, actions, {0: new_staged})


@pytest.mark.parametrize("max_active_keys", [3, 4, 5, 9])
@pytest.mark.parametrize("indexes", [(0, 1), (0, 1, 2), (0, 2, 3), (0, 4, 5, 6), (0, 3, 7, 8, 9, 10)])
def test_promote_purge_keeps_what_unpromoted_nodes_use_and_ends_like_two_steps(indexes, max_active_keys):
    repo = keys(*indexes)
    staged, new = kr.fingerprint(repo[0]), kr.new_key()
    previous_primary = max(repo) if max(repo) != 0 else None
    merged = kr.plan_promote_purge(repo, staged, kr.fingerprint(new), max_active_keys)
    removed = [index for verb, index in merged if verb == "remove"]
    # Never the key a node that has not promoted yet still issues tokens with, nor the one being promoted.
    assert previous_primary not in removed and max(repo) + 1 not in removed
    # Removals come after the new 0 is in place.
    assert merged[:2] == [("link", max(repo) + 1), ("write", 0)]
    # The same end state as promoting everywhere and purging afterwards (the separate passes).
    promoted = apply_plan(repo, kr.plan_promote(repo, staged, kr.fingerprint(new)), new)
    two_steps = apply_plan(promoted, kr.plan_purge(promoted, max_active_keys), new)
    assert apply_plan(repo, merged, new) == two_steps
    # The node still decrypts what every other node may issue at that instant: previous primary and staged key.
    after = apply_plan(repo, merged, new)
    assert repo[0] in after.values() and (previous_primary is None or repo[previous_primary] in after.values())


def test_promote_purge_is_refused_when_the_previous_primary_could_go():
    repo = keys(0, 1, 2)
    with pytest.raises(kr.KeyRepoError, match="at least 3"):
        kr.plan_promote_purge(repo, kr.fingerprint(repo[0]), kr.fingerprint(kr.new_key()), 2)


def test_promote_purge_completes_an_interrupted_run():
    repo = keys(0, 3, 4)
    staged, new = kr.fingerprint(repo[0]), kr.new_key()
    linked = {**repo, 5: repo[0]}  # crashed after the link
    assert kr.plan_promote_purge(linked, staged, kr.fingerprint(new), 3) == [("write", 0), ("remove", 3)]
    promoted = {**linked, 0: new}  # crashed after the new 0, before the purge
    assert kr.plan_promote_purge(promoted, staged, kr.fingerprint(new), 3) == [("remove", 3)]
    done = {0: new, 4: repo[4], 5: repo[0]}
    assert kr.plan_promote_purge(done, staged, kr.fingerprint(new), 3) == []


def test_plan_state_purges_with_the_promotion_only_when_asked():
    repo = keys(0, 1, 2)
    params = {"state": "promoted", "new_staged_key": kr.new_key().decode(), "expect_staged": kr.fingerprint(repo[0]),
              "max_active_keys": 3}
    assert kr.plan_state(dict(params, purge=False), repo)[0] == [("link", 3), ("write", 0)]
    assert kr.plan_state(params, repo)[0] == [("link", 3), ("write", 0)]
    assert kr.plan_state(dict(params, purge=True), repo)[0] == [("link", 3), ("write", 0), ("remove", 1)]
    with pytest.raises(kr.KeyRepoError, match="at least 3"):
        kr.plan_state(dict(params, purge=True, max_active_keys=2), repo)


def test_a_new_zero_waits_after_any_added_key_never_otherwise():
    # a sync that adds the key another node promoted, then the new staged key: keystone may have listed the
    # directory before the add and open 0 after its replacement - the pause closes that window
    sync = kr.plan_sync({0: b"A", 3: b"C"}, {3: kr.fingerprint(b"C"), 4: "fp-B", 0: "fp-X"})
    assert sync == [("write", 4), ("write", 0)]
    assert [pause for _verb, _index, pause in kr.settle_points(sync)] == [False, True]
    promote = [("link", 5), ("write", 0), ("remove", 1)]
    assert [pause for _verb, _index, pause in kr.settle_points(promote)] == [False, True, False]
    assert [pause for _verb, _index, pause in kr.settle_points([("write", 0), ("write", 1)])] == [False, False]
    assert [pause for _verb, _index, pause in kr.settle_points([("write", 0)])] == [False]


def test_apply_sleeps_before_the_new_zero_of_a_sync(tmp_path, monkeypatch):
    events = []
    repo = kr.KeyRepo(str(tmp_path))
    monkeypatch.setattr(kr.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    monkeypatch.setattr(repo, "write", lambda index, material: events.append(("write", index)))
    repo.apply([("write", 4), ("write", 0)], {4: b"k4", 0: b"k0"}, settle_seconds=2.0)
    assert events == [("write", 4), ("sleep", 2.0), ("write", 0)]
