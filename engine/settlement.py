"""After the hammer: end processing, settlement offers, payments and defaults.

`end_auction` runs in one transaction under the auction's row lock, and only
while the auction is `ended` (the close itself is durable by then): so two
processes, or a restart, can race for it and it still happens once. It
decides sold or unsold by RULES.md, moves the winner's deposit out of the
wallet (or records it as due), opens the winner's settlement offer with its
24 h deadline, moves the vehicle, and writes the notifications outbox rows
in the same transaction — a notification exists exactly when its fact does.

What follows the offer is here too, each step one transaction:
- `pay`: a payment from the provider's webhook, idempotent by its reference;
  the last one settles the auction (deposit applied, vehicle to the buyer).
- `take_due_deposits`: a wallet credit takes a deposit that was due.
- `default_offer`: a missed deadline — the held deposit is forfeited to the
  platform (audited), payments made are refunded to the wallet, and the next
  distinct real bidder gets an offer at their own highest bid, or the auction
  is unsold.
- `void_result`: an admin voids a result — the hold is released, payments
  refunded, the auction cancelled.

Row locks are always taken in one order — auction, then offer, then user — so
these writers and the wallet's credits cannot deadlock one another. Callers
hold `engine.users.user_lock` of every user whose balance a step changes and
give the core the committed balances after COMMIT (`user_locks` takes several
in one order).
"""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

import bidcore
from engine.bidders import BIDDING_ROLES, PLATFORM_USER_ID
from engine.clock import to_datetime, to_ms
from engine.embeddings import similar_vehicles
from engine.errors import Refused, Replan, invalid_transition, status_words, unknown_auction
from engine.money import format_naira, kobo_to_naira, naira_to_kobo
from engine.notifications import notify
from engine.recovery import deposit_bp, effective_reserve_kobo
from engine.references import provider_key, refuse_reuse
from engine.users import check_text, user_lock

PAYMENT_WINDOW_MS = 24 * 3_600_000
SIMILAR_SHOWN = 3
MAX_PAYMENT_KOBO = 10**15 - 1  # DECIMAL(15,2) naira
MAX_REFERENCE = 100  # transactions.paystack_ref is VARCHAR(100)
FORFEIT_REASON = "The payment deadline passed without full payment."
_IDEMPOTENCY_KEY = "transactions_idempotency_key_key"

_LOCK = """
SELECT a.id, a.status, a.auction_type, a.reserve_price, a.deposit_pct, a.last_seq,
       a.vehicle_id, a.winner_id, a.end_time
FROM auctions a WHERE a.id = $1 FOR UPDATE
"""
_AUCTION = """
SELECT a.id, a.status, a.auction_type, a.reserve_price, a.deposit_pct, a.last_seq,
       a.vehicle_id, a.winner_id, a.end_time
FROM auctions a WHERE a.id = $1
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

# ---- offers, payments, defaults ----------------------------------------------------

_OFFER_COLUMNS = """
SELECT id, auction_id, user_id, amount, deposit, deposit_status, deadline, outcome
FROM settlement_offers
"""
_LOCK_OPEN_OFFER = _OFFER_COLUMNS + "WHERE auction_id = $1 AND outcome = 'open' FOR UPDATE"
_OPEN_OFFER = _OFFER_COLUMNS + "WHERE auction_id = $1 AND outcome = 'open'"
_OFFER_OF = _OFFER_COLUMNS + "WHERE auction_id = $1 AND user_id = $2"
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
_OVERDUE = """
SELECT auction_id FROM settlement_offers
WHERE outcome = 'open' AND deadline <= $1 ORDER BY deadline, auction_id
"""
_PAID = """
SELECT COALESCE(SUM(amount), 0) FROM transactions
WHERE reference_id = $1 AND user_id = $2 AND type = 'auction_payment' AND status = 'completed'
"""
_STATUS = "SELECT status FROM auctions WHERE id = $1"
_BALANCE = "SELECT wallet_balance FROM users WHERE id = $1 FOR SHARE"
_SET_BALANCE = "UPDATE users SET wallet_balance = $2, updated_at = now() WHERE id = $1"
_CREDIT = """
UPDATE users SET wallet_balance = wallet_balance + $2, updated_at = now()
WHERE id = $1 RETURNING wallet_balance
"""
_PRIOR_PAYMENT = """
SELECT id, user_id, type, amount, reference_id, paystack_ref, created_at
FROM transactions WHERE idempotency_key = $1
"""
_PAYMENT = """
INSERT INTO transactions (user_id, type, amount, balance_after, reference_id, reference_type,
                          paystack_ref, status, description, idempotency_key)
