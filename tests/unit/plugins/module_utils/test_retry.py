"""The one retry layer, without servers."""

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils._errors import KeyopsModuleError
from ansible_collections.keyops.lifecycle.plugins.module_utils._retry import Retry, backoff_delays, with_retries


def test_backoff_is_exponential_and_capped():
    assert backoff_delays(5, first=0.5, cap=4) == [0.5, 1.0, 2.0, 4, 4]
    assert backoff_delays(0) == [] and backoff_delays(None) == []


def test_transient_failures_are_retried_then_the_final_error_raised():
    calls, sleeps = [], []

    def attempt():
        calls.append(1)
        raise Retry(KeyopsModuleError("busy"))

    with pytest.raises(KeyopsModuleError, match="busy"):
        with_retries(attempt, 2, sleeps.append)
    assert len(calls) == 3 and sleeps == [0.5, 1.0]


def test_success_after_a_retry_and_no_retry_for_a_final_error():
    answers = iter([Retry(KeyopsModuleError("busy")), "ok"])

    def attempt():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sleeps = []
    assert with_retries(attempt, 3, sleeps.append) == "ok" and sleeps == [0.5]

    def final():
        raise KeyopsModuleError("denied")

    with pytest.raises(KeyopsModuleError, match="denied"):
        with_retries(final, 3, sleeps.append)
    assert sleeps == [0.5]


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_a_windowed_failure_is_retried_until_its_window_ends_whatever_the_count():
    clock, calls = Clock(), []
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.sleep(seconds)

    def attempt():
        calls.append(clock())
        raise Retry(KeyopsModuleError("electing"), window=10, poll=1.0)

    with pytest.raises(KeyopsModuleError, match="electing"):
        with_retries(attempt, 0, sleep, clock=clock)
    assert sleeps == [1.0] * 10 and len(calls) == 11  # retries=0 did not stop it; the 10 s window did


def test_a_window_that_ends_mid_poll_sleeps_only_what_is_left_and_success_returns():
    clock = Clock()
    answers = iter([Retry(KeyopsModuleError("e"), window=2.5, poll=1.0)] * 3 + [Retry(KeyopsModuleError("busy")), "ok"])

    def attempt():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sleeps = []
    assert with_retries(attempt, 1, lambda s: (sleeps.append(s), clock.sleep(s)), clock=clock) == "ok"
    assert sleeps == [1.0, 1.0, 0.5, 0.5]  # the window, then one ordinary backoff retry
