"""The timed work, on apscheduler's asyncio scheduler, started and stopped
with the server. Jobs read the engine's clock and the ledger; nothing is kept
in a job store, so a restart rebuilds every job from the database state."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from engine.allowances import Escrow
from jobs.ifbid import INTERVAL_S as IF_BID_INTERVAL_S
from jobs.ifbid import IfBidDeadlines
from jobs.lifecycle import Lifecycle
from jobs.reconcile import INTERVAL_S as RECONCILE_INTERVAL_S
from jobs.reconcile import Reconciliation
from jobs.reserve import INTERVAL_S as RESERVE_INTERVAL_S
from jobs.reserve import ReserveProtection
from jobs.revenue import INTERVAL_S as REVENUE_INTERVAL_S
from jobs.revenue import RevenueToday
from jobs.settlement import INTERVAL_S as SETTLEMENT_INTERVAL_S
from jobs.settlement import SettlementDeadlines

logger = logging.getLogger(__name__)
# apscheduler logs every run at INFO: twenty lines a second for the 50 ms tick.
logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
# A tick still running when the next is due is skipped, by design (max_instances=1).
logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)

#: Auctions open and close within this of their time (the core refuses late
#: bids by itself whatever the scheduler does).
TICK_S = 0.05
#: End processing that failed is tried again this often (engine.metrics counts
#: the failures; the AuctionEndProcessingFailing alert watches them).
SWEEP_S = 2.0
#: Allowances not used for a while are given back this often (several nodes).
ALLOWANCES_S = 10.0


@dataclass
class Jobs:
    lifecycle: Lifecycle
    reserve: ReserveProtection
    settlement: SettlementDeadlines
    reconcile: Reconciliation
    allowances: Escrow | None = None
    if_bids: IfBidDeadlines | None = None
    revenue: RevenueToday | None = None

    def start(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 5}
        )
        scheduler.add_job(self.lifecycle.tick, "interval", seconds=TICK_S, id="lifecycle")
        scheduler.add_job(self.lifecycle.sweep_ended, "interval", seconds=SWEEP_S, id="sweep")
        scheduler.add_job(self.reserve.run, "interval", seconds=RESERVE_INTERVAL_S, id="reserve")
        scheduler.add_job(
            self.settlement.run, "interval", seconds=SETTLEMENT_INTERVAL_S, id="settlement"
        )
        scheduler.add_job(
            self.reconcile.run, "interval", seconds=RECONCILE_INTERVAL_S, id="reconcile"
        )
        if self.if_bids is not None:
            scheduler.add_job(self.if_bids.run, "interval", seconds=IF_BID_INTERVAL_S, id="if_bids")
        if self.revenue is not None:
            scheduler.add_job(
                self.revenue.run, "interval", seconds=REVENUE_INTERVAL_S, id="revenue"
            )
        if self.allowances is not None:
            scheduler.add_job(
                self.allowances.release_idle, "interval", seconds=ALLOWANCES_S, id="allowances"
            )
        scheduler.start()
        return scheduler


@contextlib.asynccontextmanager
async def running_jobs(jobs: Jobs) -> AsyncIterator[Jobs]:
    """Every job, started after recovery; first it finishes what a crash left
    between an auction's close and its end processing."""
    finished = await jobs.lifecycle.sweep_ended()
    if finished:
        logger.info("finished the end processing of %d auctions after a restart", len(finished))
    scheduler = jobs.start()
    try:
        yield jobs
    finally:
        scheduler.shutdown(wait=False)