VALUES ($1, 'auction_payment', $2, $3, $4, 'auction', $5, 'completed', $6, $7)
RETURNING id, user_id, type, amount, reference_id, paystack_ref, created_at
"""
_MOVEMENT = """
INSERT INTO transactions (user_id, type, amount, balance_after, reference_id, reference_type,
                          status, description, idempotency_key)
VALUES ($1, $2, $3, $4, $5, 'auction', 'completed', $6, $7)
RETURNING id
"""
_CLOSE_OFFER = """
UPDATE settlement_offers SET outcome = $2, deposit_status = $3, closed_at = now() WHERE id = $1
"""
_MARK_HELD = "UPDATE settlement_offers SET deposit_status = 'held' WHERE id = $1"
_SETTLED = "UPDATE auctions SET status = 'settled', updated_at = now() WHERE id = $1"
_TO_BUYER = """
UPDATE vehicles SET status = 'in_settlement', owner_id = $2, updated_at = now() WHERE id = $1
"""
# The next offer: the highest distinct real bidder without an offer on this auction
# yet, who may still bid, at their own highest bid — which must meet a binding reserve.
_SUCCESSOR = """
SELECT b.user_id, max(b.amount) AS amount
FROM bids b JOIN users u ON u.id = b.user_id
WHERE b.auction_id = $1 AND NOT b.is_platform_bid
  AND NOT EXISTS (SELECT 1 FROM settlement_offers o
                  WHERE o.auction_id = $1 AND o.user_id = b.user_id)
  AND u.is_active AND u.kyc_status = 'approved' AND u.role = ANY($2::text[])
GROUP BY b.user_id
HAVING $3::numeric IS NULL OR max(b.amount) >= $3::numeric
ORDER BY max(b.amount) DESC, min(b.seq)
LIMIT 1
"""
_REOFFERED = """
UPDATE auctions SET winner_id = $2, payment_deadline = $3, updated_at = now() WHERE id = $1
"""
_UNSOLD_AFTER_DEFAULTS = """
UPDATE auctions SET status = 'unsold', winner_id = NULL, payment_deadline = NULL,
       last_seq = $2, updated_at = now()
WHERE id = $1
"""
_VOIDED = """
UPDATE auctions SET status = 'cancelled', cancel_reason = $2, winner_id = NULL,
       payment_deadline = NULL, last_seq = $3, updated_at = now()
WHERE id = $1
"""
_AUDIT = """
INSERT INTO admin_audit_log (admin_id, action, target_type, target_id, old_value, new_value,
                             reason, ip_address)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8::inet)
RETURNING id
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


# ---- wire bodies -------------------------------------------------------------------


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


class SettlementEnvelope(msgspec.Struct, frozen=True):
    settlement: SettlementBody


class PaymentBody(msgspec.Struct, frozen=True):
    id: uuid.UUID
    amount_kobo: int
    reference: str
    created_at_ms: int


class PaymentReceipt(msgspec.Struct, frozen=True):
    settlement: SettlementBody
    payment: PaymentBody


# ---- end processing ---------------------------------------------------------------


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
        await _settle_if_covered(conn, row, offer, amount)
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


# ---- reading an offer ---------------------------------------------------------------


def amount_due(offer: asyncpg.Record) -> int:
    """RULES.md: the winning amount less the deposit held (all of it while the
    deposit is still due)."""
    amount = naira_to_kobo(offer["amount"])
    if offer["deposit_status"] in ("held", "applied"):
        return amount - naira_to_kobo(offer["deposit"])
    return amount


