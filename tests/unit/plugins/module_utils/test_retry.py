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
