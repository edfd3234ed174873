"""Where a bidder stands in one auction (a room's `you`).

A bidder's handle ("Bidder 3") is the order of their first bid in the auction;
their status is `winning` or `outbid` while the auction is open, `won` or `lost`
once decided, and null before their first bid and once cancelled. `max_kobo` is
the highest maximum they set on the auction — their latest, since a maximum is
only ever raised — shown whether it still leads or was passed (eBay shows a
bidder's maximum after it was outbid too): `status` says which. Their buying
power left (`available_kobo`) is the core's, for every auction at once.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg

from engine.auctions import You, YouStatus
from engine.money import naira_to_kobo
from engine.registry import NO_HANDLE
from engine.sequencer import Sequencer

#: An auction not yet decided: a bidder is winning or outbid in it.
_OPEN = frozenset({"scheduled", "live", "ended"})
_DECIDED = frozenset({"pending_settlement", "settled", "unsold", "relisted"})


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
           AS max_amount
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
        status=_status(row["status"], row["winner_id"], row["leader"], user_id, number),
        max_kobo=_kobo(row["max_amount"]),
    )


def _status(
    auction_status: str,
    winner_id: uuid.UUID | None,
    leader: uuid.UUID | None,
    user_id: uuid.UUID,
    number: int | None,
) -> YouStatus | None:
    if number is None:  # no bid here (a pre-bid at most)
        return None
    if auction_status in _OPEN:
        return "winning" if leader == user_id else "outbid"
    if auction_status in _DECIDED:
        return "won" if winner_id == user_id else "lost"
    return None  # cancelled


def _kobo(naira: Decimal | None) -> int | None:
    return naira_to_kobo(naira) if naira is not None else None
