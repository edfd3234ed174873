"""Reserve protection: every 30 s the core names the platform bids due and the
sequencer places them through the normal durable path (RULES.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.bids import BidOutcome
from engine.clock import Clock
from engine.roles import PLATFORM_USER_ID
from engine.sequencer import Sequencer

logger = logging.getLogger(__name__)

INTERVAL_S = 30


@dataclass
class ReserveProtection:
    sequencer: Sequencer
    clock: Clock

    async def run(self) -> list[BidOutcome]:
        if not self.sequencer.available:
            return []
        registry = self.sequencer.registry
        outcomes = []
        for handle, amount in self.sequencer.core.reserve_protection(self.clock.now_ms()):
            outcome = await self.sequencer.place_bid(
                registry.auction_id(handle), PLATFORM_USER_ID, amount, platform=True
            )
            if not outcome.accepted:
                logger.info("reserve-protection bid not placed: %s", outcome)
            outcomes.append(outcome)
        return outcomes