async def _paid(conn: asyncpg.Connection, auction_id: uuid.UUID, user_id: uuid.UUID) -> int:
    return naira_to_kobo(await conn.fetchval(_PAID, auction_id, user_id))


def _settlement(status: str, offer: asyncpg.Record, paid: int) -> SettlementBody:
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
        status = await conn.fetchval(_STATUS, auction_id)
        if status is None:
            raise unknown_auction()
        offer = await conn.fetchrow(_SHOWN_OFFER, auction_id)
        if offer is None:
            raise Refused(
                "not_found",
                "no_settlement",
                f"This auction has no settlement: it is {status_words(status)}, and was not sold.",
            )
        return _settlement(status, offer, await _paid(conn, auction_id, offer["user_id"]))


# ---- payments ---------------------------------------------------------------------


async def pay(
    pool: asyncpg.Pool,
    auction_id: uuid.UUID,
    payer_id: uuid.UUID,
    amount_kobo: int,
    reference: str,
    now_ms: int,
) -> tuple[PaymentReceipt, bool]:
    """A payment by `payer_id` towards the open offer, which must be theirs; True
    when new, False when the reference was seen (the answer then shows the
    settlement as it stands now)."""
    reference = _checked_payment(amount_kobo, reference)
    key = provider_key(reference)
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                auction = await conn.fetchrow(_LOCK, auction_id)
                if auction is None:
                    raise unknown_auction()
                record = await _prior_payment(conn, key, auction_id, payer_id, amount_kobo)
                new = record is None
                if record is None:
                    record = await _take_payment(
                        conn, auction, payer_id, amount_kobo, reference, key, now_ms
                    )
                return await _receipt(conn, auction_id, record), new
        except asyncpg.UniqueViolationError as err:
            # Another node wrote this reference first (for another auction: the
            # auction row lock serialises payments to one auction).
            if err.constraint_name != _IDEMPOTENCY_KEY:
                raise
            record = await _prior_payment(conn, key, auction_id, payer_id, amount_kobo)
            if record is None:
                raise
            return await _receipt(conn, auction_id, record), False


def _checked_payment(amount_kobo: int, reference: str) -> str:
    if not 0 < amount_kobo <= MAX_PAYMENT_KOBO:
        raise Refused(
            "invalid",
            "invalid_amount",
            "Enter a whole amount in kobo above zero and below ₦10 trillion.",
        )
    checked = check_text("reference", reference, MAX_REFERENCE)
    if not checked:
        raise Refused(
            "invalid", "invalid_reference", "Give the payment's reference (1 to 100 characters)."
        )
    return checked


async def _prior_payment(
    conn: asyncpg.Connection,
    key: str,
    auction_id: uuid.UUID,
    payer_id: uuid.UUID,
    amount_kobo: int,
) -> asyncpg.Record | None:
    """The payment already written under this reference, if it is this same one."""
    prior = await conn.fetchrow(_PRIOR_PAYMENT, key)
    if prior is None:
        return None
    refuse_reuse(prior["type"], "auction_payment")
    if (
        prior["reference_id"] != auction_id
        or prior["user_id"] != payer_id
        or naira_to_kobo(prior["amount"]) != amount_kobo
    ):
        raise Refused(
            "conflict",
            "reference_conflict",
            "This reference was already used for a different payer, amount or auction; "
            "check the payment's reference.",
        )
    return prior


