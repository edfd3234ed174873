"""Auctions going live and ending, on the engine's clock.

`tick` runs every 50 ms: the core says which scheduled auctions have reached
their start and which live ones their end (which moves with anti-sniping and
admin extensions — the core holds the current value, so there is nothing to
reschedule). Opening and closing go through the sequencer, ordered with the
bids and durable before anyone is told. End processing follows (engine/
settlement.py), exactly once; `sweep_ended`, every few seconds, finishes
what a failure or a crash left between a close and its end processing. A
failure is counted and logged per auction and never stops the others.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import asyncpg

import bidcore
from engine import metrics
from engine.clock import Clock
from engine.ending import EndResult, end_auction
from engine.errors import UNREACHABLE_OR_REFUSED, Fenced, LedgerUnavailable
from engine.locks import user_lock
from engine.registry import NO_HANDLE
from engine.roles import PLATFORM_USER_ID
from engine.sequencer import Sequencer
from engine.signing import LogSigner

logger = logging.getLogger(__name__)

_ENDED = "SELECT id FROM auctions WHERE status = 'ended' ORDER BY end_time"
_LEADER = """
SELECT user_id, is_platform_bid FROM bids WHERE auction_id = $1 ORDER BY seq DESC LIMIT 1
"""


class EndedPublisher(Protocol):
    """Where the room hears the result (web/rooms.py)."""

    def publish_ended(self, result: EndResult) -> None: ...


@dataclass
class Lifecycle:
    pool: asyncpg.Pool
    sequencer: Sequencer
    clock: Clock
    rooms: EndedPublisher | None = None
    #: Signs each result for the bid log (None: results are not signed).
    signer: LogSigner | None = None

    async def tick(self) -> None:
        """Open what has started, close and end-process what has ended."""
        if not self.sequencer.available:
            return
        now = self.clock.now_ms()
        to_open, to_close = self.sequencer.core.due(now)
        registry = self.sequencer.registry
        # A suspended auction (its bid log does not verify) is held as it is.
        suspended = self.sequencer.suspended
        for handle in to_open:
            if suspended(auction_id := registry.auction_id(handle)):
                continue
            with _logged("open", handle):
                await self.sequencer.open_auction(auction_id)
        for handle in to_close:
            auction_id = registry.auction_id(handle)
            if suspended(auction_id):
                continue
            with _logged("close", handle):
                _, closed = await self.sequencer.close_auction(auction_id)
                leader = (
                    None
                    if closed.leader_is_platform or closed.leader is None
                    else (registry.user_id(closed.leader))
                )
                await self.end(auction_id, leader)

    async def finish(self, auction_id: uuid.UUID, leader: uuid.UUID | None) -> EndResult | None:
        """End processing, then the room and the core hear of it."""
        lock = user_lock(leader) if leader is not None else contextlib.nullcontext()
        escrow = self.sequencer.escrow
        # Several nodes: the winner's allowance falls with the deposit it backed.
        aside = (
            escrow.ending(auction_id, leader)
            if escrow is not None and leader is not None
            else contextlib.nullcontext()
        )
        async with lock, aside:
            result = await end_auction(
                self.pool,
                auction_id,
                self.clock.now_ms(),
                fence=self.sequencer.fence(auction_id),
                signer=self.signer,
            )
            if result and result.winner_id and result.winner_balance_kobo is not None:
                self.sequencer.set_balance(result.winner_id, result.winner_balance_kobo)
        if result is None or result.result == "seller_decision":
            # The seller decides (or another process ended it: the ledger says how):
            # the high bidder stays exposed in the core until the decision.
            try:
                async with self.sequencer.deciding(auction_id):
                    await self.sequencer.sync_decision(auction_id)
            except UNREACHABLE_OR_REFUSED as err:  # the core keeps it closed until a rebuild
                logger.warning("auction %s: the core not told of its if-bid: %r", auction_id, err)
        elif self.sequencer.registry.auction_handle(auction_id) != NO_HANDLE:
            self.sequencer.forget_auction(auction_id)
        if result is not None and result.settled:  # the platform's commission moved its balance
            await self.sequencer.refresh_user(PLATFORM_USER_ID)
        if result is not None and self.rooms is not None:
            self.rooms.publish_ended(result)
        return result

    async def sweep_ended(self) -> list[EndResult]:
        """Auctions closed but not end-processed (a failure or a crash in between):
        finish each; one that fails again is counted and left for the next sweep."""
        if not self.sequencer.available:
            return []  # the ledger is away: the next sweep after it is back
        results = []
        # A node of several: only its own partitions' (each is swept by its owner).
        ended = [
            row
            for row in await self.pool.fetch(_ENDED)
            if self.sequencer.decides(row["id"]) and not self.sequencer.suspended(row["id"])
        ]
        metrics.ENDED_UNPROCESSED.set(len(ended))
        for row in ended:
            leader = await self.pool.fetchrow(_LEADER, row["id"])
            winner = None if leader is None or leader["is_platform_bid"] else leader["user_id"]
            result = await self.end(row["id"], winner)
            if result is not None:
                results.append(result)
        return results

    async def end(self, auction_id: uuid.UUID, leader: uuid.UUID | None) -> EndResult | None:
        """`finish`, or — if it fails — count and log the failure and leave the
        auction to the sweep."""
        try:
            return await self.finish(auction_id, leader)
        except Fenced as exc:  # its partition moved: the new owner's sweep finishes it
            logger.warning("end processing of %s left to its new owner: %s", auction_id, exc)
            return None
        except Exception:
            # The auction stays `ended` (its leader still exposed in the core):
            # the sweep tries again.
            metrics.END_PROCESSING_FAILURES.inc()
            logger.exception("end processing of %s failed; the sweep will retry", auction_id)
            return None


@contextlib.contextmanager
def _logged(action: str, handle: int) -> Iterator[None]:
    """A failed open or close is retried on the next tick; say why it failed."""
    try:
        yield
    except LedgerUnavailable:
        logger.warning("could not %s auction handle %d: the ledger is unavailable", action, handle)
    except bidcore.CoreError as exc:
        logger.warning("could not %s auction handle %d: %s", action, handle, exc)
