"""Auctions: creating them, and reading them as the rooms and the REST API show them.

`snapshot()` is the room's state for the WebSocket `snapshot` and its REST
fallback. It shows only what is durable: the core is read for an auction it
holds when the core and the ledger agree on the room's `seq` (nothing in
flight), and the ledger's row otherwise, so a client never sees a bid or a
state change that a crash could still take back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NoReturn

import asyncpg
import msgspec

import bidcore
from engine.clock import to_datetime, to_ms
from engine.errors import LEDGER_DOWN, RefusalKind, Refused
from engine.ifbid import DEFAULT_COUNTER_WINDOW_MS, DEFAULT_IF_BID_WINDOW_MS, MAX_WINDOW_MS
from engine.money import MAX_KOBO, deposit_bp, effective_reserve_kobo, kobo_to_naira, naira_to_kobo
from engine.sequencer import Sequencer

logger = logging.getLogger(__name__)


# ---- what this service takes and gives ----------------------------------------


class AuctionFields(msgspec.Struct, forbid_unknown_fields=True):
    """What both ways of creating an auction take (API.md "Creating an auction")."""

    vehicle_id: uuid.UUID
    start_time_ms: int
    end_time_ms: int
    start_price_kobo: int
    auction_type: str = "timed"
    reserve_price_kobo: int | None = None
    bid_increment_kobo: int = 5_000_000
    deposit_pct_bp: int = 2000
    anti_snipe_window_ms: int = 120_000
    anti_snipe_extension_ms: int = 120_000
    #: The if-bid (RULES.md): how long the seller has to decide on a top bid below
    #: the reserve, and each party to answer a counter.
    if_bid_window_ms: int = DEFAULT_IF_BID_WINDOW_MS
    counter_window_ms: int = DEFAULT_COUNTER_WINDOW_MS


class AuctionBody(msgspec.Struct, frozen=True):
    """An auction as created: `snapshot.auction`'s fields and its settings."""

    id: uuid.UUID
    status: str
    current_price_kobo: int | None
    min_next_bid_kobo: int
    bid_increment_kobo: int
    start_time_ms: int
    end_time_ms: int
    bid_count: int
    bidder_count: int
    reserve_met: bool | None
    vehicle_id: uuid.UUID
    created_by: uuid.UUID
    auction_type: str
    start_price_kobo: int
    reserve_price_kobo: int | None
    deposit_pct_bp: int
    anti_snipe_window_ms: int
    anti_snipe_extension_ms: int
    winner_id: uuid.UUID | None
    if_bid_window_ms: int
    counter_window_ms: int


class VehicleSummary(msgspec.Struct, frozen=True):
    make: str | None
    model: str | None
    year: int
    body_type: str | None
    mileage_km: int | None
    color: str | None
    location: str | None


class AuctionSummary(msgspec.Struct, frozen=True):
    id: uuid.UUID
    status: str
    auction_type: str
    current_price_kobo: int | None
    min_next_bid_kobo: int
    bid_increment_kobo: int
    start_price_kobo: int
    start_time_ms: int
    end_time_ms: int
    bid_count: int
    bidder_count: int
    reserve_met: bool | None
    vehicle_id: uuid.UUID
    vehicle: VehicleSummary


class SnapshotAuction(msgspec.Struct, frozen=True):
    id: uuid.UUID
    status: str
    current_price_kobo: int | None  # None until the first bid
    min_next_bid_kobo: int
    bid_increment_kobo: int
    start_time_ms: int
    end_time_ms: int
    bid_count: int
    bidder_count: int
    reserve_met: bool | None  # None: the auction has no (binding) reserve


class SnapshotVehicle(msgspec.Struct, frozen=True):
    """The vehicle on sale, as a room shows it (it does not change during the auction)."""

    id: uuid.UUID
    year: int
    make: str | None
    model: str | None
    body_type: str | None
    mileage_km: int | None
    color: str | None
    condition: str
    location: str | None


