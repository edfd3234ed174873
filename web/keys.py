"""The app's typed keys: what the composition root (server/app.py) puts in the
application and the route modules read. This module imports no route module."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from engine.admin import Finisher, StatePublisher
from engine.bids import BidOutcome, MaxOutcome
from engine.clock import Clock
from engine.config import Settings
from engine.database import Database
from engine.decisions import SellerDecisions
from engine.membership import Membership
from engine.sequencer import Sequencer
from engine.signing import LogSigner
from web.ratelimit import RateLimiter
from web.redis_link import RedisLink
from web.rooms import Rooms, RoomTuning
from web.ws_limits import OpenSockets


class BidPlacer(Protocol):
    """Where a bid goes: the sequencer, or (LEDGER_MODE=baseline, for measurement
    only) the seed's per-bid-lock ledger."""

    async def place_bid(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        client_bid_id: str | None = None,
        *,
        platform: bool = False,
    ) -> BidOutcome: ...

    async def set_max(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        max_kobo: int,
        client_bid_id: str | None = None,
    ) -> MaxOutcome: ...


@dataclass(frozen=True, slots=True)
class AdminHooks:
    """End processing with its room announcement, and where approve, reject and
    void are published (a test may set its own before the app starts)."""

    finisher: Finisher
    publisher: StatePublisher | None = None


SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DATABASE = web.AppKey("database", Database)
SEQUENCER = web.AppKey("sequencer", Sequencer)
LOG_SIGNER = web.AppKey("log_signer", LogSigner)
LIMITER = web.AppKey("limiter", RateLimiter)
REDIS = web.AppKey("redis", RedisLink)  # REDIS_URL's Redis, when set
BIDS = web.AppKey("bids", BidPlacer)
ROOMS = web.AppKey("rooms", Rooms)
ROOM_TUNING = web.AppKey("room_tuning", RoomTuning)
OPEN_SOCKETS = web.AppKey("open_sockets", OpenSockets)
ADMIN_HOOKS = web.AppKey("admin_hooks", AdminHooks)
MEMBERSHIP = web.AppKey("membership", Membership)
DECISIONS = web.AppKey("decisions", SellerDecisions)  # the if-bid's steps
