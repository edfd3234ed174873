"""The seller's decision on an if-bid, acted on: the ledger's step (engine/ifbid.py),
the core's hold on the high bidder's buying power, their balance after a deposit
hold, and the room.

The bidder stays exposed deposit(what they are bound to) until the decision: the
high bid, or their own latest counter. Two steps raise that: the bidder's counter
and the bidder's acceptance of the seller's counter (RULES.md: "buying power
checked then"). Such a step must find deposit(new amount) in what is free plus
what this if-bid already holds: on a node alone, the balance less every other
exposure (this if-bid's own deposit counted back in, not twice); on several
nodes, the partition's allowance less its other exposure, widened from the free
balance as a bid's is (engine/allowances.py). The core is bound to the new
amount first, before the ledger, so that no bid elsewhere takes the same money
in between; a step the ledger then refuses gives it back (the core takes the
ledger's word again, `Sequencer.sync_decision`). An acceptance is a win: the
deposit leaves the wallet as a hold in the step's transaction (from the
allowance that backed it, on several nodes), under the bidder's `user_lock`,
and the core learns the committed balance after COMMIT.

Every step on one auction runs under `Sequencer.deciding` on this node; steps
on two nodes are kept apart by the auction's row lock and the partition's fence
(only its owner writes them: web/peers.py relays a request to it).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from engine.clock import Clock
from engine.errors import UNREACHABLE_OR_REFUSED, Fenced, LedgerUnavailable, Refused
from engine.ifbid import (
    Acting,
    Action,
    Move,
    OfferBody,
    Step,
    due_decisions,
    expire_decision,
    plan_move,
    read_offer,
    take_move,
)
from engine.locks import user_lock
from engine.roles import PLATFORM_USER_ID
from engine.sequencer import Sequencer

logger = logging.getLogger(__name__)

_SHORT = (
    "Your wallet does not cover the deposit on this amount alongside your other leading "
    "bids. Fund your wallet, then answer again before the deadline."
)


class DecisionPublisher(Protocol):
    """Where a room hears an if-bid's outcome (web/rooms.py's `Rooms.publish_decided`)."""

    def publish_decided(
        self,
        auction_id: uuid.UUID,
        seq: int,
        status: str,
        end_time_ms: int,
        bidder_id: uuid.UUID,
        won: bool,
    ) -> None: ...


@dataclass
class SellerDecisions:
    pool: asyncpg.Pool
    sequencer: Sequencer
    clock: Clock
    publisher: DecisionPublisher | None = None

    async def read(self, auction_id: uuid.UUID, caller: Acting) -> OfferBody:
        """The negotiation, for the seller, the high bidder, or a manager or admin."""
        return await read_offer(self.pool, auction_id, caller)

    async def act(
        self, auction_id: uuid.UUID, caller: Acting, action: Action, amount_kobo: int | None
    ) -> OfferBody:
        """Accept, decline or counter, if it is the caller's turn; the negotiation after."""
        async with self.sequencer.deciding(auction_id):
            now = self.clock.now_ms()
            move = await plan_move(self.pool, auction_id, caller, action, amount_kobo, now)
            raised = move.binds_bidder_to > move.bidder_amount_kobo
            if raised:
                await self._bind(auction_id, move.binds_bidder_to)
            try:
                step = await self._take(auction_id, caller, move, now)
            except BaseException:
                if raised:  # refused, or not known to be done: the core takes the ledger's word
                    await self._sync(auction_id)
                raise
            await self._after(step)
        return step.body

    async def expire(self, auction_id: uuid.UUID, now_ms: int) -> Step | None:
        """The turn's deadline passed: the auction is unsold (None: answered in time,
        or expired already)."""
        async with self.sequencer.deciding(auction_id):
            fence = self.sequencer.fence(auction_id)
            async with self.pool.acquire() as conn, conn.transaction():
                step = await expire_decision(conn, auction_id, now_ms, fence=fence)
            if step is not None:
                await self._after(step)
        return step

    async def expire_due(self) -> list[Step]:
        """Every if-bid of this node's partitions whose turn's deadline has passed;
        one that fails is logged and left for the next run."""
        if not self.sequencer.available:
            return []  # the ledger is away: the next run after it is back
        now = self.clock.now_ms()
        done = []
        try:
            due = await due_decisions(self.pool, now)
        except UNREACHABLE_OR_REFUSED as err:
            logger.warning("if-bid deadlines not read: %r", err)
            return []
        for auction_id in due:
            if not self.sequencer.decides(auction_id):
                continue  # its owner's sweep expires it
            try:
                step = await self.expire(auction_id, now)
            except Fenced as err:
                logger.warning("if-bid of %s left to its new owner: %s", auction_id, err)
                continue
            except Exception:
                logger.exception("if-bid of %s not expired; the next run retries", auction_id)
                continue
            if step is not None:
                done.append(step)
        return done

    async def _bind(self, auction_id: uuid.UUID, amount_kobo: int) -> None:
        """Bind the bidder to `amount_kobo` in the core, or refuse the step."""
        sequencer = self.sequencer
        bound = sequencer.bind_decision(auction_id, amount_kobo)
        if bound is None:  # not in the core yet (its load after the end failed): load it
            await sequencer.sync_decision(auction_id)
            bound = sequencer.bind_decision(auction_id, amount_kobo)
        if bound is False and sequencer.escrow is not None:
            widened = await sequencer.widen_for_decision(auction_id, amount_kobo)
            if widened is None:
                raise LedgerUnavailable("the bidder's allowance could not be widened now")
            if widened:
                bound = sequencer.bind_decision(auction_id, amount_kobo)
        if bound is None:
            raise Fenced(f"auction {auction_id}'s if-bid is not held by this node")
        if not bound:
            raise Refused("conflict", "insufficient_buying_power", _SHORT)

    async def _take(self, auction_id: uuid.UUID, caller: Acting, move: Move, now_ms: int) -> Step:
        fence = self.sequencer.fence(auction_id)
        if move.action != "accept":
            async with self.pool.acquire() as conn, conn.transaction():
                return await take_move(conn, auction_id, caller, move, now_ms, fence=fence)
        # A win: the deposit leaves the bidder's wallet (and the allowance that backed it).
        bidder, escrow = move.bidder_id, self.sequencer.escrow
        aside = (
            escrow.ending(auction_id, bidder) if escrow is not None else contextlib.nullcontext()
        )
        async with user_lock(bidder), aside:
            async with self.pool.acquire() as conn, conn.transaction():
                step = await take_move(conn, auction_id, caller, move, now_ms, fence=fence)
            if step.buyer_balance_kobo is not None:
                self.sequencer.set_balance(bidder, step.buyer_balance_kobo)
        if step.status == "settled":  # the platform's commission moved its balance
            await self.sequencer.refresh_user(PLATFORM_USER_ID)
        return step

    async def _after(self, step: Step) -> None:
        """A step is committed: the core follows the ledger, an unused allowance goes
        back, the room hears an outcome."""
        await self._sync(step.auction_id)
        escrow = self.sequencer.escrow
        if escrow is not None and step.state in ("declined", "expired"):
            await escrow.release(step.bidder_id)
        if step.seq is None or self.publisher is None:
            return
        try:
            self.publisher.publish_decided(
                step.auction_id,
                step.seq,
                step.status,
                step.end_time_ms,
                step.bidder_id,
                won=step.state == "accepted",
            )
        except Exception:  # committed already: the room can resume from a snapshot
            logger.exception("auction %s: the room was not told of its if-bid", step.auction_id)

    async def _sync(self, auction_id: uuid.UUID) -> None:
        try:
            await self.sequencer.sync_decision(auction_id)
        except UNREACHABLE_OR_REFUSED as err:  # the core keeps the higher hold: the safe side
            logger.warning("auction %s: the core not brought to its if-bid: %r", auction_id, err)
