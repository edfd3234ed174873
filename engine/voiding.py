"""Voiding a result awaiting settlement (an admin's action): the offer voided,
the hold released, payments refunded, the auction cancelled, the vehicle
available again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from engine.clock import to_ms
from engine.errors import Replan, invalid_transition
from engine.money import naira_to_kobo
from engine.notifications import notify
from engine.offers import (
    CLOSE_OFFER,
    LOCK_OPEN_OFFER,
    OPEN_OFFER,
    SET_VEHICLE_STATUS,
    move_money,
    refund_payments,
)

_VOIDED = """
UPDATE auctions SET status = 'cancelled', cancel_reason = $2, winner_id = NULL,
       payment_deadline = NULL, last_seq = $3, updated_at = now()
WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class Voided:
    auction_id: uuid.UUID
    buyer: uuid.UUID
    released_kobo: int  # the held deposit, back in the wallet
    refunded_kobo: int  # payments made, back in the wallet
    seq: int  # the room's `state` event
    end_time_ms: int
    old: dict[str, Any]
    new: dict[str, Any]
    balances: dict[uuid.UUID, int] = field(default_factory=dict)


async def open_buyer(pool: asyncpg.Pool, auction_id: uuid.UUID) -> uuid.UUID | None:
    """Who holds the auction's open offer (read without locks, to plan user locks)."""
    offer = await pool.fetchrow(OPEN_OFFER, auction_id)
    return offer["user_id"] if offer is not None else None


async def void_result(
    conn: asyncpg.Connection, auction: asyncpg.Record, buyer: uuid.UUID, reason: str
) -> Voided:
    """Void a `pending_settlement` result (the auction row locked by the caller): the
    offer is voided, the hold released (`bid_deposit_release`), payments refunded,
    the auction cancelled and the vehicle available again."""
    if auction["status"] != "pending_settlement":
        raise invalid_transition(auction["status"], "void", "only a result awaiting settlement")
    offer = await conn.fetchrow(LOCK_OPEN_OFFER, auction["id"])
    if offer is None or offer["user_id"] != buyer:
        raise Replan(f"auction {auction['id']}'s offer changed since the void was planned")
    auction_id = auction["id"]
    held = offer["deposit_status"] == "held"
    deposit = naira_to_kobo(offer["deposit"])
    new_status = "released" if held else offer["deposit_status"]
    await conn.execute(CLOSE_OFFER, offer["id"], "voided", new_status)
    balances: dict[uuid.UUID, int] = {}
    if held:
        moved = await move_money(
            conn,
            buyer,
            "bid_deposit_release",
            deposit,
            auction_id,
            f"Deposit released: the result of auction {auction_id} was voided",
            f"release:{auction_id}:{buyer}",
        )
        balances[buyer] = moved.balance_kobo
    refunded = await refund_payments(conn, auction_id, buyer, balances, "the result was voided")
    seq = auction["last_seq"] + 1
    await conn.execute(_VOIDED, auction_id, reason, seq)
    await conn.execute(SET_VEHICLE_STATUS, auction["vehicle_id"], "available")
    await notify(
        conn,
        buyer,
        "auction_voided",
        {
            "auction_id": str(auction_id),
            "released_kobo": deposit if held else 0,
            "refunded_kobo": refunded,
            "reason": reason,
        },
        channels=("email", "in_app"),
        occasion=str(auction_id),
    )
    old = {
        "status": "pending_settlement",
        "winner_id": buyer,
        "offer_id": offer["id"],
        "outcome": "open",
        "deposit_status": offer["deposit_status"],
        "deposit_kobo": deposit,
    }
    new = {
        "status": "cancelled",
        "winner_id": None,
        "outcome": "voided",
        "deposit_status": new_status,
        "released_kobo": deposit if held else 0,
        "refunded_kobo": refunded,
        "vehicle_status": "available",
    }
    end_ms = to_ms(auction["end_time"])
    return Voided(
        auction_id, buyer, deposit if held else 0, refunded, seq, end_ms, old, new, balances
    )
