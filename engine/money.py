"""Exact conversion between the ledger's naira and the engine's kobo.

PostgreSQL keeps the seed's DECIMAL(15,2) naira columns; the core and the wire
use integer kobo (₦1 = 100 kobo). These two functions are the only crossing,
and they never round: a value that is not a whole number of kobo is an error.
"""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal

from engine.errors import Refused

KOBO_PER_NAIRA = 100
#: The most kobo any amount, price or balance may be: the ledger's DECIMAL(15,2)
#: naira holds 10^13 - 0.01, and the core refuses 10^15 and above.
MAX_KOBO = 10**15 - 1

# Precision large enough that scaling by 100 can never round, whatever the
# caller's decimal context is.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def checked_amount(amount_kobo: int) -> int:
    """A movement's amount: whole kobo above zero, at most MAX_KOBO."""
    if not 0 < amount_kobo <= MAX_KOBO:
        raise Refused(
            "invalid",
            "invalid_amount",
            "Enter a whole amount in kobo above zero and below ₦10 trillion.",
        )
    return amount_kobo


def naira_to_kobo(naira: Decimal) -> int:
    """Whole kobo in `naira` (a Decimal, as asyncpg returns NUMERIC).

    Raises TypeError for anything but a Decimal (floats are inexact, and an int
    here is more likely kobo passed by mistake), ValueError for NaN, infinity or
    a fraction of a kobo.
    """
    if not isinstance(naira, Decimal):
        raise TypeError(f"naira must be a Decimal, not {type(naira).__name__}: {naira!r}")
    if not naira.is_finite():
        raise ValueError(f"{naira} is not an amount of naira")
    kobo = naira.scaleb(2, _EXACT)
    if kobo != kobo.to_integral_value(context=_EXACT):
        raise ValueError(f"₦{naira} is not a whole number of kobo")
    return int(kobo)


def kobo_to_naira(kobo: int) -> Decimal:
    """`kobo` as a Decimal of naira with exactly two places (₦12.50 for 1250)."""
    if isinstance(kobo, bool) or not isinstance(kobo, int):
        raise TypeError(f"kobo must be an int, not {type(kobo).__name__}: {kobo!r}")
    # An int's Decimal has exponent 0, so scaling by -2 gives exactly two places.
    return Decimal(kobo).scaleb(-2, _EXACT)


def format_naira(kobo: int) -> str:
    """₦1,550,000.00 for 155000000: how a bidder reads an amount."""
    sign = "-" if kobo < 0 else ""
    naira, rest = divmod(abs(kobo), KOBO_PER_NAIRA)
    return f"{sign}₦{naira:,}.{rest:02d}"


def deposit_bp(deposit_pct: Decimal) -> int:
    """20.00 % → 2000 basis points, exactly."""
    bp = deposit_pct * 100
    if bp != bp.to_integral_value():
        raise ValueError(f"deposit_pct {deposit_pct} is not a whole number of basis points")
    return int(bp)


def effective_reserve_kobo(auction_type: str, reserve_price: Decimal | None) -> int | None:
    """RULES.md: a reserve binds unless the auction is `no_reserve`."""
    if reserve_price is None or auction_type == "no_reserve":
        return None
    return naira_to_kobo(reserve_price)
