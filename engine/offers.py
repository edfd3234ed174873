"""Settlement offers: a won auction offered to its buyer, the deposit held from
the wallet or recorded as due, what is still to pay, and the money a closed
offer moves back (a refund, a release).

Row locks are always taken in one order — auction, then offer, then user — so
every settlement writer (end processing, payments, defaults, voids) and the
wallet's credits cannot deadlock one another. Callers hold
`engine.locks.user_lock` of every user whose balance a step changes and give
the core the committed balances after COMMIT.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

import bidcore
from engine.allowances import allotted, spend
from engine.clock import to_datetime, to_ms
from engine.commission import take_commission
from engine.errors import Refused, status_words, unknown_auction
from engine.money import deposit_bp, kobo_to_naira, naira_to_kobo
from engine.notifications import notify

PAYMENT_WINDOW_MS = 24 * 3_600_000
LOCK_AUCTION = """
SELECT a.id, a.status, a.auction_type, a.reserve_price, a.deposit_pct, a.last_seq,
       a.vehicle_id, a.winner_id, a.end_time, a.created_by, a.if_bid_window_ms,
       a.counter_window_ms
FROM auctions a WHERE a.id = $1 FOR UPDATE
"""
AUCTION = """
SELECT a.id, a.status, a.auction_type, a.reserve_price, a.deposit_pct, a.last_seq,
       a.vehicle_id, a.winner_id, a.end_time, a.created_by, a.if_bid_window_ms,
       a.counter_window_ms
FROM auctions a WHERE a.id = $1
"""
_SOLD = """
UPDATE auctions SET status = 'pending_settlement', winner_id = $2, payment_deadline = $3,
       last_seq = $4, updated_at = now()
WHERE id = $1
"""
SET_VEHICLE_STATUS = "UPDATE vehicles SET status = $2, updated_at = now() WHERE id = $1"
# Only from the free balance: what allowances back (several nodes: bids being
# decided against it, engine/allowances.py) stays; a node alone has none.
_TAKE_DEPOSIT = """
UPDATE users SET wallet_balance = wallet_balance - $2, updated_at = now()
WHERE id = $1 AND wallet_balance - $2
      >= (SELECT COALESCE(SUM(amount_kobo), 0) FROM allowances WHERE user_id = $1) / 100.0
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
_OFFER_COLUMNS = """
SELECT id, auction_id, user_id, amount, deposit, deposit_status, deadline, outcome
FROM settlement_offers
"""
LOCK_OPEN_OFFER = _OFFER_COLUMNS + "WHERE auction_id = $1 AND outcome = 'open' FOR UPDATE"
OPEN_OFFER = _OFFER_COLUMNS + "WHERE auction_id = $1 AND outcome = 'open'"
OFFER_OF = _OFFER_COLUMNS + "WHERE auction_id = $1 AND user_id = $2"
# The offer a reader is shown: the open one, else the paid one, else the last closed.
_SHOWN_OFFER = (
    _OFFER_COLUMNS
    + """WHERE auction_id = $1
ORDER BY outcome = 'open' DESC, outcome = 'paid' DESC, closed_at DESC NULLS LAST LIMIT 1"""
)
# Deposits a credit may take: due, on offers still open and before their deadline.
_LOCK_DUE_OFFERS = (
    _OFFER_COLUMNS
    + """WHERE user_id = $1 AND outcome = 'open' AND deposit_status = 'due'
  AND deadline > COALESCE($2::timestamptz, now())
ORDER BY deadline, id FOR UPDATE"""
)
_PAID = """
SELECT COALESCE(SUM(amount), 0) FROM transactions
WHERE reference_id = $1 AND user_id = $2 AND type = 'auction_payment' AND status = 'completed'
"""
AUCTION_STATUS = "SELECT status FROM auctions WHERE id = $1"
_SET_BALANCE = "UPDATE users SET wallet_balance = $2, updated_at = now() WHERE id = $1"
_CREDIT = """
UPDATE users SET wallet_balance = wallet_balance + $2, updated_at = now()
WHERE id = $1 RETURNING wallet_balance
"""
_MOVEMENT = """
INSERT INTO transactions (user_id, type, amount, balance_after, reference_id, reference_type,
                          status, description, idempotency_key)
VALUES ($1, $2, $3, $4, $5, 'auction', 'completed', $6, $7)
RETURNING id
"""
CLOSE_OFFER = """
UPDATE settlement_offers SET outcome = $2, deposit_status = $3, closed_at = now() WHERE id = $1
"""
_MARK_HELD = "UPDATE settlement_offers SET deposit_status = 'held' WHERE id = $1"
_SETTLED = "UPDATE auctions SET status = 'settled', updated_at = now() WHERE id = $1"
_TO_BUYER = """
UPDATE vehicles SET status = 'in_settlement', owner_id = $2, updated_at = now() WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class Offer:
    deposit_kobo: int
    held: bool
    balance_kobo: int | None


class SettlementBody(msgspec.Struct, frozen=True):
    """Where one offer's settlement stands (`status` is the auction's)."""

    auction_id: uuid.UUID
    status: str
    buyer_id: uuid.UUID
    offer_outcome: str  # open, paid, defaulted, voided
    amount_kobo: int  # the bid being honoured
    deposit_kobo: int
    deposit_status: str  # held, due, applied, released, forfeited
    paid_kobo: int  # payments received so far
    due_kobo: int  # what is still to pay (0 once the offer is closed)
    payment_deadline_ms: int


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


@dataclass(frozen=True, slots=True)
class Sale:
    """A sale opened at end processing or by an accepted if-bid."""

    offer: Offer
    deadline_ms: int  # the payment deadline
    settled: bool  # a deposit of the whole price settled it at once


async def sell(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    buyer: uuid.UUID,
    amount_kobo: int,
    now_ms: int,
    seq: int,
    *,
    partition: int | None = None,
) -> Sale:
    """RULES.md's win at `amount_kobo` (the auction row locked by the caller): the
    deposit held or due, `pending_settlement` with its payment deadline, the vehicle
    reserved, the buyer told. `partition` (several nodes): the allowance that backed
    the buyer's exposure falls with the deposit it backed."""
    deadline_ms = now_ms + PAYMENT_WINDOW_MS
    if partition is not None:
        held = bidcore.deposit(amount_kobo, deposit_bp(auction["deposit_pct"]))
        await spend(conn, buyer, partition, held)
    offer = await open_offer(
        conn, auction["id"], buyer, amount_kobo, auction["deposit_pct"], deadline_ms
    )
    await conn.execute(_SOLD, auction["id"], buyer, to_datetime(deadline_ms), seq)
    await conn.execute(SET_VEHICLE_STATUS, auction["vehicle_id"], "pending_settlement")
    await tell_buyer(conn, auction["id"], buyer, amount_kobo, offer, deadline_ms)
    settled = await settle_if_covered(conn, auction, offer, amount_kobo)
    return Sale(offer, deadline_ms, settled)


