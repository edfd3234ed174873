"""Time as the engine sees it: integer milliseconds since the Unix epoch (UTC).

The core never reads a clock; the engine reads one `Clock` and passes the
value down. Tests drive a `ManualClock` instead of waiting.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """The machine's wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise ValueError("a clock does not run backwards")
        self._now += ms
        return self._now

    def set(self, now_ms: int) -> None:
        if now_ms < self._now:
            raise ValueError("a clock does not run backwards")
        self._now = now_ms


def to_datetime(ms: int) -> datetime:
    """Exact: PostgreSQL's TIMESTAMPTZ keeps microseconds, so milliseconds fit."""
    return _EPOCH + timedelta(milliseconds=ms)


def to_ms(moment: datetime) -> int:
    """Whole milliseconds; a TIMESTAMPTZ written by the engine has no finer part."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined instant; use TIMESTAMPTZ")
    delta = moment - _EPOCH
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) // 1000
