"""The if-bid in the ledger (RULES.md "If-bid: the seller's decision below the reserve").

An auction with a reserve whose top real bid at the end is below it goes to
`seller_decision` on that bid (`open_decision`, in end processing's
transaction). Then, turn by turn: the seller (or a manager or admin for them)
accepts, declines or counters; the high bidder answers a counter the same
three ways; at most `MAX_COUNTERS` counters in all, each strictly between the
high bid and the reserve; a turn not taken by its deadline expires it. Accepted
is a win at the amount on the table (engine.offers.sell); declined or expired
is `unsold`.

Each step is one transaction under the auction's row lock, taken only while the
auction is `seller_decision` and its if-bid open and the turn's deadline has not
passed, so a step is done once whoever races for it (two nodes, a retry, the
expiry sweep). On a node of several the partition's fence is checked in it: a
step moves the bidder's buying power, which only the auction's owner may write.
Its audit row and its notifications are written in the same transaction.

What the bidder is bound to (`bidder_amount`: the high bid, or their own latest
counter) keeps them exposed `deposit(bidder_amount)` until the decision; the
core holds that exposure (engine.sequencer `sync_decision`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import msgspec

from engine.audit import write_audit
from engine.clock import to_datetime, to_ms
from engine.errors import Refused, status_words, unknown_auction
from engine.leases import Fence
from engine.money import format_naira, kobo_to_naira, naira_to_kobo
from engine.notifications import notify
from engine.offers import SET_VEHICLE_STATUS, sell
from engine.roles import PLATFORM_USER_ID, STAFF_ROLES

Party = Literal["seller", "bidder"]
Action = Literal["accept", "decline", "counter"]
State = Literal["open", "accepted", "declined", "expired"]

ACTIONS: tuple[Action, ...] = ("accept", "decline", "counter")
MAX_COUNTERS = 3
DEFAULT_IF_BID_WINDOW_MS = 24 * 3_600_000
DEFAULT_COUNTER_WINDOW_MS = 4 * 3_600_000
#: The longest window an auction may set for either (a month).
MAX_WINDOW_MS = 31 * 24 * 3_600_000

_COLUMNS = """
SELECT a.id, a.status, a.auction_type, a.reserve_price, a.deposit_pct, a.last_seq,
       a.vehicle_id, a.winner_id, a.end_time, a.created_by, a.if_bid_window_ms,
       a.counter_window_ms, v.listed_by, v.owner_id
FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1
"""
_AUCTION = _COLUMNS
_LOCK_AUCTION = _COLUMNS + " FOR UPDATE OF a"
_IF_BID_COLUMNS = """
SELECT auction_id, bidder_id, high_bid, reserve_price, bidder_amount, seller_amount, state,
       turn, deadline, counters, final_amount, opened_at, decided_at
FROM if_bids WHERE auction_id = $1
"""
_IF_BID = _IF_BID_COLUMNS
_LOCK_IF_BID = _IF_BID_COLUMNS + " FOR UPDATE"
_OFFERS = """
SELECT by_party, amount, made_at FROM if_bid_offers WHERE auction_id = $1 ORDER BY position
"""
_OFFERS_OF = """
SELECT auction_id, by_party, amount, made_at FROM if_bid_offers
WHERE auction_id = ANY($1::uuid[]) ORDER BY auction_id, position
"""
_OPEN = """
INSERT INTO if_bids (auction_id, bidder_id, high_bid, reserve_price, bidder_amount, state, turn,
                     deadline, opened_at)
VALUES ($1, $2, $3, $4, $3, 'open', 'seller', $5, $6)
"""
_DECIDING = "UPDATE auctions SET status = 'seller_decision', last_seq = $2, updated_at = now()"
_DECIDING += " WHERE id = $1"
_COUNTER = """
UPDATE if_bids SET counters = counters + 1, turn = $2, deadline = $3,
       seller_amount = COALESCE($4, seller_amount), bidder_amount = COALESCE($5, bidder_amount)
