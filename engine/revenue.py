"""The revenue report (`GET /internal/admin/revenue`; the seed's "Admin Operations →
Revenue Management": GMV, take rate, by day), from the ledger, to the kobo.

Over a range [from_ms, to_ms), by UTC day:
- `gmv_kobo`: the price of every sale settled (its offer paid), on the day it was paid;
- `commissions_kobo`: the platform's commission on those sales (engine/commission.py);
- `forfeited_deposits_kobo`: deposits forfeited on missed payment deadlines, on the
  day the deadline was processed (engine/defaults.py);
- `sold`: those sales, counted; `unsold`: auctions that became unsold that day
  (no real bid, the last default, an if-bid declined or expired).

Every day the range touches is listed, empty ones with zeros; a range that starts
or ends inside a day counts only what falls inside it. The totals are the days'
sums. Times are the database's, when each fact was committed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import asyncpg
import msgspec

import bidcore
from engine.clock import to_datetime, to_ms
from engine.errors import Refused
from engine.money import naira_to_kobo

DAY_MS = 86_400_000
#: The longest range one report covers: a year and a day (366 days, a leap year).
MAX_DAYS = 366

_SALES = """
SELECT (closed_at AT TIME ZONE 'UTC')::date AS day,
       count(*) FILTER (WHERE outcome = 'paid') AS sold,
       COALESCE(sum(amount) FILTER (WHERE outcome = 'paid'), 0) AS gmv,
       COALESCE(sum(commission) FILTER (WHERE outcome = 'paid'), 0) AS commissions,
       COALESCE(sum(deposit) FILTER (WHERE deposit_status = 'forfeited'), 0) AS forfeited
FROM settlement_offers
WHERE (outcome = 'paid' OR deposit_status = 'forfeited') AND closed_at >= $1 AND closed_at < $2
GROUP BY 1
"""
_UNSOLD = """
SELECT (unsold_at AT TIME ZONE 'UTC')::date AS day, count(*) AS unsold
FROM auctions WHERE unsold_at IS NOT NULL AND unsold_at >= $1 AND unsold_at < $2
GROUP BY 1
"""


class RevenueDay(msgspec.Struct, frozen=True):
    day: str  # the UTC date, YYYY-MM-DD
    from_ms: int  # the day's start (UTC midnight)
    gmv_kobo: int
    commissions_kobo: int
    forfeited_deposits_kobo: int
    sold: int
    unsold: int


class RevenueBody(msgspec.Struct, frozen=True):
    """The range's totals and each UTC day it touches, oldest first."""

    from_ms: int
    to_ms: int
    gmv_kobo: int
    commissions_kobo: int
    forfeited_deposits_kobo: int
    sold: int
    unsold: int
    days: list[RevenueDay]


def checked_range(from_ms: int, to_ms: int) -> None:
    """0 ≤ from < to, at most MAX_DAYS days apart; else 422 `invalid_range`."""
    if not 0 <= from_ms < to_ms <= bidcore.MAX_TIME_MS:
        raise Refused(
            "invalid", "invalid_range", "`from_ms` must be at least 0 and before `to_ms`."
        )
    if to_ms - from_ms > MAX_DAYS * DAY_MS:
        raise Refused(
            "invalid",
            "invalid_range",
            f"A report covers at most {MAX_DAYS} days; ask for the range in parts.",
        )


async def revenue(pool: asyncpg.Pool, from_ms: int, to_ms_: int) -> RevenueBody:
    checked_range(from_ms, to_ms_)
    start, end = to_datetime(from_ms), to_datetime(to_ms_)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        sales = {row["day"]: row for row in await conn.fetch(_SALES, start, end)}
        unsold = {row["day"]: row["unsold"] for row in await conn.fetch(_UNSOLD, start, end)}
    days = []
    for day in _days(from_ms, to_ms_):
        row = sales.get(day)
        days.append(
            RevenueDay(
                day=day.isoformat(),
                from_ms=to_ms(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)),
                gmv_kobo=naira_to_kobo(row["gmv"]) if row else 0,
                commissions_kobo=naira_to_kobo(row["commissions"]) if row else 0,
                forfeited_deposits_kobo=naira_to_kobo(row["forfeited"]) if row else 0,
                sold=row["sold"] if row else 0,
                unsold=unsold.get(day, 0),
            )
        )
    return RevenueBody(
        from_ms=from_ms,
        to_ms=to_ms_,
        gmv_kobo=sum(day.gmv_kobo for day in days),
        commissions_kobo=sum(day.commissions_kobo for day in days),
        forfeited_deposits_kobo=sum(day.forfeited_deposits_kobo for day in days),
        sold=sum(day.sold for day in days),
        unsold=sum(day.unsold for day in days),
        days=days,
    )


def _days(from_ms: int, to_ms_: int) -> Iterator[dt.date]:
    """Every UTC date from the one of `from_ms` to the one of the last ms before `to_ms`."""
    first = to_datetime(from_ms).date()
    last = to_datetime(to_ms_ - 1).date()
    for offset in range((last - first).days + 1):  # counted: no date past the last there is
        yield first + dt.timedelta(days=offset)
