"""The admin's commission rates (the seed's "Admin Operations": "Commission Rate
Update → Update commission_rates table → Affects ALL future transactions
immediately → Logged in admin_audit_log").

Reading: every row of `commission_rates`, as stored. Writing: an admin's whole
row for a service type the engine reads (`auction_sale`), upserted in one
transaction with its audit row (old and new row, the admin, reason and IP). A
field left out is cleared: no bound, no rules.

What is stored is what engine/commission.py reads, as it was meant:
- A rate is a decimal string from "0" to "1" with at most four decimals (the
  column's DECIMAL(5,4)); a JSON number is refused, since a binary float cannot
  hold every rate exactly. `min_rate` ≤ `base_rate` ≤ `max_rate` where given, and
  every rule's rate within them (the engine would clamp it).
- A rule is `{"rate"}` with any of `seller_role` (a role that creates auctions:
  the engine compares the creator's), `body_type` (as vehicles keep it: trimmed,
  at most 30 characters), `from_ms` and `until_ms` (from before until). No other
  key: the engine would not read the list at all.
- Every rule sets the rate of some auction that can still end under this row:
  `until_ms` after the change, and no rule beaten, wherever it matches, by one
  listed before it as specific or by a more specific one. That is decided with
  the engine's own choice (`chosen_index`) over every case that can tell rules
  apart: each role, each body type a rule names plus any other, each stretch of
  time between the rules' bounds.

The change's moment (`updated_at`) is the engine's clock, later than the row's
last, taken under the rates' advisory lock held alone (engine/commission.py: end
processing shares it); the row applies to auctions ending after that moment.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

import bidcore
from engine.admin import Actor
from engine.auctions import CREATOR_ROLES
from engine.audit import write_audit
from engine.clock import Clock, to_datetime, to_ms
from engine.commission import (
    RATE_CHANGE,
    RATE_TARGET,
    RATES_LOCK_KEY,
    SERVICE_TYPES,
    Rule,
    chosen_index,
)
from engine.errors import Refused
from engine.text import check_text
from engine.vehicles import TEXT_LIMITS

#: A rate as the API takes it: "0" to "1", at most four decimals (ASCII digits).
RATE_FORM = r"(?:0(?:\.[0-9]{1,4})?|1(?:\.0{1,4})?)"
#: At most this many rules in a row: each is weighed against the others.
MAX_RULES = 50
#: The roles a rule may name: those of an auction's creator (engine/auctions.py).
RULE_ROLES = tuple(sorted(CREATOR_ROLES))
BODY_TYPE_MAX = TEXT_LIMITS["body_type"]

_RATE = re.compile(RATE_FORM)
_POINT = Decimal("0.0001")
#: Any role but a rule's: a creator whose role changed since matches role-less rules only.
_OTHER_ROLE = "user"

_EXCLUSIVE = "SELECT pg_advisory_xact_lock($1)"
_ROW = """
SELECT id, service_type, base_rate, min_rate, max_rate, rules, updated_by, updated_at
FROM commission_rates WHERE service_type = $1
"""
_ALL = """
SELECT id, service_type, base_rate, min_rate, max_rate, rules, updated_by, updated_at
FROM commission_rates ORDER BY service_type
"""
_UPSERT = """
INSERT INTO commission_rates AS c (service_type, base_rate, min_rate, max_rate, rules,
                                   updated_by, updated_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
ON CONFLICT (service_type) DO UPDATE SET
  base_rate = EXCLUDED.base_rate, min_rate = EXCLUDED.min_rate, max_rate = EXCLUDED.max_rate,
  rules = EXCLUDED.rules, updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at
RETURNING c.id, c.service_type, c.base_rate, c.min_rate, c.max_rate, c.rules, c.updated_by,
          c.updated_at
"""

#: What a JSON number decodes to where a rate's string belongs (refused, with why).
Number = int | float


class CommissionRule(msgspec.Struct, forbid_unknown_fields=True):
    """One override of `base_rate`: its `rate` for the auctions it matches."""

    rate: str | Number
    seller_role: str | None = None
    body_type: str | None = None
    from_ms: int | None = None
    until_ms: int | None = None


class RateChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A service type's row as an admin sets it; a field left out is cleared."""

    base_rate: str | Number
    min_rate: str | Number | None = None
    max_rate: str | Number | None = None
    rules: list[CommissionRule] = []


class CommissionRateBody(msgspec.Struct, frozen=True):
    """A `commission_rates` row: rates as decimal strings, `rules` as stored."""

    service_type: str
    base_rate: str
    min_rate: str | None
    max_rate: str | None
    rules: msgspec.Raw
    updated_by: uuid.UUID | None
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class _Checked:
    base: Decimal
    low: Decimal | None
    high: Decimal | None
    rules: list[Rule]


async def commission_rates(pool: asyncpg.Pool) -> list[CommissionRateBody]:
    """Every row, by service type."""
    return [rate_body(row) for row in await pool.fetch(_ALL)]


async def set_commission_rate(
    pool: asyncpg.Pool, clock: Clock, service_type: str, change: RateChange, actor: Actor
) -> CommissionRateBody:
    """Upsert `service_type`'s row with its audit row, in one transaction; a refusal
    changes nothing."""
    check_service_type(service_type)
    checked = checked_change(change)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_EXCLUSIVE, RATES_LOCK_KEY)
        old = await conn.fetchrow(_ROW, service_type)
        at_ms = clock.now_ms()
        if old is not None:  # a later moment than the last change's, whatever the clocks
            at_ms = max(at_ms, to_ms(old["updated_at"]) + 1)
        check_rules_apply(checked.rules, at_ms + 1)
        row = await conn.fetchrow(
            _UPSERT,
            service_type,
            checked.base,
            checked.low,
            checked.high,
            msgspec.json.encode(checked.rules).decode(),
            actor.admin_id,
            to_datetime(at_ms),
        )
        body = rate_body(row)
        await write_audit(
            conn,
            actor.admin_id,
            RATE_CHANGE,
            row["id"],
            old=_audit_value(rate_body(old)) if old is not None else None,
            new=_audit_value(body),
            reason=actor.reason,
            ip=actor.ip,
            target_type=RATE_TARGET,
        )
    return body