async def _take_payment(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    payer_id: uuid.UUID,
    amount_kobo: int,
    reference: str,
    key: str,
    now_ms: int,
) -> asyncpg.Record:
    if auction["status"] != "pending_settlement":
        raise _not_awaiting_payment(auction["status"])
    offer = await conn.fetchrow(_LOCK_OPEN_OFFER, auction["id"])
    if offer is None:
        raise _not_awaiting_payment(auction["status"])
    if offer["user_id"] != payer_id:
        # After a default the offer moves to the next bidder: a late transfer from
        # the first buyer must not be booked as the new buyer's payment.
        raise Refused(
            "conflict",
            "not_the_buyer",
            "This payer does not hold this auction's open offer (an offer that lapsed "
            "has moved on); this payment cannot be taken. Refund it to the payer.",
        )
    if now_ms >= to_ms(offer["deadline"]):
        raise Refused(
            "conflict",
            "payment_deadline_passed",
            "The payment deadline for this auction has passed; this payment cannot be "
            "taken. Refund it to the payer.",
        )
    buyer = offer["user_id"]
    remaining = amount_due(offer) - await _paid(conn, auction["id"], buyer)
    if amount_kobo > remaining:
        raise Refused(
            "conflict",
            "overpayment",
            f"This payment of {format_naira(amount_kobo)} is more than the "
            f"{format_naira(remaining)} still due on this auction; send at most "
            f"{format_naira(remaining)}.",
        )
    balance = await conn.fetchval(_BALANCE, buyer)  # unchanged: the money comes from outside
    record: asyncpg.Record = await conn.fetchrow(
        _PAYMENT,
        buyer,
        kobo_to_naira(amount_kobo),
        balance,
        auction["id"],
        reference,
        "Payment towards a won auction",
        key,
    )
    if amount_kobo == remaining:
        await _complete(conn, auction, offer)
    return record


async def _complete(
    conn: asyncpg.Connection, auction: asyncpg.Record, offer: asyncpg.Record
) -> None:
    """Paid in full: the deposit counts towards the price, the auction is settled
    and the vehicle goes to the buyer."""
    await conn.execute(_CLOSE_OFFER, offer["id"], "paid", "applied")
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


async def _settle_if_covered(
    conn: asyncpg.Connection, auction: asyncpg.Record, offer: Offer, amount_kobo: int
) -> bool:
    """A held deposit of the whole price (`deposit_pct` 100 %) pays it: no payment
    will come, so the auction settles at once rather than default."""
    if not offer.held or offer.deposit_kobo < amount_kobo:
        return False
    await _complete(conn, auction, await conn.fetchrow(_OPEN_OFFER, auction["id"]))
    return True


async def _receipt(
    conn: asyncpg.Connection, auction_id: uuid.UUID, payment: asyncpg.Record
) -> PaymentReceipt:
    status = await conn.fetchval(_STATUS, auction_id)
    offer = await conn.fetchrow(_OFFER_OF, auction_id, payment["user_id"])
    paid = await _paid(conn, auction_id, payment["user_id"])
    return PaymentReceipt(
        settlement=_settlement(status, offer, paid),
        payment=PaymentBody(
            id=payment["id"],
            amount_kobo=naira_to_kobo(payment["amount"]),
            reference=payment["paystack_ref"],
            created_at_ms=to_ms(payment["created_at"]),
        ),
    )


# ---- a credit takes a due deposit ---------------------------------------------------


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
    for offer in offers:
        deposit = naira_to_kobo(offer["deposit"])
        auction_id = offer["auction_id"]
        still_to_pay = naira_to_kobo(offer["amount"]) - await _paid(conn, auction_id, user_id)
        if deposit > balance_kobo or deposit >= still_to_pay:
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


# ---- missed deadlines --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DefaultPlan:
    """Who a default touches, read before the locks are taken."""

    auction_id: uuid.UUID
    defaulter: uuid.UUID
    successor: uuid.UUID | None

    @property
    def users(self) -> set[uuid.UUID]:
        users = {self.defaulter, PLATFORM_USER_ID}
        if self.successor is not None:
            users.add(self.successor)
        return users


@dataclass(frozen=True, slots=True)
class Default:
    """One missed deadline and what followed it."""

    auction_id: uuid.UUID
    defaulter: uuid.UUID
    forfeited_kobo: int  # the held deposit, now platform revenue (0 if it was due)
    refunded_kobo: int  # payments made, back in the defaulter's wallet
    successor: uuid.UUID | None  # None: nobody left, the auction is unsold
    offer: Offer | None
    amount_kobo: int | None  # the successor's own highest bid
    deadline_ms: int | None
    status: str  # the auction's: pending_settlement, settled (a 100 % deposit) or unsold
    seq: int | None  # the room's `state` event when unsold
    end_time_ms: int
    balances: dict[uuid.UUID, int] = field(default_factory=dict)  # committed, for the core


