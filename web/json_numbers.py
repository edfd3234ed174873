"""JSON numbers as JSON reads them: a number whose value is an integer is that
integer, however it is written (`152655220.0`, `1e3`, `1E8`, `-0.0`), as in JSON
Schema; `1.5` is not one.

msgspec's strict decoding takes an `int` only from digits without a fraction or an
exponent. When it refuses a message, the message is read again with each integral
number written as digits — converted from the number's text (`decimal.Decimal`),
never through a binary float, which would round `100000000.0000000001` to an
integer — and decoded once more. A message with no such number keeps msgspec's
first answer, so a non-integral number, a string, a boolean or null is refused
exactly as before, and messages that decode at once pay nothing.
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class IntegralDecoder(Generic[T]):
    """A strict msgspec JSON decoder that also takes integral numbers as integers."""

    def __init__(self, decoder: msgspec.json.Decoder[T]) -> None:
        self._decoder = decoder

    def decode(self, data: bytes | str) -> T:
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError:
            rewritten = integers_as_digits(data)
            if rewritten is None:
                raise
        return self._decoder.decode(rewritten)


class _Numbers:
    """msgspec's `float_hook`: an integral number becomes its int; any other keeps its
    own text (`msgspec.Raw`), so that it is encoded again exactly as it was sent."""

    def __init__(self) -> None:
        self.rewritten = False

    def __call__(self, text: str) -> int | msgspec.Raw:
        value = Decimal(text)
        if _is_readable_integer(value):
            self.rewritten = True
            return int(value)
        return msgspec.Raw(text.encode())


def _is_readable_integer(value: Decimal) -> bool:
    """An integer with no more digits than msgspec (like int()) reads from digits: one
    longer is out of every field's range either way, and its digits would cost."""
    if not value.is_finite() or value != value.to_integral_value():
        return False
    return value.is_zero() or value.adjusted() < sys.get_int_max_str_digits()


def integers_as_digits(data: bytes | str) -> bytes | None:
    """The JSON text with every integral number written as digits; None if it has none
    (or is not JSON at all: then the first refusal stands)."""
    numbers = _Numbers()
    try:
        value = msgspec.json.Decoder(float_hook=numbers).decode(data)
        if not numbers.rewritten:
            return None
        return msgspec.json.encode(value)
    except (msgspec.MsgspecError, RecursionError, InvalidOperation, ValueError):
        return None
