"""An integral JSON number is the integer it equals, read exactly from its text
(web/json_numbers.py); every other refusal stays msgspec's own."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from web.json_numbers import IntegralDecoder


class Amount(msgspec.Struct, forbid_unknown_fields=True):
    amount_kobo: int
    reference: str = "r"


DECODER = IntegralDecoder(msgspec.json.Decoder(Amount, strict=True))
PLAIN = msgspec.json.Decoder(Amount, strict=True)


def amount(raw: str, rest: str = "") -> int:
    return DECODER.decode(f'{{"amount_kobo": {raw}{rest}}}').amount_kobo


@pytest.mark.parametrize(
    ("raw", "integer"),
    [
        ("152655220.0", 152655220),
        ("1e3", 1000),
        ("1E8", 10**8),
        ("1.5e1", 15),
        ("-0.0", 0),
        ("0e99999", 0),
        ("12.50e1", 125),
        # Past 2^53 a binary float would round these; the text is read exactly.
        ("9007199254740993.0", 9007199254740993),
        ("999999999999999.000", 999999999999999),
        ("1e400", 10**400),
    ],
)
def test_an_integral_number_is_that_integer(raw: str, integer: int) -> None:
    assert amount(raw) == integer


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(0, 6))
def test_any_integer_written_with_a_fraction_or_an_exponent_is_itself(
    integer: int, zeros: int
) -> None:
    assert amount(f"{integer}.{'0' * (zeros + 1)}") == integer
    assert amount(f"{Decimal(integer):E}") == integer


@pytest.mark.parametrize(
    "raw",
    [
        "1.5",
        "100000000.0000000001",  # a binary float would make this 100000000
        "1e-1",
        "0.999999999999999999999",
        '"100"',
        "true",
        "null",
        "[1]",
        "1e5000",  # longer than any integer msgspec reads
    ],
)
def test_anything_else_is_refused_as_msgspec_refuses_it(raw: str) -> None:
    body = f'{{"amount_kobo": {raw}}}'
    with pytest.raises(msgspec.ValidationError) as plain:
        PLAIN.decode(body)
    with pytest.raises(msgspec.ValidationError) as ours:
        DECODER.decode(body)
    assert str(ours.value) == str(plain.value)


def test_another_field_s_refusal_is_its_own_once_the_number_is_read() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"got `int` - at `\$.reference`"):
        amount("1.0", ', "reference": 5')


def test_text_that_is_not_json_is_malformed_as_before() -> None:
    with pytest.raises(msgspec.DecodeError):
        DECODER.decode('{"amount_kobo": 1.0,')
