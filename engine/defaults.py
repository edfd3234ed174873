"""Missed payment deadlines: the held deposit is forfeited to the platform
(audited), payments made are refunded to the wallet, and the next distinct
real bidder gets an offer at their own highest bid — or the auction is
unsold. One transaction each, planned first (who it touches) so the callers
can take those users' locks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg

from engine.audit import write_audit
from engine.clock import to_datetime, to_ms
from engine.errors import Replan
from engine.leases import Fence
from engine.money import effective_reserve_kobo, kobo_to_naira, naira_to_kobo
from engine.notifications import notify
from engine.offers import (
    AUCTION,
    CLOSE_OFFER,
    LOCK_AUCTION,
    LOCK_OPEN_OFFER,
    OPEN_OFFER,
    PAYMENT_WINDOW_MS,
    SET_VEHICLE_STATUS,
    Offer,
    move_money,
    open_offer,
    refund_payments,
    settle_if_covered,
    tell_buyer,
)
from engine.roles import BIDDING_ROLES, PLATFORM_USER_ID

FORFEIT_REASON = "The payment deadline passed without full payment."
_OVERDUE = """
SELECT auction_id FROM settlement_offers
WHERE outcome = 'open' AND deadline <= $1 ORDER BY deadline, auction_id
"""
# The next offer: the highest distinct real bidder without an offer on this auction
# yet, who may still bid, at their own highest bid — which must meet a binding reserve.
_SUCCESSOR = """
SELECT b.user_id, max(b.amount) AS amount
FROM bids b JOIN users u ON u.id = b.user_id
WHERE b.auction_id = $1 AND NOT b.is_platform_bid
  AND NOT EXISTS (SELECT 1 FROM settlement_offers o
                  WHERE o.auction_id = $1 AND o.user_id = b.user_id)
  AND u.is_active AND u.kyc_status = 'approved' AND u.role = ANY($2::text[])
GROUP BY b.user_id
HAVING $3::numeric IS NULL OR max(b.amount) >= $3::numeric
ORDER BY max(b.amount) DESC, min(b.seq)
LIMIT 1
"""
_REOFFERED = """
UPDATE auctions SET winner_id = $2, payment_deadline = $3, updated_at = now() WHERE id = $1
"""
_UNSOLD_AFTER_DEFAULTS = """
UPDATE auctions SET status = 'unsold', winner_id = NULL, payment_deadline = NULL,
       last_seq = $2, unsold_at = now(), updated_at = now()
WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class DefaultPlan:
    """Who a default touches, read before the locks are taken."""

    auction_id: uuid.UUID
    defaulter: uuid.UUID
    successor: uuid.UUID | None

    @property
    def users(self) -> set[uuid.UUID]:
        users = {self.defaulter, PLATFORM_USER_ID}
        if self.successor is not None:
            users.add(self.successor)
        return users


@dataclass(frozen=True, slots=True)
class Default:
    """One missed deadline and what followed it."""

    auction_id: uuid.UUID
    defaulter: uuid.UUID
    forfeited_kobo: int  # the held deposit, now platform revenue (0 if it was due)
    refunded_kobo: int  # payments made, back in the defaulter's wallet
    successor: uuid.UUID | None  # None: nobody left, the auction is unsold
    offer: Offer | None
    amount_kobo: int | None  # the successor's own highest bid
    deadline_ms: int | None
    status: str  # the auction's: pending_settlement, settled (a 100 % deposit) or unsold
    seq: int | None  # the room's `state` event when unsold
    end_time_ms: int
    balances: dict[uuid.UUID, int] = field(default_factory=dict)  # committed, for the core


async def overdue_auctions(pool: asyncpg.Pool, now_ms: int) -> list[uuid.UUID]:
    """Auctions whose open offer is past its deadline, earliest first."""
    return [row["auction_id"] for row in await pool.fetch(_OVERDUE, to_datetime(now_ms))]