async def tell_buyer(
    conn: asyncpg.Connection,
    auction_id: uuid.UUID,
    winner: uuid.UUID,
    amount_kobo: int,
    offer: Offer,
    deadline_ms: int,
    *,
    kind: str = "auction_won",
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
        kind,
        payload,
        channels=("email", "sms", "in_app"),
        occasion=f"{auction_id}:{deadline_ms}",
    )


def amount_due(offer: asyncpg.Record) -> int:
    """RULES.md: the winning amount less the deposit held (all of it while the
    deposit is still due)."""
    amount = naira_to_kobo(offer["amount"])
    if offer["deposit_status"] in ("held", "applied"):
        return amount - naira_to_kobo(offer["deposit"])
    return amount


async def paid_so_far(conn: asyncpg.Connection, auction_id: uuid.UUID, user_id: uuid.UUID) -> int:
    return naira_to_kobo(await conn.fetchval(_PAID, auction_id, user_id))


def settlement_of(status: str, offer: asyncpg.Record, paid: int) -> SettlementBody:
    is_open = offer["outcome"] == "open"
    return SettlementBody(
        auction_id=offer["auction_id"],
        status=status,
        buyer_id=offer["user_id"],
        offer_outcome=offer["outcome"],
        amount_kobo=naira_to_kobo(offer["amount"]),
        deposit_kobo=naira_to_kobo(offer["deposit"]),
        deposit_status=offer["deposit_status"],
        paid_kobo=paid,
        due_kobo=amount_due(offer) - paid if is_open else 0,
        payment_deadline_ms=to_ms(offer["deadline"]),
    )