WHERE auction_id = $1
"""
_COUNTER_OFFER = """
INSERT INTO if_bid_offers (auction_id, position, by_party, amount, actor_id, made_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""
_DECIDED = """
UPDATE if_bids SET state = $2, turn = NULL, final_amount = $3, decided_at = $4
WHERE auction_id = $1
"""
_UNSOLD = """
UPDATE auctions SET status = 'unsold', last_seq = $2, unsold_at = now(), updated_at = now()
WHERE id = $1
"""
_DUE = """
SELECT auction_id FROM if_bids WHERE state = 'open' AND deadline <= $1 ORDER BY deadline, auction_id
"""


# ---- what this service gives ------------------------------------------------------


class OfferEntry(msgspec.Struct, frozen=True):
    """One counter: who made it (a manager's counts as the seller's), how much, when."""

    by: Party
    amount_kobo: int
    at_ms: int


class OfferBody(msgspec.Struct, frozen=True):
    """`GET`/`POST /api/auctions/{id}/offer` (API.md): the negotiation, at the top level."""

    auction_id: uuid.UUID
    status: str  # the auction's
    state: State
    high_bid_kobo: int
    offers: list[OfferEntry]  # the counters, oldest first
    turn: Party | None  # null once decided
    deadline_ms: int | None  # the turn's deadline; null once decided
    counters_left: int
    price_kobo: int | None  # the sale price, once accepted


class OfferRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/auctions/{id}/offer`; the amount raw until checked, as a bid's
    (absent: `null`)."""

    action: str
    amount_kobo: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


@dataclass(frozen=True, slots=True)
class Acting:
    """Who calls: their id and their role (from the engine's users row)."""

    user_id: uuid.UUID
    role: str
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Move:
    """A step the caller may take now, checked against the if-bid as it stands."""

    party: Party
    action: Action
    amount_kobo: int | None  # a counter's amount; an acceptance's price
    bidder_id: uuid.UUID
    bidder_amount_kobo: int  # what the bidder is bound to before the step

    @property
    def binds_bidder_to(self) -> int:
        """What the bidder is bound to once the step is done (accepted: the price)."""
        if self.party == "bidder" and self.action in ("counter", "accept"):
            assert self.amount_kobo is not None
            return self.amount_kobo
        return self.bidder_amount_kobo


@dataclass(frozen=True, slots=True)
class Step:
    """One step done: what the core and the room need to hear."""

    auction_id: uuid.UUID
    action: str  # accept, decline, counter, expire
    state: State
    bidder_id: uuid.UUID
    status: str  # the auction's after the step
    seq: int | None  # the room's `state` event when the auction's status moved
    end_time_ms: int
    buyer_balance_kobo: int | None  # the bidder's balance after a deposit hold
    body: OfferBody


# ---- at the end ----------------------------------------------------------------------


async def open_decision(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    bidder: uuid.UUID,
    high_bid_kobo: int,
    reserve_kobo: int,
    seq: int,
    now_ms: int,
) -> int:
    """In end processing's transaction: the auction goes to `seller_decision` on the
    top real bid; the seller has `if_bid_window_ms` to decide. The deadline."""
    deadline_ms: int = now_ms + auction["if_bid_window_ms"]
    await conn.execute(_DECIDING, auction["id"], seq)
    await conn.execute(
        _OPEN,
        auction["id"],
        bidder,
        kobo_to_naira(high_bid_kobo),
        kobo_to_naira(reserve_kobo),
        to_datetime(deadline_ms),
        to_datetime(now_ms),
    )
    await write_audit(
        conn,
        PLATFORM_USER_ID,
        "if_bid_open",
        auction["id"],
        old={"status": "ended"},
        new={
            "status": "seller_decision",
            "bidder_id": bidder,
            "high_bid_kobo": high_bid_kobo,
            "reserve_price_kobo": reserve_kobo,
            "turn": "seller",
            "deadline_ms": deadline_ms,
        },
        reason="The top real bid is below the reserve: the seller decides (if-bid).",
    )
    auction_id = str(auction["id"])
    await notify(
        conn,
        auction["created_by"],
        "if_bid_received",
        {
            "auction_id": auction_id,
            "high_bid_kobo": high_bid_kobo,
            "reserve_price_kobo": reserve_kobo,
            "deadline_ms": deadline_ms,
        },
        channels=("email", "sms", "in_app"),
        occasion=f"{auction_id}:open",
    )
    await notify(
        conn,
        bidder,
        "if_bid_pending",
        {"auction_id": auction_id, "high_bid_kobo": high_bid_kobo, "deadline_ms": deadline_ms},
        channels=("email", "in_app"),
        occasion=f"{auction_id}:open",
    )
    return deadline_ms


# ---- reading ---------------------------------------------------------------------------


async def read_offer(pool: asyncpg.Pool, auction_id: uuid.UUID, caller: Acting) -> OfferBody:
    """The negotiation, for the seller, the high bidder, or a manager or admin."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        auction = await conn.fetchrow(_AUCTION, auction_id)
        if auction is None:
            raise unknown_auction()
        if_bid = await conn.fetchrow(_IF_BID, auction_id)
        party_of(caller, auction, if_bid)
        if if_bid is None:
            raise _no_offer(auction["status"])
        return await _body(conn, auction, if_bid)


async def _body(
    conn: asyncpg.Connection, auction: asyncpg.Record, if_bid: asyncpg.Record
) -> OfferBody:
    offers = [
        OfferEntry(row["by_party"], naira_to_kobo(row["amount"]), to_ms(row["made_at"]))
        for row in await conn.fetch(_OFFERS, auction["id"])
    ]
    return offer_body(auction["id"], auction["status"], if_bid, offers)


async def offers_of(
    conn: asyncpg.Connection, auction_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[OfferEntry]]:
    """The counters of several auctions, each oldest first."""
    found: dict[uuid.UUID, list[OfferEntry]] = {auction_id: [] for auction_id in auction_ids}
    for row in await conn.fetch(_OFFERS_OF, auction_ids):
        found[row["auction_id"]].append(
            OfferEntry(row["by_party"], naira_to_kobo(row["amount"]), to_ms(row["made_at"]))
        )
    return found


def offer_body(
    auction_id: uuid.UUID, status: str, if_bid: asyncpg.Record, offers: list[OfferEntry]
) -> OfferBody:
    """From a row with the if-bid's columns (`high_bid`, `state`, `turn`, `deadline`,
    `counters`, `final_amount`) and its counters."""
    is_open = if_bid["state"] == "open"
    final = if_bid["final_amount"]
    return OfferBody(
        auction_id=auction_id,
        status=status,
        state=if_bid["state"],
        high_bid_kobo=naira_to_kobo(if_bid["high_bid"]),
        offers=offers,
        turn=if_bid["turn"],
        deadline_ms=to_ms(if_bid["deadline"]) if is_open else None,
        counters_left=MAX_COUNTERS - if_bid["counters"] if is_open else 0,
        price_kobo=naira_to_kobo(final) if final is not None else None,
    )


async def offer_of(conn: asyncpg.Connection, auction_id: uuid.UUID) -> OfferBody | None:
    """The negotiation as the ledger has it now, for anyone entitled (None: no if-bid)."""
    auction = await conn.fetchrow(_AUCTION, auction_id)
    if_bid = await conn.fetchrow(_IF_BID, auction_id)
    if auction is None or if_bid is None:
        return None
    return await _body(conn, auction, if_bid)


def sellers_of(auction: asyncpg.Record) -> set[uuid.UUID]:
    """The auction's seller: RULES.md rule 4's set (creator, lister, owner)."""
    ids = {auction["created_by"], auction["listed_by"], auction["owner_id"]}
    return {seller for seller in ids if seller is not None}


def party_of(caller: Acting, auction: asyncpg.Record, if_bid: asyncpg.Record | None) -> Party:
    """Which side the caller is on: the high bidder, or the seller (a manager or admin
    acting for them); anyone else is refused."""
    if if_bid is not None and caller.user_id == if_bid["bidder_id"]:
        return "bidder"
    if caller.user_id in sellers_of(auction) or caller.role in STAFF_ROLES:
        return "seller"
    raise Refused(
        "forbidden",
        "forbidden",
        "Only this auction's seller, its high bidder, or a manager or admin for the seller "
        "may see or answer its offer.",
    )


# ---- checking a step -------------------------------------------------------------------


async def plan_move(
    pool: asyncpg.Pool,
    auction_id: uuid.UUID,
    caller: Acting,
    action: Action,
    amount_kobo: int | None,
    now_ms: int,
) -> Move:
    """The step as it would be taken now (read without locks: the step checks again
    under them), or the refusal."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        auction = await conn.fetchrow(_AUCTION, auction_id)
        if auction is None:
            raise unknown_auction()
        if_bid = await conn.fetchrow(_IF_BID, auction_id)
        return check_move(auction, if_bid, caller, action, amount_kobo, now_ms)


def check_move(
    auction: asyncpg.Record,
    if_bid: asyncpg.Record | None,
    caller: Acting,
    action: Action,
    amount_kobo: int | None,
    now_ms: int,
) -> Move:
    """RULES.md's if-bid, checked in order: who the caller is (403), that there is an
    if-bid (404), that it is open and in time, whose turn it is, then a counter's
    bounds and count (409). A refused step changes nothing."""
    party = party_of(caller, auction, if_bid)
    if if_bid is None:
        raise _no_offer(auction["status"])
    state = if_bid["state"]
    if state == "expired" or (state == "open" and now_ms >= to_ms(if_bid["deadline"])):
        raise Refused(
            "conflict",
            "offer_expired",
            "The time to answer this offer has passed; the auction is unsold (the seller "
            "may relist it).",
        )
    if state != "open":
        raise Refused(
            "conflict", "offer_closed", f"This offer was {state} already; nothing is left to do."
        )
    if if_bid["turn"] != party:
        other = "the seller" if if_bid["turn"] == "seller" else "the high bidder"
        raise Refused(
            "conflict", "not_your_turn", f"It is {other}'s turn to answer this offer; wait for it."
        )
    high = naira_to_kobo(if_bid["high_bid"])
    bound = naira_to_kobo(if_bid["bidder_amount"])
    if action == "counter":
        assert amount_kobo is not None
        if if_bid["counters"] >= MAX_COUNTERS:
            raise Refused(
                "conflict",
                "too_many_counters",
                f"This offer has had its {MAX_COUNTERS} counters; accept or decline it.",
            )
        if not high < amount_kobo < naira_to_kobo(if_bid["reserve_price"]):
            raise Refused(
                "conflict",
                "counter_out_of_range",
                f"A counter must be more than the high bid ({format_naira(high)}) and less "
                "than the reserve.",
            )
        return Move(party, action, amount_kobo, if_bid["bidder_id"], bound)
    if action == "accept":
        # The seller accepts what the bidder is bound to; the bidder the seller's counter.
        price = bound if party == "seller" else naira_to_kobo(if_bid["seller_amount"])
        return Move(party, action, price, if_bid["bidder_id"], bound)
    return Move(party, action, None, if_bid["bidder_id"], bound)


def _no_offer(status: str) -> Refused:
    return Refused(
        "not_found",
        "no_offer",
        f"This auction has no if-bid: it is {status_words(status)}, and did not end below its "
        "reserve with a real bid.",
    )


# ---- taking a step ---------------------------------------------------------------------


async def take_move(
    conn: asyncpg.Connection,
    auction_id: uuid.UUID,
    caller: Acting,
    planned: Move,
    now_ms: int,
    *,
    fence: Fence | None = None,
) -> Step:
    """The step, in the caller's transaction: checked again under the locks, and
    refused unless it is still the step planned (the if-bid moved on meanwhile: its
    own refusal says how). With `fence` (a node of several), only while the auction's
    partition is this node's; an acceptance then spends the allowance that backed
    the bidder's exposure with the deposit it backed."""
    auction = await conn.fetchrow(_LOCK_AUCTION, auction_id)
    if auction is None:
        raise unknown_auction()
    if fence is not None:
        await fence.check(conn)
    if_bid = await conn.fetchrow(_LOCK_IF_BID, auction_id)
    move = check_move(auction, if_bid, caller, planned.action, planned.amount_kobo, now_ms)
    if move != planned:
        raise Refused(
            "conflict",
            "offer_changed",
            "This offer changed while your answer was on its way; reload it and answer again.",
        )
    before = _state(if_bid)
    if move.action == "counter":
        return await _counter(conn, auction, if_bid, caller, move, before, now_ms)
    if move.action == "decline":
        return await _close_unsold(conn, auction, if_bid, caller, "decline", before, now_ms)
    partition = fence.partition if fence is not None else None
    return await _accept(conn, auction, if_bid, caller, move, before, now_ms, partition)


async def _counter(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    if_bid: asyncpg.Record,
    caller: Acting,
    move: Move,
    before: dict[str, Any],
    now_ms: int,
) -> Step:
    assert move.amount_kobo is not None
    amount = kobo_to_naira(move.amount_kobo)
    other: Party = "bidder" if move.party == "seller" else "seller"
    deadline_ms = now_ms + auction["counter_window_ms"]
    position = if_bid["counters"] + 1
    await conn.execute(
        _COUNTER,
        auction["id"],
        other,
        to_datetime(deadline_ms),
        amount if move.party == "seller" else None,
        amount if move.party == "bidder" else None,
    )
    await conn.execute(
        _COUNTER_OFFER,
        auction["id"],
        position,
        move.party,
        amount,
        caller.user_id,
        to_datetime(now_ms),
    )
    after = {
        **before,
        "turn": other,
        "deadline_ms": deadline_ms,
        "counters": position,
        f"{move.party}_amount_kobo": move.amount_kobo,
    }
    await _audit(conn, caller, "counter", auction["id"], before, after, move.party)
    recipient = if_bid["bidder_id"] if other == "bidder" else auction["created_by"]
    await notify(
        conn,
        recipient,
        "if_bid_countered",
        {
            "auction_id": str(auction["id"]),
            "by": move.party,
            "amount_kobo": move.amount_kobo,
            "deadline_ms": deadline_ms,
            "counters_left": MAX_COUNTERS - position,
        },
        channels=("email", "sms", "in_app"),
        occasion=f"{auction['id']}:counter{position}",
    )
    return await _step(conn, auction, if_bid, "counter", None, None)


async def _accept(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    if_bid: asyncpg.Record,
    caller: Acting,
    move: Move,
    before: dict[str, Any],
    now_ms: int,
    partition: int | None,
) -> Step:
    assert move.amount_kobo is not None
    price = move.amount_kobo
    await conn.execute(
        _DECIDED, auction["id"], "accepted", kobo_to_naira(price), to_datetime(now_ms)
    )
    seq = auction["last_seq"] + 1
    buyer = if_bid["bidder_id"]
    sale = await sell(conn, auction, buyer, price, now_ms, seq, partition=partition)
    status = "settled" if sale.settled else "pending_settlement"
    after = {**before, "state": "accepted", "turn": None, "price_kobo": price, "status": status}
    await _audit(conn, caller, "accept", auction["id"], before, after, move.party)
    await notify(
        conn,
        auction["created_by"],
        "if_bid_accepted",
        {
            "auction_id": str(auction["id"]),
            "by": move.party,
            "price_kobo": price,
            "payment_deadline_ms": sale.deadline_ms,
        },
        channels=("email", "sms", "in_app"),
        occasion=f"{auction['id']}:decided",
    )
    return await _step(conn, auction, if_bid, "accept", seq, sale.offer.balance_kobo)


async def _close_unsold(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    if_bid: asyncpg.Record,
    actor: Acting | None,
    action: Literal["decline", "expire"],
    before: dict[str, Any],
    now_ms: int,
) -> Step:
    """Declined or expired: the auction unsold, the vehicle available again."""
    state: State = "declined" if action == "decline" else "expired"
    await conn.execute(_DECIDED, auction["id"], state, None, to_datetime(now_ms))
    seq = auction["last_seq"] + 1
    await conn.execute(_UNSOLD, auction["id"], seq)
    await conn.execute(SET_VEHICLE_STATUS, auction["vehicle_id"], "available")
    after = {**before, "state": state, "turn": None, "status": "unsold"}
    if actor is None:  # the deadline passed: the platform closes it
        await write_audit(
            conn,
            PLATFORM_USER_ID,
            "if_bid_expire",
            auction["id"],
            old=before,
            new=after,
            reason=f"Nobody answered in time: it was {before['turn']}'s turn.",
        )
    else:
        party: Party = "bidder" if actor.user_id == if_bid["bidder_id"] else "seller"
        await _audit(conn, actor, "decline", auction["id"], before, after, party)
    payload = {"auction_id": str(auction["id"]), "state": state, "turn_missed": before["turn"]}
    for user in {auction["created_by"], if_bid["bidder_id"]}:
        await notify(
            conn,
            user,
            f"if_bid_{state}",
            payload,
            channels=("email", "in_app"),
            occasion=f"{auction['id']}:decided",
        )
    return await _step(conn, auction, if_bid, action, seq, None)


async def _step(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    if_bid: asyncpg.Record,
    action: str,
    seq: int | None,
    balance: int | None,
) -> Step:
    body = await offer_of(conn, auction["id"])
    assert body is not None
    return Step(
        auction_id=auction["id"],
        action=action,
        state=body.state,
        bidder_id=if_bid["bidder_id"],
        status=body.status,
        seq=seq,
        end_time_ms=to_ms(auction["end_time"]),
        buyer_balance_kobo=balance,
        body=body,
    )


def _state(if_bid: asyncpg.Record) -> dict[str, Any]:
    seller = if_bid["seller_amount"]
    return {
        "state": if_bid["state"],
        "turn": if_bid["turn"],
        "deadline_ms": to_ms(if_bid["deadline"]),
        "counters": if_bid["counters"],
        "bidder_id": if_bid["bidder_id"],
        "high_bid_kobo": naira_to_kobo(if_bid["high_bid"]),
        "bidder_amount_kobo": naira_to_kobo(if_bid["bidder_amount"]),
        "seller_amount_kobo": naira_to_kobo(seller) if seller is not None else None,
    }


async def _audit(
    conn: asyncpg.Connection,
    caller: Acting,
    action: str,
    auction_id: uuid.UUID,
    old: dict[str, Any],
    new: dict[str, Any],
    party: Party,
) -> None:
    acting_for = "the high bidder" if party == "bidder" else "the seller"
    await write_audit(
        conn,
        caller.user_id,
        f"if_bid_{action}",
        auction_id,
        old=old,
        new=new,
        reason=f"If-bid: {action} by {acting_for}.",
        ip=caller.ip,
    )


# ---- expiry ------------------------------------------------------------------------------


async def due_decisions(pool: asyncpg.Pool, now_ms: int) -> list[uuid.UUID]:
    """Open if-bids whose turn's deadline has passed, earliest first."""
    return [row["auction_id"] for row in await pool.fetch(_DUE, to_datetime(now_ms))]


async def expire_decision(
    conn: asyncpg.Connection, auction_id: uuid.UUID, now_ms: int, *, fence: Fence | None = None
) -> Step | None:
    """In the caller's transaction: an open if-bid past its deadline is expired and the
    auction unsold; None when it is not (answered in time, or expired already by
    another process). With `fence`, only while the partition is this node's."""
    auction = await conn.fetchrow(_LOCK_AUCTION, auction_id)
    if auction is None or auction["status"] != "seller_decision":
        return None
    if fence is not None:
        await fence.check(conn)
    if_bid = await conn.fetchrow(_LOCK_IF_BID, auction_id)
    if if_bid is None or if_bid["state"] != "open" or to_ms(if_bid["deadline"]) > now_ms:
        return None
    return await _close_unsold(conn, auction, if_bid, None, "expire", _state(if_bid), now_ms)
