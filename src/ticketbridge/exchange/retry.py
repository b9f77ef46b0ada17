"""When to try a failed job again, and when to give up. Pure: the caller passes time and luck.

Exponential backoff with a ceiling and full jitter, honouring the remote's Retry-After;
errors that can never succeed as they are (rejected payloads, refused credentials) are
buried at once: an operator must act, retrying would only hide the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ticketbridge.errors import RemoteAuthFailed, RemoteRejected, RemoteUnavailable


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at ``when``."""

    when: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Bury:
    """Give up: dead-letter the job with ``reason`` until an operator acts."""

    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``base * 2**attempt`` capped at ``ceiling``, with jitter, for ``max_attempts``.

    ``RetryPolicy()`` waits about 2 s, 4 s, 8 s ... up to 5 minutes, 8 attempts in all.
    """

    max_attempts: int = 8
    base: timedelta = timedelta(seconds=2)
    ceiling: timedelta = timedelta(minutes=5)

    def decide(
        self, error: Exception, *, attempts: int, now: datetime, jitter: float = 1.0
    ) -> RetryAt | Bury:
        """What to do after attempt number ``attempts`` (1-based) failed with ``error``.

        ``jitter`` in [0, 1] scales the delay (full jitter); pass ``random.random()``.
        """
        if isinstance(error, RemoteRejected | RemoteAuthFailed):
            return Bury(f"{type(error).__name__}: {error}")
        if not isinstance(error, RemoteUnavailable):
            return Bury(f"unexpected {type(error).__name__}: {error}")
        if attempts >= self.max_attempts:
            return Bury(f"still failing after {attempts} attempts: {error}")
        delay = min(self.base * 2 ** (attempts - 1), self.ceiling)
        delay = max(delay * jitter, self.base / 2)
        if error.retry_after is not None:
            delay = max(delay, timedelta(seconds=error.retry_after))
        return RetryAt(now + delay, f"attempt {attempts} failed, retrying: {error}")
