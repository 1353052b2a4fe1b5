"""Crash safety of the rotation: SIGKILL at every step boundary and at random moments, then re-run.

After every crash: every stored ciphertext still decrypts and min_decryption_version is not above
the oldest version in use.  After the re-run: the job is complete.
"""

import random

import pytest

from rotation_helpers import Rotation

# One key with a JSON lines consumer (the plain format is covered elsewhere): the boundaries of the
# rotation are the task starts of rotate_keys.yml.
KEYS = {"crash": ([150, 100], "secret")}
# Task starts in one run of rotate_keys.yml for KEYS (checked by test_boundary_count).
BOUNDARIES = 17


def crash_and_resume(rotation, **crash):
    run = rotation.run(callbacks=("crash_at",), **crash)
    assert run.killed, "the run was not interrupted:\n" + run.output
    rotation.check_all_decryptable()
    rotation.run(expect_rc=0)
    rotation.check_complete()


def test_boundary_count(vault, transit_mount, tmp_path):
    rotation = Rotation(vault, transit_mount, tmp_path, KEYS)
    log = tmp_path / "tasks.log"
    rotation.run(callbacks=("crash_at",), env={"KEYOPS_CRASH_TASK_LOG": str(log)}, expect_rc=0)
    rotation.check_complete()
    assert len(log.read_text().splitlines()) == BOUNDARIES, log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("boundary", range(1, BOUNDARIES + 1))
def test_crash_at_every_step_boundary(vault, transit_mount, tmp_path, boundary):
    rotation = Rotation(vault, transit_mount, tmp_path, KEYS)
    crash_and_resume(rotation, env={"KEYOPS_CRASH_AT_TASK": str(boundary)})


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_crash_at_random_moments(vault, transit_mount, tmp_path, seed):
    """SIGKILL of the whole process group (controller and running modules) at a random moment.

    The moment is a random delay after a random task start, timed inside the controller: a wall-clock
    kill measured against an earlier run missed the run altogether when the machine's load changed.
    The last tasks only write the report, so the kill lands no later than the report task.
    """
    rng = random.Random(seed)
    rotation = Rotation(vault, transit_mount, tmp_path, KEYS)
    crash_and_resume(rotation, env={"KEYOPS_CRASH_AT_TASK": str(rng.randint(1, BOUNDARIES - 5)),
                                    "KEYOPS_CRASH_AFTER_SECONDS": "%.3f" % rng.uniform(0.01, 0.3)})
