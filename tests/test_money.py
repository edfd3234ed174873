"""Naira ↔ kobo conversion at the ledger boundary: exact, or an error."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.money import kobo_to_naira, naira_to_kobo


@given(st.integers(min_value=0, max_value=10**15))
def test_kobo_round_trips_exactly(kobo: int) -> None:
    assert naira_to_kobo(kobo_to_naira(kobo)) == kobo


@given(st.integers(min_value=0, max_value=10**15))
def test_naira_has_exactly_two_places(kobo: int) -> None:
    naira = kobo_to_naira(kobo)
    assert naira.as_tuple().exponent == -2
    assert naira * 100 == kobo


def test_conversion_examples() -> None:
    assert naira_to_kobo(Decimal("1550000.00")) == 155_000_000
    assert naira_to_kobo(Decimal("12.5")) == 1250
    assert naira_to_kobo(Decimal("7")) == 700
    assert naira_to_kobo(Decimal("1.5E+3")) == 150_000
    assert kobo_to_naira(5_000_000) == Decimal("50000.00")
    assert str(kobo_to_naira(0)) == "0.00"
    assert str(kobo_to_naira(1)) == "0.01"


def test_largest_ledger_amount_is_exact() -> None:
    # DECIMAL(15,2)'s largest value has 15 digits, past float precision.
    assert naira_to_kobo(Decimal("9999999999999.99")) == 999_999_999_999_999


def test_exact_whatever_the_callers_decimal_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        assert naira_to_kobo(Decimal("123456789.12")) == 12_345_678_912
        assert kobo_to_naira(12_345_678_912) == Decimal("123456789.12")


@pytest.mark.parametrize("naira", ["0.001", "10.005", "1E-3"])
def test_fraction_of_a_kobo_is_refused(naira: str) -> None:
    with pytest.raises(ValueError, match="whole number of kobo"):
        naira_to_kobo(Decimal(naira))


@pytest.mark.parametrize("naira", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_naira_is_refused(naira: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        naira_to_kobo(Decimal(naira))


@pytest.mark.parametrize("value", [1.5, 100.0, True, 100, "100.00"])
def test_naira_must_be_a_decimal(value: object) -> None:
    with pytest.raises(TypeError, match="must be a Decimal"):
        naira_to_kobo(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1.5, 100.0, True, False, Decimal("100"), "100"])
def test_kobo_must_be_an_int(value: object) -> None:
    with pytest.raises(TypeError, match="must be an int"):
        kobo_to_naira(value)  # type: ignore[arg-type]
