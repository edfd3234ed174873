"""After the hammer: end processing, exactly once.

`end_auction` runs in one transaction under the auction's row lock, and only
while the auction is `ended` (the close itself is durable by then): so two
processes, or a restart, can race for it and it still happens once. It
decides sold or unsold by RULES.md, moves the winner's deposit out of the
wallet (or records it as due), opens the winner's settlement offer with its
24 h deadline, moves the vehicle, and writes the notifications outbox rows
in the same transaction — a notification exists exactly when its fact does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

import bidcore
from engine.clock import to_datetime
from engine.embeddings import similar_vehicles
from engine.money import kobo_to_naira, naira_to_kobo
from engine.notifications import notify
from engine.recovery import deposit_bp, effective_reserve_kobo

PAYMENT_WINDOW_MS = 24 * 3_600_000
SIMILAR_SHOWN = 3

_LOCK = """
SELECT a.id, a.status, a.auction_type, a.reserve_price, a.deposit_pct, a.last_seq,
       a.vehicle_id
FROM auctions a WHERE a.id = $1 FOR UPDATE
"""
_BIDS = "SELECT user_id, amount, is_platform_bid FROM bids WHERE auction_id = $1 ORDER BY seq"
_SOLD = """
UPDATE auctions SET status = 'pending_settlement', winner_id = $2, payment_deadline = $3,
       last_seq = $4, updated_at = now()
WHERE id = $1
"""
_UNSOLD = "UPDATE auctions SET status = 'unsold', last_seq = $2, updated_at = now() WHERE id = $1"
_VEHICLE = "UPDATE vehicles SET status = $2, updated_at = now() WHERE id = $1"
_TAKE_DEPOSIT = """
UPDATE users SET wallet_balance = wallet_balance - $2, updated_at = now()
WHERE id = $1 AND wallet_balance >= $2
RETURNING wallet_balance
"""
_HOLD_TRANSACTION = """
INSERT INTO transactions (user_id, type, amount, balance_after, reference_id, reference_type,
                          status, description, idempotency_key)
VALUES ($1, 'bid_deposit_hold', $2, $3, $4, 'auction', 'completed', $5, $6)
"""
_OFFER = """
INSERT INTO settlement_offers (auction_id, user_id, amount, deposit, deposit_status, deadline)
VALUES ($1, $2, $3, $4, $5, $6)
"""


@dataclass(frozen=True, slots=True)
class EndResult:
    auction_id: uuid.UUID
    seq: int  # the room's `ended` event
    sold: bool
    final_price_kobo: int | None
    winner_id: uuid.UUID | None
    winner_number: int | None  # "Bidder N"
    winner_balance_kobo: int | None  # after the deposit left the wallet
    bidders: list[uuid.UUID]  # distinct real bidders, in order of first bid


@dataclass(frozen=True, slots=True)
class Offer:
    deposit_kobo: int
    held: bool
    balance_kobo: int | None


async def end_auction(pool: asyncpg.Pool, auction_id: uuid.UUID, now_ms: int) -> EndResult | None:
    """End processing for an `ended` auction; None if it is not (done already)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_LOCK, auction_id)
        if row is None or row["status"] != "ended":
            return None
        bids = await conn.fetch(_BIDS, auction_id)
        bidders = list(dict.fromkeys(b["user_id"] for b in bids if not b["is_platform_bid"]))
        lead = bids[-1] if bids else None
        seq = row["last_seq"] + 1
        if lead is None or not _sold(row, lead):
            await conn.execute(_UNSOLD, auction_id, seq)
            await conn.execute(_VEHICLE, row["vehicle_id"], "available")
            await _tell_losers(conn, row, bidders, winner=None, result="unsold")
            return EndResult(auction_id, seq, False, _price(lead), None, None, None, bidders)
        winner, amount = lead["user_id"], naira_to_kobo(lead["amount"])
        deadline_ms = now_ms + PAYMENT_WINDOW_MS
        offer = await open_offer(conn, auction_id, winner, amount, row["deposit_pct"], deadline_ms)
        await conn.execute(_SOLD, auction_id, winner, to_datetime(deadline_ms), seq)
        await conn.execute(_VEHICLE, row["vehicle_id"], "pending_settlement")
        await _tell_winner(conn, auction_id, winner, amount, offer, deadline_ms)
        await _tell_losers(conn, row, bidders, winner=winner, result="sold")
        return EndResult(
            auction_id,
            seq,
            True,
            amount,
            winner,
            bidders.index(winner) + 1,
            offer.balance_kobo,
            bidders,
        )


