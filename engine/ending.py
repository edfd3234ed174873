"""End processing: at the hammer, sold or unsold by RULES.md, exactly once.

`end_auction` runs in one transaction under the auction's row lock, and only
while the auction is `ended` (the close itself is durable by then): so two
processes, or a restart, can race for it and it still happens once. It
decides sold or unsold, moves the winner's deposit out of the wallet (or
records it as due), opens the winner's settlement offer with its 24 h
deadline, moves the vehicle, and writes the notifications outbox rows in the
same transaction — a notification exists exactly when its fact does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

import bidcore
from engine.allowances import spend
from engine.clock import to_datetime
from engine.embeddings import similar_vehicles
from engine.leases import Fence
from engine.money import deposit_bp, effective_reserve_kobo, naira_to_kobo
from engine.notifications import notify
from engine.offers import (
    LOCK_AUCTION,
    PAYMENT_WINDOW_MS,
    SET_VEHICLE_STATUS,
    open_offer,
    settle_if_covered,
    tell_buyer,
)
from engine.publiclog import sign_result
from engine.signing import LogSigner

SIMILAR_SHOWN = 3
_BIDS = "SELECT user_id, amount, is_platform_bid FROM bids WHERE auction_id = $1 ORDER BY seq"
_SOLD = """
UPDATE auctions SET status = 'pending_settlement', winner_id = $2, payment_deadline = $3,
       last_seq = $4, updated_at = now()
WHERE id = $1
"""
_UNSOLD = "UPDATE auctions SET status = 'unsold', last_seq = $2, updated_at = now() WHERE id = $1"


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


async def end_auction(
    pool: asyncpg.Pool,
    auction_id: uuid.UUID,
    now_ms: int,
    *,
    fence: Fence | None = None,
    signer: LogSigner | None = None,
) -> EndResult | None:
    """End processing for an `ended` auction; None if it is not (done already).

    With `fence` (a node of several), only while the auction's partition is this
    node's: raises Fenced once another node has taken it. With `signer`, the bid
    log's result is signed and stored in the same transaction (engine/publiclog.py)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK_AUCTION, auction_id)
        if row is None or row["status"] != "ended":
            return None
        if fence is not None:
            await fence.check(conn)
        bids = await conn.fetch(_BIDS, auction_id)
        bidders = list(dict.fromkeys(b["user_id"] for b in bids if not b["is_platform_bid"]))
        lead = bids[-1] if bids else None
        seq = row["last_seq"] + 1
        if lead is None or not _sold(row, lead):
            await conn.execute(_UNSOLD, auction_id, seq)
            await conn.execute(SET_VEHICLE_STATUS, row["vehicle_id"], "available")
            await _tell_losers(conn, row, bidders, winner=None, result="unsold")
            if signer is not None:
                await sign_result(conn, signer, auction_id, winner_number=None)
            return EndResult(auction_id, seq, False, _price(lead), None, None, None, bidders)
        winner, amount = lead["user_id"], naira_to_kobo(lead["amount"])
        deadline_ms = now_ms + PAYMENT_WINDOW_MS
        if fence is not None:  # its allowance backed the deposit: both leave together
            held = bidcore.deposit(amount, deposit_bp(row["deposit_pct"]))
            await spend(conn, winner, fence.partition, held)
        offer = await open_offer(conn, auction_id, winner, amount, row["deposit_pct"], deadline_ms)
        await conn.execute(_SOLD, auction_id, winner, to_datetime(deadline_ms), seq)
        await conn.execute(SET_VEHICLE_STATUS, row["vehicle_id"], "pending_settlement")
        await tell_buyer(conn, auction_id, winner, amount, offer, deadline_ms)
        await settle_if_covered(conn, row, offer, amount)
        await _tell_losers(conn, row, bidders, winner=winner, result="sold")
        if signer is not None:
            await sign_result(conn, signer, auction_id, winner_number=bidders.index(winner) + 1)
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