def check_service_type(service_type: str) -> None:
    """Only a service type the engine reads a rate for may be set (404 otherwise)."""
    if service_type not in SERVICE_TYPES:
        raise Refused(
            "not_found",
            "unknown_service_type",
            "The engine reads no commission rate for this service type; it knows: "
            f"{', '.join(SERVICE_TYPES)}.",
        )


def rate_body(row: asyncpg.Record) -> CommissionRateBody:
    return CommissionRateBody(
        service_type=row["service_type"],
        base_rate=_rate_text(row["base_rate"]),
        min_rate=_rate_text(row["min_rate"]) if row["min_rate"] is not None else None,
        max_rate=_rate_text(row["max_rate"]) if row["max_rate"] is not None else None,
        rules=msgspec.Raw(row["rules"].encode()),
        updated_by=row["updated_by"],
        updated_at_ms=to_ms(row["updated_at"]),
    )


def _rate_text(rate: Decimal) -> str:
    return str(rate.quantize(_POINT))


def _audit_value(body: CommissionRateBody) -> dict[str, Any]:
    """The row as the audit log keeps it: the API's body (engine/commission.py reads
    an old one back for auctions that ended before a change)."""
    value: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(body))
    return value


# ---- the checks ---------------------------------------------------------------------


def checked_change(change: RateChange) -> _Checked:
    """Everything that does not depend on the moment of the change (module doc)."""
    base = checked_rate("base_rate", change.base_rate)
    low = checked_rate("min_rate", change.min_rate) if change.min_rate is not None else None
    high = checked_rate("max_rate", change.max_rate) if change.max_rate is not None else None
    if low is not None and high is not None and low > high:
        raise _bounds(f"`min_rate` ({low}) is above `max_rate` ({high})")
    if low is not None and base < low:
        raise _bounds(f"`base_rate` ({base}) is below `min_rate` ({low})")
    if high is not None and base > high:
        raise _bounds(f"`base_rate` ({base}) is above `max_rate` ({high})")
    if len(change.rules) > MAX_RULES:
        raise Refused(
            "invalid", "too_many_rules", f"Give at most {MAX_RULES} rules; merge some of them."
        )
    rules = [_checked_rule(index, spec, low, high) for index, spec in enumerate(change.rules)]
    return _Checked(base, low, high, rules)


