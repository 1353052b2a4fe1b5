"""Riding through a leader election: which failures are retried for election_timeout, and exactly-once rotate."""

import pytest
import requests

from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import (
    VaultConnection,
    VaultModuleError,
    election_failure,
    no_active_node,
)

from .test_vault import FakeAdapter, FakeResponse  # noqa: E402

STANDBY = "http://127.0.0.1:8202"
DEAD_LEADER = "http://127.0.0.1:8200/v1/transit/keys/k/rotate"


def refused(url, text="[Errno 111] Connection refused"):
    request = requests.Request("POST", url).prepare()
    return requests.exceptions.ConnectionError(text, request=request)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def connection(answers, election_timeout=30, retries=3):
    clock, sleeps = Clock(), []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.now += seconds

    conn = VaultConnection(STANDBY, token="t", retries=retries, sleep=sleep, election_timeout=election_timeout,
                           clock=clock)
    conn.client.adapter = FakeAdapter(answers)
    return conn, sleeps


@pytest.mark.parametrize("failed_url, idempotent, text, expected", [
    # Refused at the redirect target (the dead leader): the standby only redirected - safe even for rotate.
    (DEAD_LEADER, False, "Connection refused", True),
    (DEAD_LEADER, True, "Connection refused", True),
    # Reset at the redirect target after sending: a live leader may have rotated - not for rotate.
    (DEAD_LEADER, False, "Connection reset by peer", False),
    (DEAD_LEADER, True, "Connection reset by peer", True),
    # The user's own address failing is not an election: the ordinary retries decide.
    (STANDBY + "/v1/transit/keys/k/rotate", True, "Connection refused", False),
    ("HTTP://127.0.0.1:8202/v1/x", True, "Connection refused", False),
    (None, True, "Connection refused", False),
])
def test_election_failure_decision(failed_url, idempotent, text, expected):
    exc = refused(failed_url, text) if failed_url else requests.exceptions.ConnectionError(text)
    assert election_failure(exc, STANDBY, idempotent) is expected


def test_no_active_node_texts():
    assert no_active_node("local node not active but active cluster node not found")
    assert not no_active_node("Vault is sealed") and not no_active_node(None)


def test_rotate_rides_through_an_election_and_is_sent_once_it_can_be_served():
    # 12 s of redirects into a refused connection (what a standby does while the cluster elects), then 200.
    answers = [refused(DEAD_LEADER)] * 12 + [FakeResponse(200, {"data": {"latest_version": 2}})]
    conn, sleeps = connection(answers, retries=0)
    assert conn.write("transit/keys/k/rotate", {}, idempotent=False) == {"data": {"latest_version": 2}}
    assert sum(sleeps) == 12 and len(conn.client.adapter.sent) == 13
    assert all(url == "/v1/transit/keys/k/rotate" for _method, url in conn.client.adapter.sent)


def test_past_the_window_a_clear_error_naming_both_nodes():
    conn, sleeps = connection([refused(DEAD_LEADER)] * 40, election_timeout=5)
    with pytest.raises(VaultModuleError) as info:
        conn.write("transit/keys/k/config", {"min_decryption_version": 2})
    assert sum(sleeps) == 5
    assert "redirected the request to http://127.0.0.1:8200" in info.value.msg
    assert "election_timeout (5s)" in info.value.msg and STANDBY in info.value.msg


def test_a_standby_without_an_active_node_is_waited_for_even_for_rotate():
    answers = [FakeResponse(500, {"errors": ["local node not active but active cluster node not found"]})] * 4
    answers.append(FakeResponse(204))
    conn, sleeps = connection(answers, retries=0)
    assert conn.write("transit/keys/k/rotate", {}, idempotent=False) == {}
    assert sleeps == [1.0] * 4


def test_a_reset_at_the_redirect_target_is_not_resent_for_rotate():
    conn, sleeps = connection([refused(DEAD_LEADER, "Connection reset by peer")])
    with pytest.raises(VaultModuleError, match="cannot reach Vault"):
        conn.write("transit/keys/k/rotate", {}, idempotent=False)
    assert sleeps == [] and len(conn.client.adapter.sent) == 1


def test_election_timeout_zero_falls_back_to_the_retry_count():
    conn, sleeps = connection([refused(DEAD_LEADER)] * 5, election_timeout=0, retries=2)
    with pytest.raises(VaultModuleError):
        conn.read("transit/keys/k")
    assert sleeps == [0.5, 1.0]


def test_own_address_refused_keeps_the_quick_retry_count():
    conn, sleeps = connection([refused(STANDBY + "/v1/transit/keys/k")] * 4, retries=3)
    with pytest.raises(VaultModuleError, match="cannot reach Vault at http://127.0.0.1:8202"):
        conn.read("transit/keys/k")
    assert sleeps == [0.5, 1.0, 2.0]


def test_negative_election_timeout_is_refused():
    with pytest.raises(VaultModuleError, match="election_timeout"):
        VaultConnection(STANDBY, token="t", election_timeout=-1)
