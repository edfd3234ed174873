"""Settlement deadlines, every 60 s on the engine's clock (RULES.md "Settlement").

An open offer past its deadline without full payment is defaulted: the held
deposit is forfeited to the platform, a due one lapses, and the auction is
offered to the next-highest distinct real bidder — or is unsold when nobody
is left (engine/defaults.py, one transaction each, exactly once under
races). Every user whose balance the step changes is held under `user_lock`
from before the transaction until the core has the committed balance.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import asyncpg

from engine.admin import StatePublisher
from engine.clock import Clock
from engine.defaults import Default, default_offer, overdue_auctions, plan_default
from engine.errors import Replan
from engine.locks import user_locks
from engine.roles import PLATFORM_USER_ID
from engine.sequencer import Sequencer

logger = logging.getLogger(__name__)

INTERVAL_S = 60
#: A plan goes stale only if another process moves the same offer at once.
ATTEMPTS = 3


@dataclass
class SettlementDeadlines:
    pool: asyncpg.Pool
    sequencer: Sequencer
    clock: Clock
    publisher: StatePublisher | None = None

    async def run(self) -> list[Default]:
        """Default every overdue offer (one step of each chain per run)."""
        now = self.clock.now_ms()
        results = []
        overdue = await overdue_auctions(self.pool, now)
        # A node of several: only its own partitions' (each is run by its owner).
        for auction_id in [a for a in overdue if self.sequencer.decides(a)]:
            try:
                result = await self.expire(auction_id, now)
            except Exception:  # one auction must not hold up the others; next run retries
                logger.exception("auction %s: settlement deadline not processed", auction_id)
                continue
            if result is not None:
                results.append(result)
        return results

    async def expire(self, auction_id: uuid.UUID, now_ms: int) -> Default | None:
        for _ in range(ATTEMPTS):
            plan = await plan_default(self.pool, auction_id, now_ms)
            if plan is None:
                return None
            async with user_locks(plan.users):
                try:
                    result = await default_offer(
                        self.pool, plan, now_ms, fence=self.sequencer.fence(auction_id)
                    )
                except Replan:
                    continue
                if result is not None:
                    for user, balance in result.balances.items():
                        self.sequencer.set_balance(user, balance)
            if result is not None and result.status == "settled":  # its commission, too
                await self.sequencer.refresh_user(PLATFORM_USER_ID)
            if result is not None:
                self._announce(result)
            return result
        logger.warning("auction %s: its settlement kept changing; retried next run", auction_id)
        return None

    def _announce(self, result: Default) -> None:
        if result.seq is None or self.publisher is None:
            return
        try:
            self.publisher.publish_state(
                result.auction_id, result.seq, result.status, result.end_time_ms
            )
        except Exception:  # committed already: the room can resume from a snapshot
            logger.exception("auction %s: the room was not told it is unsold", result.auction_id)
