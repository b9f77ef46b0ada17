"""The retry policy: backoff arithmetic, Retry-After, permanent errors buried at once."""

from datetime import UTC, datetime, timedelta

import pytest

from ticketbridge.errors import RemoteAuthFailed, RemoteRejected, RemoteUnavailable
from ticketbridge.exchange.retry import Bury, RetryAt, RetryPolicy

NOW = datetime(2026, 3, 2, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, base=timedelta(seconds=2), ceiling=timedelta(seconds=10))


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(1, 2), (2, 4), (3, 8), (4, 10)],  # 2 * 2**(n-1), capped at 10
)
def test_backoff_doubles_up_to_the_ceiling(attempts, seconds):
    decision = POLICY.decide(RemoteUnavailable("goc", "refused"), attempts=attempts, now=NOW)
    assert decision == RetryAt(NOW + timedelta(seconds=seconds), decision.reason)


def test_jitter_scales_delay_but_not_below_half_the_base():
    decision = POLICY.decide(RemoteUnavailable("goc", "x"), attempts=3, now=NOW, jitter=0.0)
    assert isinstance(decision, RetryAt)
    assert decision.when == NOW + timedelta(seconds=1)


def test_retry_after_is_honoured():
    error = RemoteUnavailable("goc", "busy", retry_after=60)
    decision = POLICY.decide(error, attempts=1, now=NOW)
    assert isinstance(decision, RetryAt) and decision.when == NOW + timedelta(seconds=60)


def test_gives_up_after_max_attempts():
    decision = POLICY.decide(RemoteUnavailable("goc", "x"), attempts=5, now=NOW)
    assert isinstance(decision, Bury) and "5 attempts" in decision.reason


@pytest.mark.parametrize(
    "error",
    [RemoteRejected("goc", "bad status"), RemoteAuthFailed("goc", "535"), ValueError("bug")],
)
def test_permanent_and_unexpected_errors_are_buried_at_once(error):
    assert isinstance(POLICY.decide(error, attempts=1, now=NOW), Bury)
