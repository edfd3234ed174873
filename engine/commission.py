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
An admin sets the row through the API (engine/commission_rates.py), which
stores only rules that read so and each set some auction's rate.

When. The rate is fixed on the auction at its end (end processing: sold, or to
the seller's decision), so the rate is the one effective when the auction
ended — the moment the price was set — whatever the table says when the money
arrives; a change of the table applies to auctions that end after it. No row:
0 %. An auction that ended before the rate was kept is rated at settlement,
for its end time.

A change made through the API has a moment, the row's `updated_at`, and
applies to auctions ending after it. End processing may come after that moment
for an auction that ended before it (the next tick, or the sweep after a
failure or a restart): it then reads the row as it stood, the old value of the
first such change's audit row (the log is append-only, so it serves as the
history). A change takes the rates' advisory lock alone and every reading
shares it, so a change's moment falls after every end processing that read the
row before it. A change made in SQL has no such record and applies at once.

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
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
import msgspec

from engine.clock import to_ms
from engine.money import kobo_to_naira, naira_to_kobo
from engine.roles import PLATFORM_USER_ID

logger = logging.getLogger(__name__)

SERVICE_TYPE = "auction_sale"
#: The service types the engine reads a rate for: the only ones the API may set.
SERVICE_TYPES = (SERVICE_TYPE,)
_POINTS = 10_000  # a DECIMAL(5,4) rate in whole ten-thousandths

#: A change of a rates row in the admin audit log (engine/commission_rates.py).
RATE_CHANGE = "set_commission_rate"
RATE_TARGET = "commission_rate"
#: The rates' advisory lock ("D360" "comm"): a change takes it alone, a reading shares it.
RATES_LOCK_KEY = 0x4433_3630_636F_6D6D

_SHARE_RATES = "SELECT pg_advisory_xact_lock_shared($1)"
_RATES = """
SELECT id, base_rate, min_rate, max_rate, rules, updated_at
FROM commission_rates WHERE service_type = $1
"""
# The first change through the API at or after the auction's end: its old value is
# the row as it stood then (`updated_at_ms` is the change's moment, as the row has it).
_BEFORE_CHANGE = """
SELECT old_value FROM admin_audit_log
WHERE target_type = $1 AND target_id = $2 AND action = $3
  AND (new_value ->> 'updated_at_ms')::bigint >= $4
ORDER BY (new_value ->> 'updated_at_ms')::bigint
LIMIT 1
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


class Rule(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
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


class _Version(msgspec.Struct):
    """A rates row as an audit row keeps it (what the API answers with)."""

    base_rate: Decimal
    min_rate: Decimal | None
    max_rate: Decimal | None
    rules: msgspec.Raw


_rules = msgspec.json.Decoder(list[Rule], strict=False)
_version = msgspec.json.Decoder(_Version)

#: A rates row: `base_rate`, `min_rate`, `max_rate` and `rules` (JSON text).
RatesRow: TypeAlias = Mapping[str, Any] | asyncpg.Record


def chosen_index(
    rules: Sequence[Rule], seller_role: str, body_type: str | None, at_ms: int
) -> int | None:
    """Which rule sets the rate (module doc): the most specific that matches, the
    first listed among equals; None when none matches."""
    best: int | None = None
    for index, rule in enumerate(rules):
        if rule.matches(seller_role, body_type, at_ms) and (
            best is None or rule.specificity > rules[best].specificity
        ):
            best = index
    return best


def choose_rate(
    row: RatesRow | None, seller_role: str, body_type: str | None, at_ms: int
) -> Decimal:
    """The rate for a sale by a seller of `seller_role`, of a vehicle of
    `body_type`, for an auction that ended at `at_ms` (module doc)."""
    if row is None:
        return Decimal(0)
    rate: Decimal = row["base_rate"]
    rules = read_rules(row["rules"])
    best = chosen_index(rules, seller_role, body_type, at_ms)
    if best is not None:
        rate = rules[best].rate
    if row["min_rate"] is not None:
        rate = max(rate, row["min_rate"])
    if row["max_rate"] is not None:
        rate = min(rate, row["max_rate"])
    return min(max(rate, Decimal(0)), Decimal(1)).quantize(Decimal("0.0001"))


def read_rules(raw: str | bytes | None) -> list[Rule]:
    """`rules` as end processing reads them: unreadable is logged and means none."""
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
    """The rate effective for the auction at its end (in the caller's transaction)."""
    subject = await conn.fetchrow(_SUBJECT, auction_id)
    end: datetime = subject["end_time"]
    end_ms = to_ms(end)
    row = await rates_at(conn, SERVICE_TYPE, end_ms)
    return choose_rate(row, subject["role"], subject["body_type"], end_ms)


async def rates_at(conn: asyncpg.Connection, service_type: str, at_ms: int) -> RatesRow | None:
    """The row as it stood for an auction ending at `at_ms`: the table's, unless a
    change through the API came at or after that moment (module doc). Shares the
    rates' lock until the caller's transaction ends."""
    await conn.execute(_SHARE_RATES, RATES_LOCK_KEY)
    row: asyncpg.Record | None = await conn.fetchrow(_RATES, service_type)
    if row is None or to_ms(row["updated_at"]) < at_ms:
        return row
    change = await conn.fetchrow(_BEFORE_CHANGE, RATE_TARGET, row["id"], RATE_CHANGE, at_ms)
    if change is None:  # changed in SQL since: the table as it is
        return row
    if change["old_value"] is None:  # there was no row before it
        return None
    version = _version.decode(change["old_value"])
    return {
        "base_rate": version.base_rate,
        "min_rate": version.min_rate,
        "max_rate": version.max_rate,
        "rules": bytes(version.rules),
    }


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