class RecentBid(msgspec.Struct, frozen=True):
    amount_kobo: int
    bidder: str  # "Bidder 3", or "Reserve protection" for a platform bid
    is_platform_bid: bool
    at_ms: int
    is_proxy: bool = False  # placed by the engine for the bidder's maximum
    hash: str | None = None  # its hash in the bid log, hex (engine/bidlog.py)


YouStatus = Literal["winning", "outbid", "won", "lost", "seller_decision"]


class You(msgspec.Struct, frozen=True):
    """A bidder's own standing in the room (null for a guest)."""

    handle: str | None  # "Bidder 3"; null before their first bid here
    status: YouStatus | None  # null before their first bid here, and once cancelled
    #: The highest maximum they set here, whether it still leads (`winning`) or was
    #: passed (`outbid`); null: none.
    max_kobo: int | None = None
    available_kobo: int | None = None  # buying power left: balance less what they lead


class Snapshot(msgspec.Struct, frozen=True):
    """The room's state (API.md `snapshot`, without `type`: the rooms add it)."""

    seq: int
    server_time_ms: int
    auction: SnapshotAuction
    vehicle: SnapshotVehicle
    recent_bids: list[RecentBid]  # newest first, at most 50
    you: You | None = None


class HistoryBid(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: uuid.UUID
    amount_kobo: int
    is_platform_bid: bool
    at_ms: int
    client_bid_id: str | None
    seq: int
    is_proxy: bool  # placed by the engine for the bidder's maximum


class BidHistory(msgspec.Struct, frozen=True):
    bids: list[HistoryBid]


RECENT_BIDS = 50
MAX_ANTI_SNIPE_MS = 7 * 24 * 3_600_000
AUCTION_TYPES = ("timed", "reserve", "no_reserve", "flash")
#: Who may create auctions (the seed's permission matrix), and who may schedule them
#: directly; a dealer's auction is a draft until a manager or admin approves it.
CREATOR_ROLES = frozenset({"dealer", "manager", "admin"})
SCHEDULER_ROLES = frozenset({"manager", "admin"})
#: Statuses anyone may list or watch, among auctions that were ever scheduled
#: (`published_at`, sql/0016): a draft is not public, nor is one cancelled as a draft.
PUBLIC_STATUSES = (
    "scheduled",
    "live",
    "ended",
    "seller_decision",
    "pending_settlement",
    "settled",
    "unsold",
    "cancelled",
    "relisted",
)
#: A vehicle in one of these is sold or on its way to a buyer: not for auction.
_VEHICLE_TAKEN = frozenset({"pending_settlement", "in_settlement", "sold", "archived"})
PLATFORM_HANDLE = "Reserve protection"

# The same columns in each query (written out: SQL is never built from strings).
_INSERT = """
INSERT INTO auctions AS a (vehicle_id, created_by, auction_type, status, start_price,
    reserve_price, bid_increment, deposit_pct, start_time, end_time, original_end,
    anti_snipe_window_ms, anti_snipe_extension_ms, if_bid_window_ms, counter_window_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14)
RETURNING a.id, a.vehicle_id, a.created_by, a.winner_id, a.auction_type, a.status, a.start_price,
a.reserve_price, a.current_price, a.bid_increment, a.deposit_pct, a.start_time, a.end_time,
a.bid_count, a.bidder_count, a.anti_snipe_window_ms, a.anti_snipe_extension_ms, a.last_seq,
a.if_bid_window_ms, a.counter_window_ms
"""
_ONE = """
SELECT a.id, a.vehicle_id, a.created_by, a.winner_id, a.auction_type, a.status, a.start_price,
a.reserve_price, a.current_price, a.bid_increment, a.deposit_pct, a.start_time, a.end_time,
a.bid_count, a.bidder_count, a.anti_snipe_window_ms, a.anti_snipe_extension_ms, a.last_seq,
a.published_at, v.year, v.make, v.model, v.body_type, v.mileage_km, v.color, v.condition,
v.location
FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1
"""
_CREATOR = "SELECT role, kyc_status, is_active FROM users WHERE id = $1"
_LOCK_VEHICLE = "SELECT status, listed_by, owner_id FROM vehicles WHERE id = $1 FOR UPDATE"
_OPEN_AUCTION = """
SELECT id FROM auctions
WHERE vehicle_id = $1 AND status NOT IN ('settled', 'unsold', 'cancelled', 'relisted')
"""
_VEHICLE_IN_AUCTION = "UPDATE vehicles SET status = 'in_auction', updated_at = now() WHERE id = $1"
_RECENT = """
SELECT user_id, amount, is_platform_bid, created_at, is_proxy, hash FROM bids
WHERE auction_id = $1 ORDER BY seq DESC LIMIT $2
"""
# "Bidder N": N is the order of the bidder's first bid in the auction.
_BIDDER_NUMBERS = """
SELECT user_id, number FROM (
  SELECT user_id, row_number() OVER (ORDER BY min(seq)) AS number
  FROM bids WHERE auction_id = $1 AND NOT is_platform_bid GROUP BY user_id
) numbered WHERE user_id = ANY($2::uuid[])
"""
# The list in two fixed orders, each an index's own (sql/0017), so a page is read
# off the index and the walk stops at its LIMIT; one query whose order hangs on a
# parameter cannot be planned that way (its generic plan sorts the whole status).
# Open auctions, soonest end first: idx_auctions_status_end_id, forwards.
_LIST_ENDING_FIRST = """
SELECT a.id, a.vehicle_id, a.created_by, a.winner_id, a.auction_type, a.status, a.start_price,
a.reserve_price, a.current_price, a.bid_increment, a.deposit_pct, a.start_time, a.end_time,
a.bid_count, a.bidder_count, a.anti_snipe_window_ms, a.anti_snipe_extension_ms, a.last_seq,
       v.make, v.model, v.year, v.body_type, v.mileage_km, v.color, v.location
FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id
WHERE a.status = $1 AND a.published_at IS NOT NULL
ORDER BY a.end_time, a.id
LIMIT $2
"""
# Finished auctions, latest end first: idx_auctions_finished_list, a partial index
# whose condition is repeated here word for word so that any plan, generic ones
# included, may use it.
_LIST_ENDED_LAST = """
SELECT a.id, a.vehicle_id, a.created_by, a.winner_id, a.auction_type, a.status, a.start_price,
a.reserve_price, a.current_price, a.bid_increment, a.deposit_pct, a.start_time, a.end_time,
a.bid_count, a.bidder_count, a.anti_snipe_window_ms, a.anti_snipe_extension_ms, a.last_seq,
       v.make, v.model, v.year, v.body_type, v.mileage_km, v.color, v.location
FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id
WHERE a.status = $1
  AND a.status NOT IN ('draft', 'scheduled', 'live') AND a.published_at IS NOT NULL
ORDER BY a.end_time DESC, a.id
LIMIT $2
"""
_EXISTS = "SELECT EXISTS (SELECT 1 FROM auctions WHERE id = $1)"
_HISTORY = """
SELECT id, user_id, amount, is_platform_bid, created_at, client_bid_id, seq, is_proxy
FROM bids WHERE auction_id = $1 ORDER BY seq
"""
# The database's constraints, as refusals (a backstop: the checks below come first).
_CONSTRAINTS: dict[str, tuple[RefusalKind, str]] = {
    "auctions_one_open_per_vehicle": ("conflict", "vehicle_in_auction"),
    "auctions_end_after_start": ("invalid", "invalid_times"),
    "auctions_start_price_positive": ("invalid", "invalid_price"),
    "auctions_bid_increment_positive": ("invalid", "invalid_increment"),
    "auctions_deposit_pct_range": ("invalid", "invalid_deposit"),
    "auctions_vehicle_id_fkey": ("invalid", "unknown_vehicle"),
    "auctions_created_by_fkey": ("invalid", "unknown_user"),
}


@dataclass(frozen=True, slots=True)
class NewAuction:
    fields: AuctionFields
    created_by: uuid.UUID
    status: str  # "draft" or "scheduled"
    #: The creator must have listed or own the vehicle (a dealer on the public API).
    own_vehicle_only: bool = False


# ---- creating -------------------------------------------------------------------


async def create_auction(
    pool: asyncpg.Pool, sequencer: Sequencer, new: NewAuction, now_ms: int
) -> AuctionBody:
    """Check, insert, mark the vehicle, then give a scheduled auction to the core."""
    async with pool.acquire() as conn, conn.transaction():
        row = await insert_auction(conn, new, now_ms)
    if new.status == "scheduled":
        await give_to_core(sequencer, row["id"])
    return auction_body(row)


async def insert_auction(conn: asyncpg.Connection, new: NewAuction, now_ms: int) -> asyncpg.Record:
    """In the caller's transaction: the terms, the creator and the vehicle checked,
    the auction inserted, and the vehicle in auction when it is scheduled. The
    row, with `auction_body`'s columns; the caller gives a scheduled one to the
    core after COMMIT (`give_to_core`)."""
    _check_terms(new, now_ms)
    spec = new.fields
    try:
        async with conn.transaction():  # a savepoint: a refusal leaves the caller's as it was
            await _check_creator(conn, new)
            await _check_vehicle(conn, new)
            row: asyncpg.Record = await conn.fetchrow(
                _INSERT,
                spec.vehicle_id,
                new.created_by,
                spec.auction_type,
                new.status,
                kobo_to_naira(spec.start_price_kobo),
                _naira_or_none(spec.reserve_price_kobo),
                kobo_to_naira(spec.bid_increment_kobo),
                Decimal(spec.deposit_pct_bp).scaleb(-2),
                to_datetime(spec.start_time_ms),
                to_datetime(spec.end_time_ms),
                spec.anti_snipe_window_ms,
                spec.anti_snipe_extension_ms,
                spec.if_bid_window_ms,
                spec.counter_window_ms,
            )
            if new.status == "scheduled":
                await conn.execute(_VEHICLE_IN_AUCTION, spec.vehicle_id)
    except asyncpg.IntegrityConstraintViolationError as err:
        refusal = _refusal_for(err)
        if refusal is None:
            raise
        raise refusal from err
    return row


async def give_to_core(sequencer: Sequencer, auction_id: uuid.UUID) -> None:
    """The auction is durable: if the core cannot take it now, recovery (or the
    scheduler at its start time) will, so the creation still stands."""
    try:
        await sequencer.load_auction(auction_id)
    except LEDGER_DOWN as err:
        logger.error("auction %s is created but not yet in the core: %r", auction_id, err)


def _check_terms(new: NewAuction, now_ms: int) -> None:
    spec = new.fields
    if spec.auction_type not in AUCTION_TYPES:
        _invalid("invalid_auction_type", f"`auction_type` must be one of: {_list(AUCTION_TYPES)}.")
    if new.status not in ("draft", "scheduled"):
        _invalid("invalid_status", "`status` must be draft or scheduled.")
    if not 0 <= spec.start_time_ms < spec.end_time_ms <= bidcore.MAX_TIME_MS:
        _invalid("invalid_times", "`end_time_ms` must be after `start_time_ms` (both ≥ 0).")
    if spec.end_time_ms <= now_ms:
        _invalid("invalid_times", "`end_time_ms` is in the past; an auction must end later.")
    for name, price in (
        ("start_price_kobo", spec.start_price_kobo),
        ("reserve_price_kobo", spec.reserve_price_kobo),
    ):
        if price is not None and not 0 < price <= MAX_KOBO:
            _invalid("invalid_price", f"`{name}` must be above zero and below ₦10 trillion.")
    if not 0 < spec.bid_increment_kobo <= MAX_KOBO:
        _invalid("invalid_increment", "`bid_increment_kobo` must be above zero.")
    if not 0 <= spec.deposit_pct_bp <= 10_000:
        _invalid("invalid_deposit", "`deposit_pct_bp` must be from 0 to 10000 (0 % to 100 %).")
    for name, ms in (
        ("anti_snipe_window_ms", spec.anti_snipe_window_ms),
        ("anti_snipe_extension_ms", spec.anti_snipe_extension_ms),
    ):
        if not 0 <= ms <= MAX_ANTI_SNIPE_MS:
            _invalid(
                "invalid_anti_snipe", f"`{name}` must be from 0 to {MAX_ANTI_SNIPE_MS} (7 days)."
            )
    for name, ms in (
        ("if_bid_window_ms", spec.if_bid_window_ms),
        ("counter_window_ms", spec.counter_window_ms),
    ):
        if not 0 < ms <= MAX_WINDOW_MS:
            _invalid("invalid_window", f"`{name}` must be from 1 to {MAX_WINDOW_MS} (31 days).")
    if spec.auction_type == "reserve" and spec.reserve_price_kobo is None:
        _invalid("reserve_required", "A `reserve` auction needs a `reserve_price_kobo`.")
    if spec.auction_type == "no_reserve" and spec.reserve_price_kobo is not None:
        _invalid("reserve_not_allowed", "A `no_reserve` auction cannot have a reserve price.")


async def _check_creator(conn: asyncpg.Connection, new: NewAuction) -> None:
    creator = await conn.fetchrow(_CREATOR, new.created_by)
    if creator is None:
        _invalid("unknown_user", "`created_by` must be a user the engine knows.")
    if creator["role"] not in CREATOR_ROLES or not creator["is_active"]:
        _invalid(
            "creator_not_allowed",
            "Only an active dealer, manager or admin may create an auction.",
        )
    if creator["role"] == "dealer" and creator["kyc_status"] != "approved":
        raise Refused(
            "conflict",
            "kyc_required",
            "The dealer's KYC verification must be approved before they can create auctions.",
        )


async def _check_vehicle(conn: asyncpg.Connection, new: NewAuction) -> None:
    vehicle_id = new.fields.vehicle_id
    vehicle = await conn.fetchrow(_LOCK_VEHICLE, vehicle_id)
    if vehicle is None:
        _invalid("unknown_vehicle", "`vehicle_id` must be a vehicle the engine knows.")
    if new.own_vehicle_only and new.created_by not in (vehicle["listed_by"], vehicle["owner_id"]):
        raise Refused(
            "forbidden", "not_your_vehicle", "You can only auction a vehicle you listed or own."
        )
    if vehicle["status"] in _VEHICLE_TAKEN:
        raise Refused(
            "conflict",
            "vehicle_unavailable",
            f"This vehicle cannot be auctioned: it is {vehicle['status'].replace('_', ' ')}.",
        )
    if (open_auction := await conn.fetchval(_OPEN_AUCTION, vehicle_id)) is not None:
        raise _in_auction(open_auction)


def _refusal_for(err: asyncpg.IntegrityConstraintViolationError) -> Refused | None:
    name: str | None = getattr(err, "constraint_name", None)
    if name == "auctions_one_open_per_vehicle":
        return _in_auction()
    if name in _CONSTRAINTS:
        kind, code = _CONSTRAINTS[name]
        return Refused(kind, code, "The auction's terms are not valid; check them and resend.")
    return None


def _in_auction(auction_id: uuid.UUID | None = None) -> Refused:
    which = f" ({auction_id})" if auction_id is not None else ""
    return Refused(
        "conflict",
        "vehicle_in_auction",
        f"This vehicle is already in an auction{which} that has not finished.",
    )


def _invalid(code: str, message: str) -> NoReturn:
    raise Refused("invalid", code, message)


def _list(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def _naira_or_none(kobo: int | None) -> Decimal | None:
    return kobo_to_naira(kobo) if kobo is not None else None


# ---- reading ---------------------------------------------------------------------


_LAST_SEQS = "SELECT id, last_seq FROM auctions WHERE id = ANY($1::uuid[])"


async def last_seqs(pool: asyncpg.Pool, auction_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each auction's last room event as the ledger has it (unknown ids left out)."""
    rows = await pool.fetch(_LAST_SEQS, list(auction_ids))
    return {row["id"]: row["last_seq"] for row in rows}


async def snapshot(
    pool: asyncpg.Pool, sequencer: Sequencer, auction_id: uuid.UUID, now_ms: int
) -> Snapshot | None:
    """The room's durable state, with the 50 latest bids; None for no auction or one
    that was never public (a draft, or a draft rejected or cancelled)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(_ONE, auction_id)
        if row is None or row["published_at"] is None:
            return None
        recent = await conn.fetch(_RECENT, auction_id, RECENT_BIDS)
        held = _held_by_core(sequencer, auction_id)  # read after the last ledger read
        # The core's numbering only where the core has seen everything the ledger
        # holds (a node that merely watches this auction may be behind it).
        if held is not None and held[0].seq >= row["last_seq"]:
            numbers = held[1]
        else:
            bidders = list({bid["user_id"] for bid in recent if not bid["is_platform_bid"]})
            rows = await conn.fetch(_BIDDER_NUMBERS, auction_id, bidders)
            numbers = {number["user_id"]: number["number"] for number in rows}
    state = held[0] if held is not None and held[0].seq == row["last_seq"] else None
    return Snapshot(
        seq=state.seq if state else row["last_seq"],
        server_time_ms=now_ms,
        auction=_snapshot_auction(row, state),
        vehicle=SnapshotVehicle(
            id=row["vehicle_id"],
            year=row["year"],
            make=row["make"],
            model=row["model"],
            body_type=row["body_type"],
            mileage_km=row["mileage_km"],
            color=row["color"],
            condition=row["condition"],
            location=row["location"],
        ),
        recent_bids=[_recent_bid(bid, numbers) for bid in recent],
    )


def _held_by_core(
    sequencer: Sequencer, auction_id: uuid.UUID
) -> tuple[bidcore.AuctionState, dict[uuid.UUID, int]] | None:
    """The core's state of the auction and its bidders' numbers, if it holds it."""
    state = sequencer.held(auction_id)
    if state is None:
        return None
    registry = sequencer.registry
    numbers = {registry.user_id(user): n for n, user in enumerate(state.bidders, start=1)}
    return state, numbers


def _snapshot_auction(row: asyncpg.Record, state: bidcore.AuctionState | None) -> SnapshotAuction:
    reserve = effective_reserve_kobo(row["auction_type"], row["reserve_price"])
    if state is not None:  # the core agrees with the ledger: its values, exactly
        return SnapshotAuction(
            id=row["id"],
            status=state.status,
            current_price_kobo=state.current_price_kobo,
            min_next_bid_kobo=state.min_next_bid_kobo,
            bid_increment_kobo=state.bid_increment_kobo,
            start_time_ms=state.start_time_ms,
            end_time_ms=state.end_time_ms,
            bid_count=state.bid_count,
            bidder_count=state.bidder_count,
            reserve_met=_reserve_met(reserve, state.current_price_kobo),
        )
    price = _kobo_or_none(row["current_price"])
    return SnapshotAuction(
        id=row["id"],
        status=row["status"],
        current_price_kobo=price,
        min_next_bid_kobo=_min_next(row, price),
        bid_increment_kobo=naira_to_kobo(row["bid_increment"]),
        start_time_ms=to_ms(row["start_time"]),
        end_time_ms=to_ms(row["end_time"]),
        bid_count=row["bid_count"],
        bidder_count=row["bidder_count"],
        reserve_met=_reserve_met(reserve, price),
    )


def _recent_bid(bid: asyncpg.Record, numbers: dict[uuid.UUID, int]) -> RecentBid:
    platform = bid["is_platform_bid"]
    handle = PLATFORM_HANDLE if platform else f"Bidder {numbers[bid['user_id']]}"
    return RecentBid(
        amount_kobo=naira_to_kobo(bid["amount"]),
        bidder=handle,
        is_platform_bid=bid["is_platform_bid"],
        at_ms=to_ms(bid["created_at"]),
        is_proxy=bid["is_proxy"],
        hash=bid["hash"].hex() if bid["hash"] is not None else None,
    )


async def list_auctions(pool: asyncpg.Pool, status: str, limit: int) -> list[AuctionSummary]:
    """Auctions in `status`: open ones ending soonest first, finished ones latest first
    (ties: lowest id first)."""
    query = _LIST_ENDING_FIRST if status in ("scheduled", "live") else _LIST_ENDED_LAST
    rows = await pool.fetch(query, status, limit)
    return [summary(row) for row in rows]


def summary(row: asyncpg.Record) -> AuctionSummary:
    """An auction summary from a row with the list's columns (auction and vehicle)."""
    price = _kobo_or_none(row["current_price"])
    return AuctionSummary(
        id=row["id"],
        status=row["status"],
        auction_type=row["auction_type"],
        current_price_kobo=price,
        min_next_bid_kobo=_min_next(row, price),
        bid_increment_kobo=naira_to_kobo(row["bid_increment"]),
        start_price_kobo=naira_to_kobo(row["start_price"]),
        start_time_ms=to_ms(row["start_time"]),
        end_time_ms=to_ms(row["end_time"]),
        bid_count=row["bid_count"],
        bidder_count=row["bidder_count"],
        reserve_met=_reserve_met(
            effective_reserve_kobo(row["auction_type"], row["reserve_price"]), price
        ),
        vehicle_id=row["vehicle_id"],
        vehicle=VehicleSummary(
            make=row["make"],
            model=row["model"],
            year=row["year"],
            body_type=row["body_type"],
            mileage_km=row["mileage_km"],
            color=row["color"],
            location=row["location"],
        ),
    )


async def bid_history(pool: asyncpg.Pool, auction_id: uuid.UUID) -> list[HistoryBid] | None:
    """Every bid of the auction with its real bidder, oldest first; None: no auction."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        if not await conn.fetchval(_EXISTS, auction_id):
            return None
        rows = await conn.fetch(_HISTORY, auction_id)
    return [
        HistoryBid(
            id=row["id"],
            user_id=row["user_id"],
            amount_kobo=naira_to_kobo(row["amount"]),
            is_platform_bid=row["is_platform_bid"],
            at_ms=to_ms(row["created_at"]),
            client_bid_id=row["client_bid_id"],
            seq=row["seq"],
            is_proxy=row["is_proxy"],
        )
        for row in rows
    ]


def auction_body(row: asyncpg.Record) -> AuctionBody:
    price = _kobo_or_none(row["current_price"])
    reserve = _kobo_or_none(row["reserve_price"])
    return AuctionBody(
        id=row["id"],
        status=row["status"],
        current_price_kobo=price,
        min_next_bid_kobo=_min_next(row, price),
        bid_increment_kobo=naira_to_kobo(row["bid_increment"]),
        start_time_ms=to_ms(row["start_time"]),
        end_time_ms=to_ms(row["end_time"]),
        bid_count=row["bid_count"],
        bidder_count=row["bidder_count"],
        reserve_met=_reserve_met(
            effective_reserve_kobo(row["auction_type"], row["reserve_price"]), price
        ),
        vehicle_id=row["vehicle_id"],
        created_by=row["created_by"],
        auction_type=row["auction_type"],
        start_price_kobo=naira_to_kobo(row["start_price"]),
        reserve_price_kobo=reserve,
        deposit_pct_bp=deposit_bp(row["deposit_pct"]),
        anti_snipe_window_ms=row["anti_snipe_window_ms"],
        anti_snipe_extension_ms=row["anti_snipe_extension_ms"],
        winner_id=row["winner_id"],
        if_bid_window_ms=row["if_bid_window_ms"],
        counter_window_ms=row["counter_window_ms"],
    )


def _min_next(row: asyncpg.Record, price: int | None) -> int:
    if price is None:
        return naira_to_kobo(row["start_price"])
    return price + naira_to_kobo(row["bid_increment"])


def _reserve_met(reserve: int | None, price: int | None) -> bool | None:
    if reserve is None:
        return None
    return price is not None and price >= reserve


def _kobo_or_none(naira: Decimal | None) -> int | None:
    return naira_to_kobo(naira) if naira is not None else None
