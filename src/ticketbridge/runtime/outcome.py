"""How a job ended, and the clock type the runtime is driven by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one job ended: ``applied``, ``skipped`` or ``quarantined``, and why."""

    state: str
    reason: str
    ticket: str | None = None


def parse_time(value: object) -> datetime | None:
    """An ISO time stored in link data, tz-aware (UTC when it carries no zone)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
