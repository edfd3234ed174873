"""The platform's commission on a sale (the seed's `commission_rates`, "Admin
Operations → Revenue Management").

Which rate. The seed's table has one row per `service_type` with a `base_rate`,
optional `min_rate` and `max_rate`, and free-form `rules` (JSONB); it keeps no
history ("a rate update affects all future transactions immediately"). A sale
of an auction is service_type `auction_sale`. `rules` is read as a list of
overrides, each `{"rate": "0.0300"}` with any of `seller_role` (the auction's
creator's role: dealer, manager, admin), `body_type` (the vehicle's, compared
without case), `from_ms` and `until_ms` (the auction's end in [from, until)).
The most specific rule that matches wins (role and body type over either, over
none; the first listed among equals), else `base_rate`; the result is kept
within `min_rate`..`max_rate` where set. A rules value that does not read so is
logged and the base rate used: a mistyped rule must not stop end processing.

When. The rate is fixed on the auction at its end (end processing: sold, or to
the seller's decision), so the rate is the one effective when the auction
ended — the moment the price was set — whatever the table says when the money
arrives; a change of the table applies to auctions that end after it. No row:
0 %. An auction that ended before the rate was kept is rated at settlement,
for its end time.

How much. `commission = floor(price × rate)` in whole kobo: the rate has four
decimals, so `price_kobo × (rate × 10 000) // 10 000` exactly, in integers; the
seller is never charged a fraction of a kobo above the rate. It is taken when
the sale is settled (the offer paid): a `commission_earned` transaction credits
the platform's account (the system user, as forfeited deposits do) with its
`balance_after`, idempotent by the key `commission:{auction}`, and the amount
is kept on the offer for the revenue report. A zero commission writes no
transaction.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal

import asyncpg
import msgspec

from engine.clock import to_ms
from engine.money import kobo_to_naira, naira_to_kobo
from engine.roles import PLATFORM_USER_ID

logger = logging.getLogger(__name__)

SERVICE_TYPE = "auction_sale"
_POINTS = 10_000  # a DECIMAL(5,4) rate in whole ten-thousandths

_RATES = """
SELECT base_rate, min_rate, max_rate, rules FROM commission_rates WHERE service_type = $1
"""
_SUBJECT = """
SELECT u.role, v.body_type, a.end_time
FROM auctions a JOIN users u ON u.id = a.created_by JOIN vehicles v ON v.id = a.vehicle_id
WHERE a.id = $1
"""
_FIX = "UPDATE auctions SET commission_rate = $2 WHERE id = $1"
_FIXED = "SELECT commission_rate FROM auctions WHERE id = $1"
_ON_OFFER = "UPDATE settlement_offers SET commission = $2 WHERE id = $1"
_CREDIT = """
UPDATE users SET wallet_balance = wallet_balance + $2, updated_at = now()
WHERE id = $1 RETURNING wallet_balance
"""
_EARNED = """
INSERT INTO transactions (user_id, type, amount, balance_after, reference_id, reference_type,
                          status, description, idempotency_key)
VALUES ($1, 'commission_earned', $2, $3, $4, 'auction', 'completed', $5, $6)
"""


class Rule(msgspec.Struct, forbid_unknown_fields=True):
    """One override in `commission_rates.rules`."""

    rate: Decimal
    seller_role: str | None = None
    body_type: str | None = None
    from_ms: int | None = None
    until_ms: int | None = None

    def matches(self, seller_role: str, body_type: str | None, at_ms: int) -> bool:
        if self.seller_role is not None and self.seller_role != seller_role:
            return False
        if self.body_type is not None and (
            body_type is None or self.body_type.casefold() != body_type.casefold()
        ):
            return False
        if self.from_ms is not None and at_ms < self.from_ms:
            return False
        return self.until_ms is None or at_ms < self.until_ms

    @property
    def specificity(self) -> int:
        return (self.seller_role is not None) + (self.body_type is not None)


_rules = msgspec.json.Decoder(list[Rule], strict=False)


def choose_rate(
    row: asyncpg.Record | None, seller_role: str, body_type: str | None, at_ms: int
) -> Decimal:
    """The rate for a sale by a seller of `seller_role`, of a vehicle of
    `body_type`, for an auction that ended at `at_ms` (module doc)."""
    if row is None:
        return Decimal(0)
    rate: Decimal = row["base_rate"]
    best: Rule | None = None
    for rule in _read_rules(row["rules"]):
        if rule.matches(seller_role, body_type, at_ms) and (
            best is None or rule.specificity > best.specificity
        ):
            best = rule
    if best is not None:
        rate = best.rate
    if row["min_rate"] is not None:
        rate = max(rate, row["min_rate"])
    if row["max_rate"] is not None:
        rate = min(rate, row["max_rate"])
    return min(max(rate, Decimal(0)), Decimal(1)).quantize(Decimal("0.0001"))


def _read_rules(raw: str | bytes | None) -> list[Rule]:
    if raw is None:
        return []
    try:
        return _rules.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as err:
        logger.error(
            "commission_rates.rules for %s cannot be read (%s): base rate used", SERVICE_TYPE, err
        )
        return []


async def rate_of(conn: asyncpg.Connection, auction_id: uuid.UUID) -> Decimal:
    """The rate effective for the auction at its end, from the table as it is now."""
    subject = await conn.fetchrow(_SUBJECT, auction_id)
    row = await conn.fetchrow(_RATES, SERVICE_TYPE)
    end: datetime = subject["end_time"]
    return choose_rate(row, subject["role"], subject["body_type"], to_ms(end))


async def fix_rate(conn: asyncpg.Connection, auction_id: uuid.UUID) -> Decimal:
    """At the end (end processing's transaction): the rate kept on the auction."""
    rate = await rate_of(conn, auction_id)
    await conn.execute(_FIX, auction_id, rate)
    return rate


def commission_kobo(price_kobo: int, rate: Decimal) -> int:
    """floor(price × rate) in whole kobo, in integers (module doc)."""
    points = rate * _POINTS
    if points != points.to_integral_value() or not 0 <= points <= _POINTS:
        raise ValueError(f"a commission rate has four decimals, from 0 to 1: {rate}")
    return price_kobo * int(points) // _POINTS


async def take_commission(
    conn: asyncpg.Connection, auction_id: uuid.UUID, offer_id: uuid.UUID, price_kobo: int
) -> int | None:
    """The sale is settled (the offer paid), in its transaction: the commission kept
    on the offer and credited to the platform. The platform's balance after, or
    None when the commission is zero (no transaction)."""
    rate = await conn.fetchval(_FIXED, auction_id)
    if rate is None:  # ended before rates were kept on auctions
        rate = await rate_of(conn, auction_id)
    amount = commission_kobo(price_kobo, rate)
    await conn.execute(_ON_OFFER, offer_id, kobo_to_naira(amount))
    if amount == 0:
        return None
    balance = await conn.fetchval(_CREDIT, PLATFORM_USER_ID, kobo_to_naira(amount))
    await conn.execute(
        _EARNED,
        PLATFORM_USER_ID,
        kobo_to_naira(amount),
        balance,
        auction_id,
        f"Commission of {rate * 100:.2f} % on the sale of auction {auction_id}",
        f"commission:{auction_id}",
    )
    return naira_to_kobo(balance)
