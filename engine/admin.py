"""Staff actions on auctions (RULES.md "Admin actions"), each audited in its own transaction.

Approve and reject move a draft, which the core does not hold, under the
auction's row lock. Extend, cancel and force-end are decided by the core and
travel the ledger's queue with the bids; their `also=` writes the audit row
(and the vehicle) in the ledger transaction that makes the change. Void
reverses a result awaiting settlement (engine/voiding.py). So the audit
log holds a row exactly for each change made: who, what, old and new value,
reason and IP address.

Rooms hear of extend, cancel and force-end through the sequencer's state
listeners (and the end processing's publisher); of approve, reject and void,
which the core never sees, through the optional `StatePublisher`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

import bidcore
from engine.auctions import AuctionBody, auction_body
from engine.audit import write_audit
from engine.clock import Clock, to_ms
from engine.ending import EndResult
from engine.errors import LEDGER_DOWN, Refused, Replan, invalid_transition
from engine.locks import user_locks
from engine.offers import lock_auction
from engine.registry import NO_HANDLE
from engine.roles import STAFF_ROLES as STAFF_ROLES  # where web/admin_api.py reads it
from engine.sequencer import Sequencer
from engine.state_changes import InTransaction, StateChange
from engine.text import check_text
from engine.voiding import open_buyer, void_result

logger = logging.getLogger(__name__)

MAX_REASON = 1000
#: A vehicle in one of these is sold or on its way to a buyer: not for auction.
_VEHICLE_TAKEN = frozenset({"pending_settlement", "in_settlement", "sold", "archived"})
_IN_CORE = ("scheduled", "live")
_VOID_ATTEMPTS = 3

_ROW = """
SELECT a.id, a.vehicle_id, a.created_by, a.winner_id, a.auction_type, a.status, a.start_price,
a.reserve_price, a.current_price, a.bid_increment, a.deposit_pct, a.start_time, a.end_time,
a.bid_count, a.bidder_count, a.anti_snipe_window_ms, a.anti_snipe_extension_ms, a.last_seq,
a.if_bid_window_ms, a.counter_window_ms
FROM auctions a WHERE a.id = $1
"""
_LOCK_VEHICLE = "SELECT status FROM vehicles WHERE id = $1 FOR UPDATE"
_VEHICLE = "UPDATE vehicles SET status = $2, updated_at = now() WHERE id = $1"
_APPROVED = """
UPDATE auctions SET status = 'scheduled', last_seq = $2, updated_at = now() WHERE id = $1
"""
_REJECTED = """
UPDATE auctions SET status = 'cancelled', cancel_reason = $2, last_seq = $3, updated_at = now()
WHERE id = $1
"""


class StatePublisher(Protocol):
    """Where a room hears of a change the core does not make (web/rooms.py's
    `Rooms.publish_state` has this shape)."""

    def publish_state(
        self, auction_id: uuid.UUID, seq: int, status: str, end_time_ms: int
    ) -> None: ...


class Finisher(Protocol):
    """End processing and its announcement (jobs/lifecycle.py's `Lifecycle.end`): a
    failure is counted and left to the sweep, the auction staying `ended`."""

    async def end(self, auction_id: uuid.UUID, leader: uuid.UUID | None) -> EndResult | None: ...


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, why, and from where (the audit row's admin_id, reason, ip_address)."""

    admin_id: uuid.UUID
    reason: str
    ip: str | None


def checked_reason(reason: str | None) -> str:
    """A reason is required: at most 1000 characters as sent, trimmed, non-empty,
    on several lines if need be."""
    if not (reason or "").strip():
        raise Refused(
            "invalid", "reason_required", "Give a `reason` for this action; it is kept in the log."
        )
    text = check_text("reason", reason, MAX_REASON, code="invalid_reason", multiline=True)
    assert text is not None  # reason is not None: it was not blank
    return text


@dataclass
class Admin:
    pool: asyncpg.Pool
    sequencer: Sequencer
    clock: Clock
    finisher: Finisher
    publisher: StatePublisher | None = None

    async def _fence(self, conn: asyncpg.Connection, auction_id: uuid.UUID) -> None:
        """Several nodes: only the auction's partition's owner writes (raises Fenced)."""
        if (fence := self.sequencer.fence(auction_id)) is not None:
            await fence.check(conn)

    # ---- drafts: not in the core --------------------------------------------------

    async def approve(self, auction_id: uuid.UUID, actor: Actor) -> AuctionBody:
        """draft → scheduled; the vehicle is in auction; the core takes it."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock_auction(conn, auction_id)
            await self._fence(conn, auction_id)
            if row["status"] != "draft":
                raise invalid_transition(row["status"], "approve", "a draft")
            end_ms = to_ms(row["end_time"])
            if end_ms <= self.clock.now_ms():
                raise Refused(
                    "conflict",
                    "end_time_passed",
                    "This draft's end time has passed; create the auction again with new times.",
                )
            vehicle = await conn.fetchval(_LOCK_VEHICLE, row["vehicle_id"])
            if vehicle in _VEHICLE_TAKEN:
                raise Refused(
                    "conflict",
                    "vehicle_unavailable",
                    f"This vehicle cannot be auctioned: it is {vehicle.replace('_', ' ')}.",
                )
            seq = row["last_seq"] + 1
            await conn.execute(_APPROVED, auction_id, seq)
            await conn.execute(_VEHICLE, row["vehicle_id"], "in_auction")
            await self._audit(
                conn,
                actor,
                "approve",
                auction_id,
                {"status": "draft", "vehicle_status": vehicle},
                {"status": "scheduled", "vehicle_status": "in_auction"},
            )
        await self._load(auction_id)
        self._publish(auction_id, seq, "scheduled", end_ms)
        return await self._body(auction_id)

    async def reject(self, auction_id: uuid.UUID, actor: Actor) -> AuctionBody:
        """draft → cancelled, the reason kept; the vehicle is available."""
        return await self._cancel_draft(auction_id, actor, "reject")

    async def _cancel_draft(self, auction_id: uuid.UUID, actor: Actor, action: str) -> AuctionBody:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock_auction(conn, auction_id)
            await self._fence(conn, auction_id)
            if row["status"] != "draft":
                raise invalid_transition(row["status"], action, "a draft")
            seq = row["last_seq"] + 1
            await conn.execute(_REJECTED, auction_id, actor.reason, seq)
            await conn.execute(_VEHICLE, row["vehicle_id"], "available")
            await self._audit(
                conn,
                actor,
                action,
                auction_id,
                {"status": "draft"},
                {
                    "status": "cancelled",
                    "cancel_reason": actor.reason,
                    "vehicle_status": "available",
                },
            )
        self._publish(auction_id, seq, "cancelled", to_ms(row["end_time"]))
        return await self._body(auction_id)

    # ---- through the core, ordered with the bids ------------------------------------

    async def extend(self, auction_id: uuid.UUID, end_time_ms: int, actor: Actor) -> AuctionBody:
        """Move a scheduled or live auction's end later."""
        state = await self._held(auction_id, "extend", "a scheduled or live auction")
        if not max(state.end_time_ms, self.clock.now_ms()) < end_time_ms <= bidcore.MAX_TIME_MS:
            raise _bad_end(state.end_time_ms)
        old = {"status": state.status, "end_time_ms": state.end_time_ms}
        new = {"status": state.status, "end_time_ms": end_time_ms}
        also = self._audit_in_ledger(actor, "extend", auction_id, old, new)
        await self._in_core(
            lambda: self.sequencer.extend_auction(auction_id, end_time_ms, also=also),
            state.status,
            "extend",
        )
        return await self._body(auction_id)

    async def cancel(self, auction_id: uuid.UUID, actor: Actor) -> AuctionBody:
        """Cancel before `ended`: the leader's exposure is released, the vehicle available."""
        row = await self._row(auction_id)
        if row["status"] == "draft":
            return await self._cancel_draft(auction_id, actor, "cancel")
        state = await self._held(
            auction_id, "cancel", "an auction that has not ended (void a result instead)"
        )
        old = self._state_value(state)
        new = {"status": "cancelled", "cancel_reason": actor.reason, "vehicle_status": "available"}
        audit = self._audit_in_ledger(actor, "cancel", auction_id, old, new)

        async def also(conn: asyncpg.Connection) -> None:
            await conn.execute(_VEHICLE, row["vehicle_id"], "available")
            await audit(conn)

        await self._in_core(
            lambda: self.sequencer.cancel_auction(auction_id, actor.reason, also=also),
            state.status,
            "cancel",
        )
        self._forget(auction_id)
        return await self._body(auction_id)

    async def force_end(self, auction_id: uuid.UUID, actor: Actor) -> AuctionBody:
        """Close now and run end processing at once (sold or unsold by the rules)."""
        state = await self._held(auction_id, "force-end", "a scheduled or live auction")
        old = self._state_value(state)
        also = self._audit_in_ledger(actor, "force_end", auction_id, old, {"status": "ended"})
        closed: list[bidcore.Closed] = []

        async def close() -> StateChange:
            change, result = await self.sequencer.close_auction(auction_id, also=also)
            closed.append(result)
            return change

        await self._in_core(close, state.status, "force-end")
        leader = closed[0].leader
        registry = self.sequencer.registry
        winner = (
            None if leader is None or closed[0].leader_is_platform else registry.user_id(leader)
        )
        await self.finisher.end(auction_id, winner)
        return await self._body(auction_id)

    # ---- after the end ----------------------------------------------------------------

    async def void(self, auction_id: uuid.UUID, actor: Actor) -> AuctionBody:
        """Void a result awaiting settlement: the hold released, the auction cancelled."""
        for _ in range(_VOID_ATTEMPTS):
            buyer = await open_buyer(self.pool, auction_id)
            if buyer is None:
                row = await self._row(auction_id)
                raise invalid_transition(
                    row["status"], "void", "a result awaiting settlement (pending settlement)"
                )
            async with user_locks([buyer]):
                try:
                    async with self.pool.acquire() as conn, conn.transaction():
                        row = await lock_auction(conn, auction_id)
                        await self._fence(conn, auction_id)
                        voided = await void_result(conn, row, buyer, actor.reason)
                        await self._audit(conn, actor, "void", auction_id, voided.old, voided.new)
                except Replan:
                    continue  # the offer moved on (a default) since it was read
                for user, balance in voided.balances.items():
                    self.sequencer.set_balance(user, balance)
            self._publish(auction_id, voided.seq, "cancelled", voided.end_time_ms)
            return await self._body(auction_id)
        raise Refused(
            "conflict", "busy", "This auction's settlement is changing right now; try again."
        )

    # ---- helpers ------------------------------------------------------------------------

    async def _row(self, auction_id: uuid.UUID) -> asyncpg.Record:
        row = await self.pool.fetchrow(_ROW, auction_id)
        if row is None:
            raise Refused("not_found", "not_found", "No auction has this id.")
        return row

    async def _body(self, auction_id: uuid.UUID) -> AuctionBody:
        return auction_body(await self._row(auction_id))

    async def _held(self, auction_id: uuid.UUID, action: str, allowed: str) -> bidcore.AuctionState:
        """The core's state of a scheduled or live auction, or why there is none."""
        state = self.sequencer.held(auction_id)
        if state is not None and state.status in _IN_CORE:
            return state
        row = await self._row(auction_id)
        if state is None and row["status"] in _IN_CORE:
            raise Refused(
                "conflict",
                "auction_elsewhere",
                "Another engine node runs this auction right now; try again shortly.",
            )
        raise invalid_transition(state.status if state else row["status"], action, allowed)

    async def _in_core(
        self, change: Callable[[], Awaitable[StateChange]], status: str, action: str
    ) -> StateChange:
        """The change through the sequencer; the core's refusals as API refusals."""
        try:
            return await change()
        except (bidcore.InvalidTransition, bidcore.UnknownAuction) as err:
            # It ended or left the core between the check and the change.
            raise Refused(
                "conflict",
                "invalid_transition",
                f"This auction stopped being {status} while the {action} was being made; "
                "reload it to see its state.",
            ) from err
        except bidcore.InvalidArgument as err:
            raise Refused("invalid", "invalid_end_time", str(err)) from err

    def _state_value(self, state: bidcore.AuctionState) -> dict[str, Any]:
        registry = self.sequencer.registry
        leader = state.leader
        return {
            "status": state.status,
            "end_time_ms": state.end_time_ms,
            "current_price_kobo": state.current_price_kobo,
            "leader_id": None
            if leader is None or state.leader_is_platform
            else registry.user_id(leader),
            "bid_count": state.bid_count,
        }

    def _audit_in_ledger(
        self,
        actor: Actor,
        action: str,
        auction_id: uuid.UUID,
        old: dict[str, Any],
        new: dict[str, Any],
    ) -> InTransaction:
        async def audit(conn: asyncpg.Connection) -> None:
            await self._audit(conn, actor, action, auction_id, old, new)

        return audit

    @staticmethod
    async def _audit(
        conn: asyncpg.Connection,
        actor: Actor,
        action: str,
        auction_id: uuid.UUID,
        old: dict[str, Any],
        new: dict[str, Any],
    ) -> None:
        await write_audit(
            conn,
            actor.admin_id,
            action,
            auction_id,
            old=old,
            new=new,
            reason=actor.reason,
            ip=actor.ip,
        )

    async def _load(self, auction_id: uuid.UUID) -> None:
        """The approved auction is durable: if the core cannot take it now, recovery will."""
        try:
            await self.sequencer.load_auction(auction_id)
        except LEDGER_DOWN as err:
            logger.error("auction %s is approved but not yet in the core: %r", auction_id, err)

    def _forget(self, auction_id: uuid.UUID) -> None:
        if self.sequencer.registry.auction_handle(auction_id) != NO_HANDLE:
            self.sequencer.forget_auction(auction_id)

    def _publish(self, auction_id: uuid.UUID, seq: int, status: str, end_time_ms: int) -> None:
        if self.publisher is None:
            return
        try:
            self.publisher.publish_state(auction_id, seq, status, end_time_ms)
        except Exception:  # committed already: the room can resume from a snapshot
            logger.exception("auction %s: the room was not told of %s", auction_id, status)


def _bad_end(current_end_ms: int) -> Refused:
    return Refused(
        "invalid",
        "invalid_end_time",
        f"`end_time_ms` must be later than the auction's current end ({current_end_ms}) "
        "and than now.",
    )
