"""Where the web layer sends a bid: the sequencer (the engine's design), or —
with LEDGER_MODE=baseline, for side-by-side measurement only — the seed's own
design, one row-locked transaction per bid (engine/per_bid_ledger.py).

The baseline decides from the database rows and never updates the core, so
in that mode the core's view (anti-sniping end times the scheduler reads,
exposure) is not kept current: it is a yardstick, not a way to run auctions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from aiohttp import web

from engine.bids import BidAccepted, BidOutcome, DurableBid
from engine.per_bid_ledger import PerBidLedger


class BidPlacer(Protocol):
    async def place_bid(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        client_bid_id: str | None = None,
        *,
        platform: bool = False,
    ) -> BidOutcome: ...


BIDS = web.AppKey("bids", BidPlacer)


class PublishingBaseline:
    """The baseline, telling the rooms of each bid once its transaction committed."""

    def __init__(
        self, baseline: PerBidLedger, publish: Callable[[Sequence[DurableBid]], None]
    ) -> None:
        self._baseline = baseline
        self._publish = publish

    async def place_bid(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        client_bid_id: str | None = None,
        *,
        platform: bool = False,
    ) -> BidOutcome:
        outcome = await self._baseline.place_bid(
            auction_id, user_id, amount_kobo, client_bid_id, platform=platform
        )
        if isinstance(outcome, BidAccepted):
            self._publish([outcome.bid])
        return outcome
