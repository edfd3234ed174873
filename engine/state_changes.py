"""Auction events besides bids that the ledger records in the core's order."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from engine.bids import DurableBid

#: Work done in the same transaction as the state change (audit log, vehicle).
InTransaction = Callable[[asyncpg.Connection], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class StateChange:
    """An auction's status or end time changed in the core (open, extend,
    cancel, close); `seq` is the room event's number, continuing the bids'."""

    auction_id: uuid.UUID
    seq: int
    kind: str  # "live", "extended", "cancelled", "ended"
    status: str  # the auction's status after the change
    end_time_ms: int
    reason: str | None = None
    also: InTransaction | None = None
    #: Bid rows decided with the change, after it (an opening's pre-bids).
    bids: tuple[DurableBid, ...] = ()
