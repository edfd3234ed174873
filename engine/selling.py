"""A seller's auctions (`GET /api/me/auctions`): each one's summary (status,
price, bids and bidders, whether the reserve is met), its reserve, what it was
relisted as, and — when it went to the seller's decision — the if-bid: whose
turn, until when, the counters so far.

The seller is RULES.md rule 4's set: the auctions they created, and those of
vehicles they listed or own. Read from the ledger in one snapshot.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from engine.auctions import AuctionSummary, summary
from engine.ifbid import OfferBody, offer_body, offers_of
from engine.money import naira_to_kobo

# Latest end first (ties: lowest id). Each arm of the union has its own index
# (sql/0026: auctions.created_by, vehicles.listed_by; vehicles.owner_id).
_MINE = """
WITH mine AS (
    SELECT id FROM auctions WHERE created_by = $1
    UNION
    SELECT a.id FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id WHERE v.listed_by = $1
    UNION
    SELECT a.id FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id WHERE v.owner_id = $1
)
SELECT a.id, a.vehicle_id, a.auction_type, a.status, a.start_price, a.reserve_price,
       a.current_price, a.bid_increment, a.start_time, a.end_time, a.bid_count,
       a.bidder_count, a.relisted_as,
       v.make, v.model, v.year, v.body_type, v.mileage_km, v.color, v.location,
       d.auction_id AS if_bid, d.high_bid, d.state, d.turn, d.deadline, d.counters,
       d.final_amount
FROM mine
JOIN auctions a ON a.id = mine.id
JOIN vehicles v ON v.id = a.vehicle_id
LEFT JOIN if_bids d ON d.auction_id = a.id
ORDER BY a.end_time DESC, a.id
LIMIT $2
"""


class SellerAuction(msgspec.Struct, frozen=True):
    auction: AuctionSummary
    reserve_price_kobo: int | None  # the seller's own: shown to them alone
    relisted_as: uuid.UUID | None  # the auction that took an unsold one's place
    #: The if-bid, when the auction ended below its reserve with a real bid
    #: (`GET /api/auctions/{id}/offer`'s body); null otherwise.
    offer: OfferBody | None


class MyAuctions(msgspec.Struct, frozen=True):
    """The caller's auctions as a seller, latest end first."""

    auctions: list[SellerAuction]


async def my_auctions(pool: asyncpg.Pool, seller_id: uuid.UUID, limit: int) -> list[SellerAuction]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(_MINE, seller_id, limit)
        counters = await offers_of(conn, [row["id"] for row in rows if row["if_bid"] is not None])
    return [
        SellerAuction(
            auction=summary(row),
            reserve_price_kobo=naira_to_kobo(row["reserve_price"])
            if row["reserve_price"] is not None
            else None,
            relisted_as=row["relisted_as"],
            offer=offer_body(row["id"], row["status"], row, counters[row["id"]])
            if row["if_bid"] is not None
            else None,
        )
        for row in rows
    ]
