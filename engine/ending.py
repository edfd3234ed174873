"""End processing: at the hammer, sold or unsold by RULES.md, exactly once.

`end_auction` runs in one transaction under the auction's row lock, and only
while the auction is `ended` (the close itself is durable by then): so two
processes, or a restart, can race for it and it still happens once. It
decides sold, unsold or the seller's decision (the if-bid, below the reserve:
engine/ifbid.py), moves the winner's deposit out of the wallet (or records it
as due), opens the winner's settlement offer with its 24 h deadline, moves the
vehicle, and writes the notifications outbox rows in the
same transaction — a notification exists exactly when its fact does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg

from engine.commission import fix_rate
from engine.embeddings import similar_vehicles
from engine.ifbid import open_decision
from engine.leases import Fence
from engine.money import effective_reserve_kobo, naira_to_kobo
from engine.notifications import notify
from engine.offers import LOCK_AUCTION, SET_VEHICLE_STATUS, sell
from engine.publiclog import sign_result
from engine.signing import LogSigner

SIMILAR_SHOWN = 3
_BIDS = "SELECT user_id, amount, is_platform_bid FROM bids WHERE auction_id = $1 ORDER BY seq"
_UNSOLD = """
UPDATE auctions SET status = 'unsold', last_seq = $2, unsold_at = now(), updated_at = now()
WHERE id = $1
"""

Result = Literal["sold", "unsold", "seller_decision"]


@dataclass(frozen=True, slots=True)
class EndResult:
    auction_id: uuid.UUID
    seq: int  # the room's `ended` event
    sold: bool
    final_price_kobo: int | None  # the winning bid; with seller_decision the top real bid
    winner_id: uuid.UUID | None
    winner_number: int | None  # "Bidder N"
    winner_balance_kobo: int | None  # after the deposit left the wallet
    bidders: list[uuid.UUID]  # distinct real bidders, in order of first bid
    #: Below the reserve: the top real bidder, whose bid the seller decides on.
    high_bidder_id: uuid.UUID | None = None
    #: Sold and settled at once (a deposit of the whole price): the platform took
    #: its commission, so its balance moved.
    settled: bool = False

    @property
    def result(self) -> Result:
        """The room's `ended.result`."""
        if self.high_bidder_id is not None:
            return "seller_decision"
        return "sold" if self.sold else "unsold"


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
        # Amounts only rise, so the last real bid is the top one (a proxy's equal
        # answer comes after what it answers, and leads).
        top = next((b for b in reversed(bids) if not b["is_platform_bid"]), None)
        seq = row["last_seq"] + 1
        reserve = effective_reserve_kobo(row["auction_type"], row["reserve_price"])
        if top is not None and reserve is not None and naira_to_kobo(top["amount"]) < reserve:
            decided = await _to_seller(conn, row, top, reserve, bidders, seq, now_ms)
            if signer is not None:  # the bids are final; whether they sell is the seller's
                await sign_result(conn, signer, auction_id, winner_number=None)
            return decided
        if lead is None or top is None or lead["is_platform_bid"]:
            await conn.execute(_UNSOLD, auction_id, seq)
            await conn.execute(SET_VEHICLE_STATUS, row["vehicle_id"], "available")
            await _tell_losers(conn, row, bidders, winner=None, result="unsold")
            if signer is not None:
                await sign_result(conn, signer, auction_id, winner_number=None)
            return EndResult(auction_id, seq, False, _price(lead), None, None, None, bidders)
        winner, amount = lead["user_id"], naira_to_kobo(lead["amount"])
        await fix_rate(conn, auction_id)  # the commission's, as it stands at the end
        partition = fence.partition if fence is not None else None
        sale = await sell(conn, row, winner, amount, now_ms, seq, partition=partition)
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
            sale.offer.balance_kobo,
            bidders,
            settled=sale.settled,
        )


async def _to_seller(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    top: asyncpg.Record,
    reserve: int,
    bidders: list[uuid.UUID],
    seq: int,
    now_ms: int,
) -> EndResult:
    """RULES.md's if-bid: below the reserve (whether or not a platform bid leads),
    the seller decides on the top real bid; that bidder stays exposed meanwhile."""
    bidder, amount = top["user_id"], naira_to_kobo(top["amount"])
    await fix_rate(conn, row["id"])  # the commission's if it sells, as it stands at the end
    await open_decision(conn, row, bidder, amount, reserve, seq, now_ms)
    await _tell_losers(conn, row, bidders, winner=bidder, result="seller_decision")
    return EndResult(
        row["id"],
        seq,
        False,
        amount,
        None,
        None,
        None,
        bidders,
        high_bidder_id=bidder,
    )


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
