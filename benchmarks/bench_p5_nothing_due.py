"""P5: the daily rotate_keys.yml run that finds nothing due, over 20 keys, vs an empty play.

Both are whole ansible-playbook runs with the same inventory, extra vars and strategy; the empty play has no tasks.
The keys were rotated moments ago with ``rotate_older_than: 30d``, so nothing is due.  Target: <= 2.0x - the job
should cost about what an empty play costs plus one look at Vault.
"""

import pytest

from lab import transit_data

from _ansible import ansible_playbook
from conftest import STRATEGIES, alternated_pairs, record, strategy_env, timed
from rotation_helpers import Rotation

KEYS = dict(("k%02d" % index, ([100], None)) for index in range(20))


@pytest.mark.bench
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_p5_nothing_due_vs_empty_play(vault, tmp_path, strategy):
    mount = "bench-p5-%s" % strategy.replace("_", "-")
    transit_data.client(vault.address, vault.token).sys.enable_secrets_engine("transit", path=mount)
    rotation = Rotation(vault, mount, tmp_path, KEYS, rotate_older_than="30d")
    env = strategy_env(strategy)
    empty = tmp_path / "empty.yml"
    empty.write_text("- name: Empty\n  hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    inventory = tmp_path / "local.ini"
    inventory.write_text("localhost ansible_connection=local\n")
    rotation.run(env=env, expect_rc=0)  # the report directory exists; the first run is not timed

    def empty_play():
        env_vars = dict(vault.env, **env)
        return timed(ansible_playbook, empty, tmp_path / "empty.jsonl", env=env_vars, inventory=str(inventory),
                     args=["-e", "@" + rotation.vars_path], expect_rc=0)[0]

    def nothing_due():
        seconds, run = timed(rotation.run, env=env, expect_rc=0)
        assert run.changed_count == 0
        return seconds

    empty_seconds, job_seconds, ratio = alternated_pairs(empty_play, nothing_due, pairs=5)
    record("P5 (%s)" % strategy, keys=len(KEYS), empty_play_seconds=empty_seconds,
           nothing_due_seconds=job_seconds, median_ratio=ratio, target="<= 2.0")
    assert ratio <= 2.0, "a nothing-due run took %.2fx an empty play (target 2.0x)" % ratio