def checked_rate(name: str, value: str | Number, *, code: str = "invalid_rate") -> Decimal:
    """A rate from its decimal string (module doc), to four decimals."""
    if not isinstance(value, str):
        raise Refused(
            "invalid",
            code,
            f'`{name}` must be a decimal string such as "0.0350" (3.5 %), not a JSON number: '
            "a binary float cannot hold every rate exactly.",
        )
    if _RATE.fullmatch(value) is None:
        raise Refused(
            "invalid",
            code,
            f'`{name}` must be a decimal from "0" to "1" with at most four decimals, such as '
            '"0.0350" (3.5 %).',
        )
    return Decimal(value).quantize(_POINT)


def _bounds(what: str) -> Refused:
    return Refused(
        "invalid",
        "invalid_rate_bounds",
        f"{what}: the rates must keep min_rate ≤ base_rate ≤ max_rate.",
    )


def _rule_refused(index: int, what: str) -> Refused:
    return Refused("invalid", "invalid_rule", f"Rule {index + 1} (`rules[{index}]`): {what}")


def _checked_rule(
    index: int, spec: CommissionRule, low: Decimal | None, high: Decimal | None
) -> Rule:
    try:
        rate = checked_rate("rate", spec.rate, code="invalid_rule")
        body_type = check_text("body_type", spec.body_type, BODY_TYPE_MAX, code="invalid_rule")
    except Refused as err:
        raise _rule_refused(index, err.message) from None
    if low is not None and rate < low:
        raise _rule_refused(
            index,
            f"`rate` ({rate}) is below `min_rate` ({low}), which the engine would charge "
            "instead; keep every rule's rate within min_rate..max_rate.",
        )
    if high is not None and rate > high:
        raise _rule_refused(
            index,
            f"`rate` ({rate}) is above `max_rate` ({high}), which the engine would charge "
            "instead; keep every rule's rate within min_rate..max_rate.",
        )
    if spec.seller_role is not None and spec.seller_role not in RULE_ROLES:
        raise _rule_refused(
            index,
            f"`seller_role` must be one of {', '.join(RULE_ROLES)} (the auction's creator's role).",
        )
    if body_type == "":
        raise _rule_refused(index, "`body_type` must not be blank; leave it out to match any.")
    for name, moment in (("from_ms", spec.from_ms), ("until_ms", spec.until_ms)):
        if moment is not None and not 0 <= moment <= bidcore.MAX_TIME_MS:
            raise _rule_refused(
                index, f"`{name}` must be a time in ms since the epoch, 0 to {bidcore.MAX_TIME_MS}."
            )
    if spec.from_ms is not None and spec.until_ms is not None and spec.from_ms >= spec.until_ms:
        raise _rule_refused(index, "`from_ms` must be before `until_ms`.")
    return Rule(rate, spec.seller_role, body_type, spec.from_ms, spec.until_ms)


def check_rules_apply(rules: Sequence[Rule], first_ms: int) -> None:
    """Each rule sets the rate of some auction ending at `first_ms` or later (the
    first end the new row applies to), else a refusal naming the first that does not."""
    for index, rule in enumerate(rules):
        if rule.until_ms is not None and rule.until_ms <= first_ms:
            raise _rule_refused(
                index,
                "`until_ms` has passed: a change applies to auctions that end after it, and "
                "this rule would apply to none.",
            )
    unused = unused_rule(rules, first_ms)
    if unused is not None:
        raise _rule_refused(
            unused,
            "it would never set a rate: wherever it matches, a rule listed before it that is "
            "as specific, or a more specific rule, matches too and wins. Remove it, or change "
            "the rules that win over it.",
        )


def unused_rule(rules: Sequence[Rule], first_ms: int) -> int | None:
    """The first rule that no auction ending at or after `first_ms` is rated by, or
    None. Rules tell auctions apart by role, by body type (compared without case:
    any type no rule names, or none, behaves alike) and by end time (alike between
    consecutive bounds), so one case of each kind decides."""
    roles = (*RULE_ROLES, _OTHER_ROLE)
    named = {r.body_type.casefold(): r.body_type for r in rules if r.body_type is not None}
    bodies: list[str | None] = [*named.values(), None]
    bounds = {m for r in rules for m in (r.from_ms, r.until_ms) if m is not None}
    moments = sorted({first_ms, *(m for m in bounds if m > first_ms)})
    unused = set(range(len(rules)))
    for at_ms in moments:
        for role in roles:
            for body_type in bodies:
                chosen = chosen_index(rules, role, body_type, at_ms)
                if chosen is not None:
                    unused.discard(chosen)
                    if not unused:
                        return None
    return min(unused) if unused else None