async def overdue_auctions(pool: asyncpg.Pool, now_ms: int) -> list[uuid.UUID]:
    """Auctions whose open offer is past its deadline, earliest first."""
    return [row["auction_id"] for row in await pool.fetch(_OVERDUE, to_datetime(now_ms))]


async def plan_default(
    pool: asyncpg.Pool, auction_id: uuid.UUID, now_ms: int
) -> DefaultPlan | None:
    """Who `default_offer` would touch now; None if the offer is not overdue."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        auction = await conn.fetchrow(_AUCTION, auction_id)
        offer = await conn.fetchrow(_OPEN_OFFER, auction_id)
        if not _overdue(auction, offer, now_ms):
            return None
        successor = await _successor(conn, auction)
    return DefaultPlan(auction_id, offer["user_id"], successor[0] if successor else None)


def _overdue(auction: asyncpg.Record | None, offer: asyncpg.Record | None, now_ms: int) -> bool:
    return (
        auction is not None
        and auction["status"] == "pending_settlement"
        and offer is not None
        and to_ms(offer["deadline"]) <= now_ms
    )


async def default_offer(pool: asyncpg.Pool, plan: DefaultPlan, now_ms: int) -> Default | None:
    """The open offer missed its deadline: close it and offer the next bidder, in one
    transaction; None if it is not overdue (paid, or another process did it)."""
    async with pool.acquire() as conn, conn.transaction():
        auction = await conn.fetchrow(_LOCK, plan.auction_id)
        offer = await conn.fetchrow(_LOCK_OPEN_OFFER, plan.auction_id)
        if not _overdue(auction, offer, now_ms):
            return None
        successor = await _successor(conn, auction)
        next_user = successor[0] if successor is not None else None
        if offer["user_id"] != plan.defaulter or next_user != plan.successor:
            raise Replan(f"auction {plan.auction_id} changed since its default was planned")
        balances: dict[uuid.UUID, int] = {}
        forfeited, refunded = await _close_defaulted(conn, auction, offer, balances)
        end_ms = to_ms(auction["end_time"])
        if successor is None:
            seq = auction["last_seq"] + 1
            await conn.execute(_UNSOLD_AFTER_DEFAULTS, auction["id"], seq)
            await conn.execute(_VEHICLE, auction["vehicle_id"], "available")
            return Default(
                auction["id"],
                plan.defaulter,
                forfeited_kobo=forfeited,
                refunded_kobo=refunded,
                successor=None,
                offer=None,
                amount_kobo=None,
                deadline_ms=None,
                status="unsold",
                seq=seq,
                end_time_ms=end_ms,
                balances=balances,
            )
        user, amount = successor
        deadline = now_ms + PAYMENT_WINDOW_MS
        new = await open_offer(conn, auction["id"], user, amount, auction["deposit_pct"], deadline)
        await conn.execute(_REOFFERED, auction["id"], user, to_datetime(deadline))
        if new.balance_kobo is not None:
            balances[user] = new.balance_kobo
        await _tell_winner(
            conn, auction["id"], user, amount, new, deadline, kind="second_chance_offer"
        )
        settled = await _settle_if_covered(conn, auction, new, amount)
        return Default(
            auction["id"],
            plan.defaulter,
            forfeited_kobo=forfeited,
            refunded_kobo=refunded,
            successor=user,
            offer=new,
            amount_kobo=amount,
            deadline_ms=deadline,
            status="settled" if settled else "pending_settlement",
            seq=None,
            end_time_ms=end_ms,
            balances=balances,
        )


async def _successor(
    conn: asyncpg.Connection, auction: asyncpg.Record
) -> tuple[uuid.UUID, int] | None:
    reserve = effective_reserve_kobo(auction["auction_type"], auction["reserve_price"])
    row = await conn.fetchrow(
        _SUCCESSOR,
        auction["id"],
        sorted(BIDDING_ROLES),
        kobo_to_naira(reserve) if reserve is not None else None,
    )
    return (row["user_id"], naira_to_kobo(row["amount"])) if row is not None else None


async def _close_defaulted(
    conn: asyncpg.Connection,
    auction: asyncpg.Record,
    offer: asyncpg.Record,
    balances: dict[uuid.UUID, int],
) -> tuple[int, int]:
    """Close the offer as defaulted: a held deposit becomes platform revenue, a due
    one lapses, payments made go back to the wallet. (forfeited, refunded) kobo."""
    auction_id, user = auction["id"], offer["user_id"]
    held = offer["deposit_status"] == "held"
    deposit = naira_to_kobo(offer["deposit"])
    new_status = "forfeited" if held else offer["deposit_status"]
    await conn.execute(_CLOSE_OFFER, offer["id"], "defaulted", new_status)
    revenue = None
    if held:
        balance = await _move(
            conn,
            PLATFORM_USER_ID,
            "commission_earned",
            deposit,
            auction_id,
            f"Deposit forfeited by user {user} on auction {auction_id}: payment deadline missed",
            f"forfeit:{auction_id}:{user}",
        )
        balances[PLATFORM_USER_ID] = balance.balance_kobo
        revenue = balance.transaction_id
    refunded = await _refund_payments(conn, auction_id, user, balances, "the deadline passed")
    await write_audit(
        conn,
        PLATFORM_USER_ID,
        "deposit_forfeited" if held else "deposit_lapsed",
        auction_id,
        old={
            "offer_id": offer["id"],
            "user_id": user,
            "outcome": "open",
            "deposit_status": offer["deposit_status"],
            "deposit_kobo": deposit,
            "payment_deadline_ms": to_ms(offer["deadline"]),
        },
        new={
            "outcome": "defaulted",
            "deposit_status": new_status,
            "forfeited_kobo": deposit if held else 0,
            "refunded_kobo": refunded,
            "revenue_transaction_id": revenue,
        },
        reason=FORFEIT_REASON,
    )
    await notify(
        conn,
        user,
        "payment_defaulted",
        {
            "auction_id": str(auction_id),
            "deposit_kobo": deposit,
            "deposit_status": new_status,
            "refunded_kobo": refunded,
        },
        channels=("email", "in_app"),
        occasion=str(auction_id),
    )
    return (deposit if held else 0), refunded


@dataclass(frozen=True, slots=True)
class _Moved:
    balance_kobo: int
    transaction_id: uuid.UUID


async def _move(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    kind: str,
    amount_kobo: int,
    auction_id: uuid.UUID,
    description: str,
    key: str,
) -> _Moved:
    """Money into a wallet: the balance and its transactions row, together."""
    balance = await conn.fetchval(_CREDIT, user_id, kobo_to_naira(amount_kobo))
    transaction_id = await conn.fetchval(
        _MOVEMENT, user_id, kind, kobo_to_naira(amount_kobo), balance, auction_id, description, key
    )
    return _Moved(naira_to_kobo(balance), transaction_id)


async def _refund_payments(
    conn: asyncpg.Connection,
    auction_id: uuid.UUID,
    user_id: uuid.UUID,
    balances: dict[uuid.UUID, int],
    why: str,
) -> int:
    """Payments a closed offer received go back to the buyer's wallet (a `refund`)."""
    paid = await _paid(conn, auction_id, user_id)
    if paid:
        moved = await _move(
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


# ---- voiding a result ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Voided:
    auction_id: uuid.UUID
    buyer: uuid.UUID
    released_kobo: int  # the held deposit, back in the wallet
    refunded_kobo: int  # payments made, back in the wallet
    seq: int  # the room's `state` event
    end_time_ms: int
    old: dict[str, Any]
    new: dict[str, Any]
    balances: dict[uuid.UUID, int] = field(default_factory=dict)


async def open_buyer(pool: asyncpg.Pool, auction_id: uuid.UUID) -> uuid.UUID | None:
    """Who holds the auction's open offer (read without locks, to plan user locks)."""
    offer = await pool.fetchrow(_OPEN_OFFER, auction_id)
    return offer["user_id"] if offer is not None else None


async def void_result(
    conn: asyncpg.Connection, auction: asyncpg.Record, buyer: uuid.UUID, reason: str
) -> Voided:
    """Void a `pending_settlement` result (the auction row locked by the caller): the
    offer is voided, the hold released (`bid_deposit_release`), payments refunded,
    the auction cancelled and the vehicle available again."""
    if auction["status"] != "pending_settlement":
        raise invalid_transition(auction["status"], "void", "only a result awaiting settlement")
    offer = await conn.fetchrow(_LOCK_OPEN_OFFER, auction["id"])
    if offer is None or offer["user_id"] != buyer:
        raise Replan(f"auction {auction['id']}'s offer changed since the void was planned")
    auction_id = auction["id"]
    held = offer["deposit_status"] == "held"
    deposit = naira_to_kobo(offer["deposit"])
    new_status = "released" if held else offer["deposit_status"]
    await conn.execute(_CLOSE_OFFER, offer["id"], "voided", new_status)
    balances: dict[uuid.UUID, int] = {}
    if held:
        moved = await _move(
            conn,
            buyer,
            "bid_deposit_release",
            deposit,
            auction_id,
            f"Deposit released: the result of auction {auction_id} was voided",
            f"release:{auction_id}:{buyer}",
        )
        balances[buyer] = moved.balance_kobo
    refunded = await _refund_payments(conn, auction_id, buyer, balances, "the result was voided")
    seq = auction["last_seq"] + 1
    await conn.execute(_VOIDED, auction_id, reason, seq)
    await conn.execute(_VEHICLE, auction["vehicle_id"], "available")
    await notify(
        conn,
        buyer,
        "auction_voided",
        {
            "auction_id": str(auction_id),
            "released_kobo": deposit if held else 0,
            "refunded_kobo": refunded,
            "reason": reason,
        },
        channels=("email", "in_app"),
        occasion=str(auction_id),
    )
    old = {
        "status": "pending_settlement",
        "winner_id": buyer,
        "offer_id": offer["id"],
        "outcome": "open",
        "deposit_status": offer["deposit_status"],
        "deposit_kobo": deposit,
    }
    new = {
        "status": "cancelled",
        "winner_id": None,
        "outcome": "voided",
        "deposit_status": new_status,
        "released_kobo": deposit if held else 0,
        "refunded_kobo": refunded,
        "vehicle_status": "available",
    }
    end_ms = to_ms(auction["end_time"])
    return Voided(
        auction_id, buyer, deposit if held else 0, refunded, seq, end_ms, old, new, balances
    )


# ---- shared ---------------------------------------------------------------------------


async def lock_auction(conn: asyncpg.Connection, auction_id: uuid.UUID) -> asyncpg.Record:
    """The auction's row, locked (the first lock of every settlement writer)."""
    row = await conn.fetchrow(_LOCK, auction_id)
    if row is None:
        raise unknown_auction()
    return row


async def write_audit(
    conn: asyncpg.Connection,
    admin_id: uuid.UUID,
    action: str,
    target_id: uuid.UUID,
    *,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    reason: str | None,
    ip: str | None = None,
    target_type: str = "auction",
) -> uuid.UUID:
    """One `admin_audit_log` row, in the caller's transaction (the change's own)."""
    audit_id: uuid.UUID = await conn.fetchval(
        _AUDIT,
        admin_id,
        action,
        target_type,
        target_id,
        _json(old),
        _json(new),
        reason,
        _ip(ip),
    )
    return audit_id


def _json(value: dict[str, Any] | None) -> str | None:
    return msgspec.json.encode(value).decode() if value is not None else None


def _ip(value: str | None) -> str | None:
    """The caller's address if it is one (a unix socket's peer is not)."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


@contextlib.asynccontextmanager
async def user_locks(users: Iterable[uuid.UUID]) -> AsyncIterator[None]:
    """Several users' `user_lock`s, always taken in one order, so two holders of
    overlapping sets cannot deadlock."""
    async with contextlib.AsyncExitStack() as stack:
        for user in sorted(set(users)):
            await stack.enter_async_context(user_lock(user))
        yield


def _not_awaiting_payment(status: str) -> Refused:
    return Refused(
        "conflict",
        "not_awaiting_payment",
        f"This auction is {status_words(status)}; it is not awaiting a settlement payment.",
    )
