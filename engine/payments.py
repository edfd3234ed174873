"""Settlement payments from the payment provider's webhook: idempotent by the
provider's reference, taken only from the open offer's buyer, the last one
settling the auction (the deposit applied, the vehicle to the buyer)."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from engine.clock import to_ms
from engine.errors import Refused, unknown_auction
from engine.leases import Fence
from engine.money import checked_amount, format_naira, kobo_to_naira, naira_to_kobo
from engine.offers import (
    AUCTION_STATUS,
    LOCK_AUCTION,
    LOCK_OPEN_OFFER,
    OFFER_OF,
    SettlementBody,
    amount_due,
    complete,
    not_awaiting_payment,
    paid_so_far,
    settlement_of,
)
from engine.references import checked_reference, provider_key, refuse_reuse

_IDEMPOTENCY_KEY = "transactions_idempotency_key_key"
_BALANCE = "SELECT wallet_balance FROM users WHERE id = $1 FOR SHARE"
_OFFER_MOVED = (
    "SELECT EXISTS (SELECT 1 FROM settlement_offers WHERE auction_id = $1 AND outcome <> 'open')"
)
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


class PaymentBody(msgspec.Struct, frozen=True):
    id: uuid.UUID
    amount_kobo: int
    reference: str
    created_at_ms: int


class PaymentReceipt(msgspec.Struct, frozen=True):
    settlement: SettlementBody
    payment: PaymentBody


async def pay(
    pool: asyncpg.Pool,
    auction_id: uuid.UUID,
    payer_id: uuid.UUID | None,
    amount_kobo: int,
    reference: str,
    now_ms: int,
    *,
    fence: Fence | None = None,
) -> tuple[PaymentReceipt, bool]:
    """A payment by `payer_id` towards the open offer, which must be theirs; True
    when new, False when the reference was seen (the answer then shows the
    settlement as it stands now). Without a payer it is the open offer's buyer's,
    as long as the offer never moved: after a default only a named payer's
    money can be told from the first buyer's late transfer."""
    reference = _checked_payment(amount_kobo, reference)
    key = provider_key(reference)
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                auction = await conn.fetchrow(LOCK_AUCTION, auction_id)
                if auction is None:
                    raise unknown_auction()
                if fence is not None:  # several nodes: only while its partition is ours
                    await fence.check(conn)
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
    checked_amount(amount_kobo)
    return checked_reference(reference)


async def _prior_payment(
    conn: asyncpg.Connection,
    key: str,
    auction_id: uuid.UUID,
    payer_id: uuid.UUID | None,
    amount_kobo: int,
) -> asyncpg.Record | None:
    """The payment already written under this reference, if it is this same one."""
    prior = await conn.fetchrow(_PRIOR_PAYMENT, key)
    if prior is None:
        return None
    refuse_reuse(prior["type"], "auction_payment")
    if (
        prior["reference_id"] != auction_id
        or (payer_id is not None and prior["user_id"] != payer_id)
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
    payer_id: uuid.UUID | None,
    amount_kobo: int,
    reference: str,
    key: str,
    now_ms: int,
) -> asyncpg.Record:
    if auction["status"] != "pending_settlement":
        raise not_awaiting_payment(auction["status"])
    offer = await conn.fetchrow(LOCK_OPEN_OFFER, auction["id"])
    if offer is None:
        raise not_awaiting_payment(auction["status"])
    if payer_id is None and await conn.fetchval(_OFFER_MOVED, auction["id"]):
        raise Refused(
            "conflict",
            "payer_required",
            "This auction's offer has moved to another bidder after a default: name the "
            "payer (payer_id), so that a late transfer from an earlier buyer is not "
            "booked as this buyer's payment.",
        )
    if payer_id is not None and offer["user_id"] != payer_id:
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
    remaining = amount_due(offer) - await paid_so_far(conn, auction["id"], buyer)
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
        await complete(conn, auction, offer)
    return record


async def _receipt(
    conn: asyncpg.Connection, auction_id: uuid.UUID, payment: asyncpg.Record
) -> PaymentReceipt:
    status = await conn.fetchval(AUCTION_STATUS, auction_id)
    offer = await conn.fetchrow(OFFER_OF, auction_id, payment["user_id"])
    paid = await paid_so_far(conn, auction_id, payment["user_id"])
    return PaymentReceipt(
        settlement=settlement_of(status, offer, paid),
        payment=PaymentBody(
            id=payment["id"],
            amount_kobo=naira_to_kobo(payment["amount"]),
            reference=payment["paystack_ref"],
            created_at_ms=to_ms(payment["created_at"]),
        ),
    )