def _sold(row: asyncpg.Record, lead: asyncpg.Record) -> bool:
    """RULES.md: no bid, a platform lead, or a binding reserve not met → unsold."""
    if lead["is_platform_bid"]:
        return False
    reserve = effective_reserve_kobo(row["auction_type"], row["reserve_price"])
    return reserve is None or naira_to_kobo(lead["amount"]) >= reserve


def _price(lead: asyncpg.Record | None) -> int | None:
    return naira_to_kobo(lead["amount"]) if lead is not None else None


async def open_offer(
    conn: asyncpg.Connection,
    auction_id: uuid.UUID,
    user_id: uuid.UUID,
    amount_kobo: int,
    deposit_pct: Decimal,
    deadline_ms: int,
) -> Offer:
    """Offer the vehicle at `amount_kobo`: take the deposit now if the wallet
    covers it (a `bid_deposit_hold` transaction), else record it as due."""
    deposit = bidcore.deposit(amount_kobo, deposit_bp(deposit_pct))
    balance = await conn.fetchval(_TAKE_DEPOSIT, user_id, kobo_to_naira(deposit))
    held = balance is not None
    if held:
        await conn.execute(
            _HOLD_TRANSACTION,
            user_id,
            kobo_to_naira(deposit),
            balance,
            auction_id,
            "Deposit held for a won auction",
            f"hold:{auction_id}:{user_id}",
        )
    await conn.execute(
        _OFFER,
        auction_id,
        user_id,
        kobo_to_naira(amount_kobo),
        kobo_to_naira(deposit),
        "held" if held else "due",
        to_datetime(deadline_ms),
    )
    return Offer(deposit, held, naira_to_kobo(balance) if held else None)


async def _tell_winner(
    conn: asyncpg.Connection,
    auction_id: uuid.UUID,
    winner: uuid.UUID,
    amount_kobo: int,
    offer: Offer,
    deadline_ms: int,
) -> None:
    due_now = amount_kobo - offer.deposit_kobo if offer.held else amount_kobo
    payload: dict[str, Any] = {
        "auction_id": str(auction_id),
        "amount_kobo": amount_kobo,
        "deposit_kobo": offer.deposit_kobo,
        "deposit_status": "held" if offer.held else "due",
        "amount_due_kobo": due_now,
        "payment_deadline_ms": deadline_ms,
    }
    await notify(
        conn,
        winner,
        "auction_won",
        payload,
        channels=("email", "sms", "in_app"),
        occasion=f"{auction_id}:{deadline_ms}",
    )


async def _tell_losers(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    bidders: list[uuid.UUID],
    *,
    winner: uuid.UUID | None,
    result: str,
) -> None:
    losers = [user for user in bidders if user != winner]
    if not losers:
        return
    similar = [
        {
            "vehicle_id": str(v["id"]),
            "make": v["make"],
            "model": v["model"],
            "year": v["year"],
            "price_kobo": naira_to_kobo(v["price"]) if v["price"] is not None else None,
        }
        for v in await similar_vehicles(conn, row["vehicle_id"], SIMILAR_SHOWN)
    ]
    payload = {"auction_id": str(row["id"]), "result": result, "similar_vehicles": similar}
    for user in losers:
        await notify(
            conn,
            user,
            "auction_lost",
            payload,
            channels=("email", "in_app"),
            occasion=str(row["id"]),
        )
