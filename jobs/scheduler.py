"""The timed work, on apscheduler's asyncio scheduler, started and stopped
with the server. Jobs read the engine's clock and the ledger; nothing is kept
in a job store, so a restart rebuilds every job from the database state."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from jobs.lifecycle import Lifecycle
from jobs.reserve import INTERVAL_S as RESERVE_INTERVAL_S
from jobs.reserve import ReserveProtection

logger = logging.getLogger(__name__)

#: Auctions open and close within this of their time (the core refuses late
#: bids by itself whatever the scheduler does).
TICK_S = 0.05


@dataclass
class Jobs:
    lifecycle: Lifecycle
    reserve: ReserveProtection

    def start(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 5}
        )
        scheduler.add_job(self.lifecycle.tick, "interval", seconds=TICK_S, id="lifecycle")
        scheduler.add_job(self.reserve.run, "interval", seconds=RESERVE_INTERVAL_S, id="reserve")
        scheduler.start()
        return scheduler
