"""Today's revenue for the dashboard: every minute, the report of
`GET /internal/admin/revenue` for the current UTC day (engine/revenue.py), read
from the ledger and set on gauges (engine/metrics.py). The endpoint is the
record; the panel shows the same figures, a minute late at most."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from engine import metrics
from engine.clock import Clock
from engine.errors import UNREACHABLE_OR_REFUSED
from engine.revenue import DAY_MS, RevenueBody, revenue

logger = logging.getLogger(__name__)

INTERVAL_S = 60


@dataclass
class RevenueToday:
    pool: asyncpg.Pool
    clock: Clock

    async def run(self) -> RevenueBody | None:
        start = self.clock.now_ms() // DAY_MS * DAY_MS
        try:
            today = await revenue(self.pool, start, start + DAY_MS)
        except UNREACHABLE_OR_REFUSED as err:  # the gauges keep the last figures
            logger.warning("today's revenue not read: %r", err)
            return None
        metrics.REVENUE_TODAY.labels("gmv").set(today.gmv_kobo)
        metrics.REVENUE_TODAY.labels("commissions").set(today.commissions_kobo)
        metrics.REVENUE_TODAY.labels("forfeited_deposits").set(today.forfeited_deposits_kobo)
        metrics.OUTCOMES_TODAY.labels("sold").set(today.sold)
        metrics.OUTCOMES_TODAY.labels("unsold").set(today.unsold)
        return today
