"""The rule examples of test_reference_model.py, held against the compiled core,
plus what only the compiled core has (constants, `deposit`, `BatchResult`)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bidcore
from bench import reference_model as model
from tests.test_reference_model import T0, RuleExamples, add_live, add_user


class TestCompiledCore(RuleExamples):
    implementation = bidcore.Core
    batch_class = bidcore.BidBatch


class TestCompiledCoreOnOneShard(RuleExamples):
    implementation = staticmethod(lambda: bidcore.Core(shards=1))
    batch_class = bidcore.BidBatch


class TestCompiledCoreInParallel(RuleExamples):
    implementation = staticmethod(lambda: bidcore.Core(shards=8, parallel_min_batch=0))
    batch_class = bidcore.BidBatch


def test_constants_are_the_documented_ones() -> None:
    constants = (bidcore.MAX_AMOUNT_KOBO, bidcore.MAX_TIME_MS)
    assert constants == (model.MAX_AMOUNT_KOBO, model.MAX_TIME_MS)


def test_reason_codes_start_with_accepted_and_name_every_reason() -> None:
    codes = bidcore.REASON_CODES
    assert (codes[0], sorted(codes[1:])) == ("accepted", sorted(model.REASONS))


def test_errors_are_core_errors() -> None:
    errors = [
        bidcore.InvalidArgument,
        bidcore.UnknownAuction,
        bidcore.UnknownUser,
        bidcore.DuplicateAuction,
        bidcore.InvalidTransition,
    ]
    assert all(issubclass(error, bidcore.CoreError) for error in errors)
    assert issubclass(bidcore.CoreError, Exception)


@given(
    amount=st.integers(min_value=1, max_value=model.MAX_AMOUNT_KOBO - 1),
    bp=st.integers(min_value=0, max_value=10_000),
)
def test_deposit_is_the_ceiling_of_the_percentage(amount: int, bp: int) -> None:
    assert bidcore.deposit(amount, bp) == model.deposit(amount, bp)


def test_shard_count_is_what_was_asked() -> None:
    assert [bidcore.Core(shards=n).shard_count for n in (1, 3, bidcore.MAX_SHARDS)] == [
        1,
        3,
        bidcore.MAX_SHARDS,
    ]


@pytest.mark.parametrize("shards", [0, -1])
def test_core_without_shards_is_refused(shards: int) -> None:
    with pytest.raises((bidcore.InvalidArgument, ValueError, OverflowError)):
        bidcore.Core(shards=shards)


# --- BatchResult ---------------------------------------------------------------------


@pytest.fixture
def batch_result() -> Any:
    """Three bids on one auction: accepted, below_minimum, accepted."""
    core = bidcore.Core()
    alice, bob = add_user(core, 1), add_user(core, 2)
    auction = add_live(core)
    batch = bidcore.BidBatch.from_columns(
        [auction] * 3, [alice, bob, bob], [100_000, 100_000, 105_000], [T0] * 3
    )
    return core.place_batch(batch)


def test_batch_result_codes_index_reason_codes(batch_result: Any) -> None:
    codes = [bidcore.REASON_CODES[code] for code in batch_result.codes()]
    assert codes == ["accepted", "below_minimum", "accepted"]


def test_batch_result_counts_accepted_bids(batch_result: Any) -> None:
    assert (len(batch_result), batch_result.accepted_count) == (3, 2)


def test_batch_result_accepted_lists_accepted_outcomes_in_order(batch_result: Any) -> None:
    accepted = batch_result.accepted()
    assert [(o.user, o.amount_kobo) for o in accepted] == [(0, 100_000), (1, 105_000)]


def test_batch_result_past_its_end_is_index_error(batch_result: Any) -> None:
    with pytest.raises(IndexError):
        batch_result[3]