async def plan_default(
    pool: asyncpg.Pool, auction_id: uuid.UUID, now_ms: int
) -> DefaultPlan | None:
    """Who `default_offer` would touch now; None if the offer is not overdue."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        auction = await conn.fetchrow(AUCTION, auction_id)
        offer = await conn.fetchrow(OPEN_OFFER, auction_id)
        if not _overdue(auction, offer, now_ms):
            return None
        successor = await _successor(conn, auction)
    return DefaultPlan(auction_id, offer["user_id"], successor[0] if successor else None)


def _overdue(auction: asyncpg.Record | None, offer: asyncpg.Record | None, now_ms: int) -> bool:
    return (
        auction is not None
        and auction["status"] == "pending_settlement"
        and offer is not None
        and to_ms(offer["deadline"]) <= now_ms
    )


async def default_offer(
    pool: asyncpg.Pool, plan: DefaultPlan, now_ms: int, *, fence: Fence | None = None
) -> Default | None:
    """The open offer missed its deadline: close it and offer the next bidder, in one
    transaction; None if it is not overdue (paid, or another process did it). With
    `fence` (several nodes), only while the auction's partition is this node's."""
    async with pool.acquire() as conn, conn.transaction():
        auction = await conn.fetchrow(LOCK_AUCTION, plan.auction_id)
        if fence is not None:
            await fence.check(conn)
        offer = await conn.fetchrow(LOCK_OPEN_OFFER, plan.auction_id)
        if not _overdue(auction, offer, now_ms):
            return None
        successor = await _successor(conn, auction)
        next_user = successor[0] if successor is not None else None
        if offer["user_id"] != plan.defaulter or next_user != plan.successor:
            raise Replan(f"auction {plan.auction_id} changed since its default was planned")
        balances: dict[uuid.UUID, int] = {}
        forfeited, refunded = await _close_defaulted(conn, auction, offer, balances)
        end_ms = to_ms(auction["end_time"])
        if successor is None:
            seq = auction["last_seq"] + 1
            await conn.execute(_UNSOLD_AFTER_DEFAULTS, auction["id"], seq)
            await conn.execute(SET_VEHICLE_STATUS, auction["vehicle_id"], "available")
            return Default(
                auction["id"],
                plan.defaulter,
                forfeited_kobo=forfeited,
                refunded_kobo=refunded,
                successor=None,
                offer=None,
                amount_kobo=None,
                deadline_ms=None,
                status="unsold",
                seq=seq,
                end_time_ms=end_ms,
                balances=balances,
            )
        user, amount = successor
        deadline = now_ms + PAYMENT_WINDOW_MS
        new = await open_offer(conn, auction["id"], user, amount, auction["deposit_pct"], deadline)
        await conn.execute(_REOFFERED, auction["id"], user, to_datetime(deadline))
        if new.balance_kobo is not None:
            balances[user] = new.balance_kobo
        await tell_buyer(
            conn, auction["id"], user, amount, new, deadline, kind="second_chance_offer"
        )
        settled = await settle_if_covered(conn, auction, new, amount)
        return Default(
            auction["id"],
            plan.defaulter,
            forfeited_kobo=forfeited,
            refunded_kobo=refunded,
            successor=user,
            offer=new,
            amount_kobo=amount,
            deadline_ms=deadline,
            status="settled" if settled else "pending_settlement",
            seq=None,
            end_time_ms=end_ms,
            balances=balances,
        )


async def _successor(
    conn: asyncpg.Connection, auction: asyncpg.Record
) -> tuple[uuid.UUID, int] | None:
    reserve = effective_reserve_kobo(auction["auction_type"], auction["reserve_price"])
    row = await conn.fetchrow(
        _SUCCESSOR,
        auction["id"],
        sorted(BIDDING_ROLES),
        kobo_to_naira(reserve) if reserve is not None else None,
    )
    return (row["user_id"], naira_to_kobo(row["amount"])) if row is not None else None


async def _close_defaulted(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    offer: asyncpg.Record,
    balances: dict[uuid.UUID, int],
) -> tuple[int, int]:
    """Close the offer as defaulted: a held deposit becomes platform revenue, a due
    one lapses, payments made go back to the wallet. (forfeited, refunded) kobo."""
    auction_id, user = auction["id"], offer["user_id"]
    held = offer["deposit_status"] == "held"
    deposit = naira_to_kobo(offer["deposit"])
    new_status = "forfeited" if held else offer["deposit_status"]
    await conn.execute(CLOSE_OFFER, offer["id"], "defaulted", new_status)
    revenue = None
    if held:
        balance = await move_money(
            conn,
            PLATFORM_USER_ID,
            "commission_earned",
            deposit,
            auction_id,
            f"Deposit forfeited by user {user} on auction {auction_id}: payment deadline missed",
            f"forfeit:{auction_id}:{user}",
        )
        balances[PLATFORM_USER_ID] = balance.balance_kobo
        revenue = balance.transaction_id
    refunded = await refund_payments(conn, auction_id, user, balances, "the deadline passed")
    await write_audit(
        conn,
        PLATFORM_USER_ID,
        "deposit_forfeited" if held else "deposit_lapsed",
        auction_id,
        old={
            "offer_id": offer["id"],
            "user_id": user,
            "outcome": "open",
            "deposit_status": offer["deposit_status"],
            "deposit_kobo": deposit,
            "payment_deadline_ms": to_ms(offer["deadline"]),
        },
        new={
            "outcome": "defaulted",
            "deposit_status": new_status,
            "forfeited_kobo": deposit if held else 0,
            "refunded_kobo": refunded,
            "revenue_transaction_id": revenue,
        },
        reason=FORFEIT_REASON,
    )
    await notify(
        conn,
        user,
        "payment_defaulted",
        {
            "auction_id": str(auction_id),
            "deposit_kobo": deposit,
            "deposit_status": new_status,
            "refunded_kobo": refunded,
        },
        channels=("email", "in_app"),
        occasion=str(auction_id),
    )
    return (deposit if held else 0), refunded
