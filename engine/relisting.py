"""Relisting (RULES.md "Relisting"): an `unsold` auction put up again by its seller
or a manager or admin — a new auction for the same vehicle, with new times and
the same or new terms, and the old one `relisted`, pointing at it.

One transaction, under the old auction's row lock taken first: the status is
checked under it, so of two relists at once the second finds the auction
`relisted` and is refused `not_unsold` (and the one-open-auction-per-vehicle
index stands behind that). The new auction is created exactly as a public
create would make it (engine.auctions.insert_auction: the same checks, the same
codes), by the old auction's creator, who stays its seller; a dealer's is a
draft for a manager or an admin to approve, theirs is scheduled unless they ask
for a draft. The audit log names who relisted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType

from engine.auctions import (
    SCHEDULER_ROLES,
    AuctionBody,
    AuctionFields,
    NewAuction,
    auction_body,
    give_to_core,
    insert_auction,
)
from engine.audit import write_audit
from engine.clock import to_ms
from engine.errors import Refused, status_words, unknown_auction
from engine.money import deposit_bp, naira_to_kobo
from engine.roles import STAFF_ROLES
from engine.sequencer import Sequencer

_LOCK_OLD = """
SELECT a.id, a.status, a.vehicle_id, a.created_by, a.auction_type, a.start_price,
       a.reserve_price, a.bid_increment, a.deposit_pct, a.anti_snipe_window_ms,
       a.anti_snipe_extension_ms, a.if_bid_window_ms, a.counter_window_ms, a.last_seq,
       a.end_time, v.listed_by, v.owner_id
FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1 FOR UPDATE OF a
"""
_RELISTED = """
UPDATE auctions SET status = 'relisted', relisted_as = $2, last_seq = $3, updated_at = now()
WHERE id = $1
"""


class RelistTerms(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/auctions/{id}/relist`: new times; each term left out is the old
    auction's (`reserve_price_kobo: null` removes the reserve)."""

    start_time_ms: int
    end_time_ms: int
    auction_type: str | UnsetType = UNSET
    start_price_kobo: int | UnsetType = UNSET
    reserve_price_kobo: int | UnsetType | None = UNSET
    bid_increment_kobo: int | UnsetType = UNSET
    deposit_pct_bp: int | UnsetType = UNSET
    anti_snipe_window_ms: int | UnsetType = UNSET
    anti_snipe_extension_ms: int | UnsetType = UNSET
    if_bid_window_ms: int | UnsetType = UNSET
    counter_window_ms: int | UnsetType = UNSET
    #: As on a public create: a dealer's is a `draft`; a manager's or an admin's is
    #: `scheduled` unless they say `draft`.
    status: str | UnsetType = UNSET


@dataclass(frozen=True, slots=True)
class Relister:
    """Who relists: their id, role (the engine's users row) and address."""

    user_id: uuid.UUID
    role: str
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Relisted:
    auction: AuctionBody  # the new one
    old_id: uuid.UUID
    old_seq: int  # the old room's `state` event (status relisted)
    old_end_time_ms: int


async def relist(
    pool: asyncpg.Pool,
    sequencer: Sequencer,
    auction_id: uuid.UUID,
    caller: Relister,
    terms: RelistTerms,
    now_ms: int,
) -> Relisted:
    """The new auction (scheduled ones given to the core after COMMIT), the old one
    relisted; refused 404 (no such auction), 403 (not its seller, a manager or an
    admin), 409 `not_unsold`, or as a create is refused for its terms."""
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchrow(_LOCK_OLD, auction_id)
        if old is None:
            raise unknown_auction()
        sellers = {old["created_by"], old["listed_by"], old["owner_id"]}
        if caller.user_id not in sellers and caller.role not in STAFF_ROLES:
            raise Refused(
                "forbidden",
                "forbidden",
                "Only this auction's seller, or a manager or an admin, may relist it.",
            )
        if old["status"] != "unsold":
            raise Refused(
                "conflict",
                "not_unsold",
                f"Only an unsold auction can be relisted; this one is "
                f"{status_words(old['status'])}.",
            )
        new = NewAuction(
            fields=_fields(old, terms),
            created_by=old["created_by"],
            status=_status(caller, terms),
        )
        row = await insert_auction(conn, new, now_ms)
        seq = old["last_seq"] + 1
        await conn.execute(_RELISTED, auction_id, row["id"], seq)
        await write_audit(
            conn,
            caller.user_id,
            "relist",
            auction_id,
            old={"status": "unsold"},
            new={"status": "relisted", "relisted_as": row["id"], "new_status": new.status},
            reason="Relisted by its seller." if caller.user_id in sellers else "Relisted by staff.",
            ip=caller.ip,
        )
    if new.status == "scheduled":
        await give_to_core(sequencer, row["id"])
    return Relisted(auction_body(row), auction_id, seq, to_ms(old["end_time"]))


def _status(caller: Relister, terms: RelistTerms) -> str:
    may_schedule = caller.role in SCHEDULER_ROLES
    status = terms.status if not isinstance(terms.status, UnsetType) else None
    if status == "scheduled" and not may_schedule:
        raise Refused(
            "forbidden",
            "approval_required",
            "A dealer's auction starts as a draft; a manager or admin approves it to "
            "schedule it. Send it without `status`, or as `draft`.",
        )
    return status or ("scheduled" if may_schedule else "draft")


def _fields(old: asyncpg.Record, terms: RelistTerms) -> AuctionFields:
    """The new auction's terms: the request's, else the old auction's."""
    reserve = old["reserve_price"]
    kept: dict[str, Any] = {
        "auction_type": old["auction_type"],
        "start_price_kobo": naira_to_kobo(old["start_price"]),
        "reserve_price_kobo": naira_to_kobo(reserve) if reserve is not None else None,
        "bid_increment_kobo": naira_to_kobo(old["bid_increment"]),
        "deposit_pct_bp": deposit_bp(old["deposit_pct"]),
        "anti_snipe_window_ms": old["anti_snipe_window_ms"],
        "anti_snipe_extension_ms": old["anti_snipe_extension_ms"],
        "if_bid_window_ms": old["if_bid_window_ms"],
        "counter_window_ms": old["counter_window_ms"],
    }
    for name in kept:
        given = getattr(terms, name)
        if not isinstance(given, UnsetType):
            kept[name] = given
    return AuctionFields(
        vehicle_id=old["vehicle_id"],
        start_time_ms=terms.start_time_ms,
        end_time_ms=terms.end_time_ms,
        **kept,
    )
