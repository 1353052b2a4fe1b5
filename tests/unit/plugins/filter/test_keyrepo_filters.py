"""The keyrepo role's barrier filter: agreement of staged and primary keys, and the time since the last rotation."""

from ansible_collections.keyops.lifecycle.plugins.filter import keyrepo as filters
from ansible_collections.keyops.lifecycle.plugins.module_utils import _keyrepo as kr


def report(repo, age=None):
    return dict(kr.describe(repo), staged_age_seconds=age)


def test_barrier_agrees_only_on_the_same_staged_and_primary_key():
    staged, primary, older = kr.new_key(), kr.new_key(), kr.new_key()
    same = {0: staged, 2: older, 3: primary}
    hostvars = {"a": {"before": report(same, 40)}, "b": {"before": report(same, 900)}}
    barrier = filters.keyrepo_barrier(["a", "b"], hostvars, "before")
    assert barrier["agreed"] and barrier["staged_fingerprint"] == kr.fingerprint(staged)
    assert barrier["primary_fingerprint"] == kr.fingerprint(primary) and barrier["last_rotation_age"] == 900
    # b is one promotion behind (same staged key, an older primary): not agreed
    hostvars["b"]["before"] = report({0: staged, 2: older}, 900)
    assert not filters.keyrepo_barrier(["a", "b"], hostvars, "before")["agreed"]
    # ... until the reconciliation's later result says b caught up
    hostvars["b"]["synced"] = report(same)
    hostvars["a"]["synced"] = {"skipped": True}
    caught_up = filters.keyrepo_barrier(["a", "b"], hostvars, "before", "synced")
    assert caught_up["agreed"] and caught_up["last_rotation_age"] == 900  # the age comes from the read
    # another staged key, or a host that reported nothing
    hostvars["b"]["synced"] = report({0: kr.new_key(), 2: older, 3: primary})
    assert not filters.keyrepo_barrier(["a", "b"], hostvars, "before", "synced")["agreed"]
    assert not filters.keyrepo_barrier(["a", "c"], dict(hostvars, c={}), "before")["agreed"]


def test_barrier_of_lone_staged_keys_and_no_ages():
    staged = kr.new_key()
    hostvars = {"a": {"before": report({0: staged})}, "b": {"before": report({0: staged})}}
    barrier = filters.keyrepo_barrier(["a", "b"], hostvars, "before")
    assert barrier["agreed"] and barrier["primary_fingerprint"] is None and barrier["last_rotation_age"] is None
