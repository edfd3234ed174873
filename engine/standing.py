"""Where a bidder stands: in one auction (a room's `you`) and across the auctions
they bid on (`GET /api/me/bids`).

A bidder's handle ("Bidder 3") is the order of their first bid in the auction;
their status is `winning` or `outbid` while the auction is open,
`seller_decision` while the seller decides on their bid below the reserve (the
if-bid: every other bidder has `lost`), `won` or `lost` once decided, and null
before their first bid and once cancelled. `max_kobo` is
the highest maximum they set on the auction — their latest, since a maximum is
only ever raised — shown whether it still leads or was passed (eBay shows a
bidder's maximum after it was outbid too): `status` says which. Their buying
power left (`available_kobo`) is the core's, for every auction at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import asyncpg
import msgspec

from engine.auctions import AuctionSummary, You, YouStatus, summary
from engine.clock import to_ms
from engine.money import naira_to_kobo
from engine.registry import NO_HANDLE
from engine.sequencer import Sequencer

#: An auction not yet decided: a bidder is winning or outbid in it.
_OPEN = frozenset({"scheduled", "live", "ended"})
_DECIDED = frozenset({"pending_settlement", "settled", "unsold", "relisted"})

# ---- what this service gives ---------------------------------------------------


class MyStanding(msgspec.Struct, frozen=True):
    """`GET /api/me/bids`: the caller's standing in one auction."""

    handle: str | None  # null while they hold only a pre-bid
    status: YouStatus | None
    max_kobo: int | None  # the highest maximum they set here (null: none)
    last_bid_kobo: int | None  # their latest bid here, a proxy's included (null: none yet)
    last_at_ms: int  # when they last bid or set a maximum here (the list's order)


class MyAuction(msgspec.Struct, frozen=True):
    auction: AuctionSummary
    you: MyStanding


class MyBids(msgspec.Struct, frozen=True):
    """The auctions the caller bid on (or set a maximum on), latest activity first."""

    auctions: list[MyAuction]


def bidder_handle(number: int) -> str:
    return f"Bidder {number}"


# ---- one auction ------------------------------------------------------------------


def standing_in_core(
    sequencer: Sequencer, auction_id: uuid.UUID, user_id: uuid.UUID, room_seq: int | None
) -> You | None:
    """The bidder's standing from the core, if it holds the auction and is not
    behind what the room has shown (`room_seq`); None otherwise. The core may be
    ahead of the room by the bids being written: those events follow."""
    state = sequencer.held(auction_id)
    if state is None or (room_seq is not None and state.seq < room_seq):
        return None
    max_kobo = sequencer.max_of(auction_id, user_id)
    user = sequencer.registry.user_handle(user_id)
    if user == NO_HANDLE or user not in state.bidders:
        return You(handle=None, status=None, max_kobo=max_kobo)
    handle = bidder_handle(state.bidders.index(user) + 1)
    if state.status == "cancelled":
        return You(handle, None, max_kobo)
    leads = state.leader == user and not state.leader_is_platform
    return You(handle, "winning" if leads else "outbid", max_kobo)


_ONE = """
WITH ranked AS (
    SELECT user_id, row_number() OVER (ORDER BY min(seq)) AS number
    FROM bids WHERE auction_id = $1 AND NOT is_platform_bid GROUP BY user_id
)
SELECT a.status, a.winner_id,
       (SELECT number FROM ranked WHERE user_id = $2) AS number,
       (SELECT user_id FROM bids WHERE auction_id = $1 ORDER BY seq DESC LIMIT 1) AS leader,
       (SELECT max(max_amount) FROM max_bids WHERE auction_id = $1 AND user_id = $2)
           AS max_amount,
       (SELECT bidder_id FROM if_bids WHERE auction_id = $1) AS if_bidder
FROM auctions a WHERE a.id = $1
"""


async def standing(pool: asyncpg.Pool, auction_id: uuid.UUID, user_id: uuid.UUID) -> You:
    """The bidder's standing in one auction, from the ledger."""
    row = await pool.fetchrow(_ONE, auction_id, user_id)
    if row is None:
        return You(handle=None, status=None)
    number = row["number"]
    return You(
        handle=bidder_handle(number) if number is not None else None,
        status=_status(row, user_id, number),
        max_kobo=_kobo(row["max_amount"]),
    )