async def read_settlement(pool: asyncpg.Pool, auction_id: uuid.UUID) -> SettlementBody:
    """The auction's settlement as it stands: its open offer, else how it ended."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        status = await conn.fetchval(AUCTION_STATUS, auction_id)
        if status is None:
            raise unknown_auction()
        offer = await conn.fetchrow(_SHOWN_OFFER, auction_id)
        if offer is None:
            raise Refused(
                "not_found",
                "no_settlement",
                f"This auction has no settlement: it is {status_words(status)}, and was not sold.",
            )
        return settlement_of(status, offer, await paid_so_far(conn, auction_id, offer["user_id"]))


async def complete(
    conn: asyncpg.Connection, auction: asyncpg.Record, offer: asyncpg.Record
) -> None:
    """Paid in full: the deposit counts towards the price, the auction is settled,
    the vehicle goes to the buyer and the platform takes its commission
    (engine/commission.py: the caller refreshes the platform's balance in the core)."""
    await conn.execute(CLOSE_OFFER, offer["id"], "paid", "applied")
    await take_commission(conn, auction["id"], offer["id"], naira_to_kobo(offer["amount"]))
    await conn.execute(_SETTLED, auction["id"])
    await conn.execute(_TO_BUYER, auction["vehicle_id"], offer["user_id"])
    await notify(
        conn,
        offer["user_id"],
        "auction_settled",
        {"auction_id": str(auction["id"]), "amount_kobo": naira_to_kobo(offer["amount"])},
        channels=("email", "in_app"),
        occasion=str(auction["id"]),
    )


async def settle_if_covered(
    conn: asyncpg.Connection, auction: asyncpg.Record, offer: Offer, amount_kobo: int
) -> bool:
    """A held deposit of the whole price (`deposit_pct` 100 %) pays it: no payment
    will come, so the auction settles at once rather than default."""
    if not offer.held or offer.deposit_kobo < amount_kobo:
        return False
    await complete(conn, auction, await conn.fetchrow(OPEN_OFFER, auction["id"]))
    return True


async def lock_due_deposits(
    conn: asyncpg.Connection, user_id: uuid.UUID, now_ms: int | None = None
) -> list[asyncpg.Record]:
    """The user's open offers whose deposit is due, locked. Call before locking the
    user's row (offers before users: the order every writer keeps)."""
    moment = to_datetime(now_ms) if now_ms is not None else None
    return list(await conn.fetch(_LOCK_DUE_OFFERS, user_id, moment))


async def take_due_deposits(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    balance_kobo: int,
    offers: Iterable[asyncpg.Record],
) -> int:
    """Hold each due deposit the balance now covers (earliest deadline first); the
    balance after. A deposit no smaller than what is still to pay is left due: the
    buyer pays the rest directly, so a credit never settles an auction by itself."""
    backing = await allotted(conn, user_id)  # what allowances back stays (several nodes)
    for offer in offers:
        deposit = naira_to_kobo(offer["deposit"])
        auction_id = offer["auction_id"]
        still_to_pay = naira_to_kobo(offer["amount"]) - await paid_so_far(conn, auction_id, user_id)
        if deposit > balance_kobo - backing or deposit >= still_to_pay:
            continue
        balance_kobo -= deposit
        await conn.execute(_SET_BALANCE, user_id, kobo_to_naira(balance_kobo))
        await conn.execute(
            _HOLD_TRANSACTION,
            user_id,
            kobo_to_naira(deposit),
            kobo_to_naira(balance_kobo),
            auction_id,
            "Deposit held for a won auction (it was due; taken from a wallet credit)",
            f"hold:{auction_id}:{user_id}",
        )
        await conn.execute(_MARK_HELD, offer["id"])
    return balance_kobo


@dataclass(frozen=True, slots=True)
class Moved:
    balance_kobo: int
    transaction_id: uuid.UUID


async def move_money(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    kind: str,
    amount_kobo: int,
    auction_id: uuid.UUID,
    description: str,
    key: str,
) -> Moved:
    """Money into a wallet: the balance and its transactions row, together."""
    balance = await conn.fetchval(_CREDIT, user_id, kobo_to_naira(amount_kobo))
    transaction_id = await conn.fetchval(
        _MOVEMENT, user_id, kind, kobo_to_naira(amount_kobo), balance, auction_id, description, key
    )
    return Moved(naira_to_kobo(balance), transaction_id)


async def refund_payments(
    conn: asyncpg.Connection,
    auction_id: uuid.UUID,
    user_id: uuid.UUID,
    balances: dict[uuid.UUID, int],
    why: str,
) -> int:
    """Payments a closed offer received go back to the buyer's wallet (a `refund`)."""
    paid = await paid_so_far(conn, auction_id, user_id)
    if paid:
        moved = await move_money(
            conn,
            user_id,
            "refund",
            paid,
            auction_id,
            f"Payments towards auction {auction_id} refunded: {why}",
            f"refund:{auction_id}:{user_id}",
        )
        balances[user_id] = moved.balance_kobo
    return paid


async def lock_auction(conn: asyncpg.Connection, auction_id: uuid.UUID) -> asyncpg.Record:
    """The auction's row, locked (the first lock of every settlement writer)."""
    row = await conn.fetchrow(LOCK_AUCTION, auction_id)
    if row is None:
        raise unknown_auction()
    return row


def not_awaiting_payment(status: str) -> Refused:
    return Refused(
        "conflict",
        "not_awaiting_payment",
        f"This auction is {status_words(status)}; it is not awaiting a settlement payment.",
    )