def _status(row: asyncpg.Record, user_id: uuid.UUID, number: int | None) -> YouStatus | None:
    """From a row with the auction's `status`, `winner_id`, `leader` (the last bid's
    bidder) and `if_bidder` (the if-bid's bidder, if any)."""
    if number is None:  # no bid here (a pre-bid at most)
        return None
    auction_status = row["status"]
    if auction_status in _OPEN:
        return "winning" if row["leader"] == user_id else "outbid"
    if auction_status == "seller_decision":
        return "seller_decision" if row["if_bidder"] == user_id else "lost"
    if auction_status in _DECIDED:
        return "won" if row["winner_id"] == user_id else "lost"
    return None  # cancelled


def _kobo(naira: Decimal | None) -> int | None:
    return naira_to_kobo(naira) if naira is not None else None


# ---- every auction of a bidder -------------------------------------------------------

#: A bidder's auctions by their latest activity (a bid of theirs, a proxy's included,
#: or a maximum), newest first; then, per auction, the summary's columns and where
#: they stand. The handle's number counts the distinct bidders whose first bid came
#: no later than theirs.
_MINE = """
WITH mine AS (
    SELECT auction_id, max(at) AS last_at FROM (
        SELECT auction_id, created_at AS at FROM bids
        WHERE user_id = $1 AND NOT is_platform_bid
        UNION ALL
        SELECT auction_id, created_at FROM max_bids WHERE user_id = $1
    ) AS activity
    GROUP BY auction_id
    ORDER BY last_at DESC, auction_id
    LIMIT $2
)
SELECT a.id, a.vehicle_id, a.winner_id, a.auction_type, a.status, a.start_price,
       a.reserve_price, a.current_price, a.bid_increment, a.start_time, a.end_time,
       a.bid_count, a.bidder_count,
       v.make, v.model, v.year, v.body_type, v.mileage_km, v.color, v.location,
       mine.last_at,
       own.first_seq, own.last_amount,
       (SELECT max(m.max_amount) FROM max_bids m WHERE m.auction_id = a.id AND m.user_id = $1)
           AS max_amount,
       (SELECT b.user_id FROM bids b WHERE b.auction_id = a.id ORDER BY b.seq DESC LIMIT 1)
           AS leader,
       (SELECT d.bidder_id FROM if_bids d WHERE d.auction_id = a.id) AS if_bidder,
       (SELECT count(DISTINCT b.user_id) FROM bids b
        WHERE b.auction_id = a.id AND NOT b.is_platform_bid AND b.seq <= own.first_seq)
           AS number
FROM mine
JOIN auctions a ON a.id = mine.auction_id
JOIN vehicles v ON v.id = a.vehicle_id
LEFT JOIN LATERAL (
    SELECT min(b.seq) AS first_seq,
           (array_agg(b.amount ORDER BY b.seq DESC))[1] AS last_amount
    FROM bids b WHERE b.auction_id = a.id AND b.user_id = $1
) AS own ON true
ORDER BY mine.last_at DESC, a.id
"""


async def my_bids(pool: asyncpg.Pool, user_id: uuid.UUID, limit: int) -> list[MyAuction]:
    """The auctions the bidder bid or set a maximum on, latest activity first (at
    most `limit`), with where they stand in each, from the ledger."""
    rows = await pool.fetch(_MINE, user_id, limit)
    return [_mine(row, user_id) for row in rows]


def _mine(row: asyncpg.Record, user_id: uuid.UUID) -> MyAuction:
    number = row["number"] if row["first_seq"] is not None else None
    last_at: datetime = row["last_at"]
    return MyAuction(
        auction=summary(row),
        you=MyStanding(
            handle=bidder_handle(number) if number is not None else None,
            status=_status(row, user_id, number),
            max_kobo=_kobo(row["max_amount"]),
            last_bid_kobo=_kobo(row["last_amount"]),
            last_at_ms=to_ms(last_at),
        ),
    )
