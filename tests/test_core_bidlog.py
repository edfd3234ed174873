"""The bid log's hashes as the compiled core makes them equal engine/bidlog.py's,
recomputed from each row's fields alone (the encoding the verifier uses).

The reference model computes its hashes with engine/bidlog.py too, so the state
machine of test_core_stateful.py holds the two equal over any operations; these
tests say it directly, over a generated stream with maximums and proxy answers."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bidcore
from bench.core import segments
from bench.streams import BidStream, StreamParams, generate
from engine import bidlog


def loaded(stream: BidStream) -> bidcore.Core:
    core = bidcore.Core(shards=1)
    for user in stream.users:
        core.upsert_user(user.user_id, balance_kobo=user.balance_kobo, eligible=user.eligible)
    for auction in stream.auctions:
        core.add_auction(
            auction.auction_id,
            start_time_ms=auction.start_time_ms,
            end_time_ms=auction.end_time_ms,
            start_price_kobo=auction.start_price_kobo,
            bid_increment_kobo=auction.bid_increment_kobo,
            deposit_pct_bp=auction.deposit_pct_bp,
            sellers=auction.sellers,
            live=auction.live,
        )
    return core


def rows_in_order(core: bidcore.Core, stream: BidStream) -> dict[int, list[Any]]:
    """Every accepted row per auction handle, in the order the core placed them."""
    rows: dict[int, list[Any]] = defaultdict(list)
    for part in segments(stream):
        for i in range(part.start, part.end):
            outcome = core.place_bid(
                stream.auction[i], stream.user[i], stream.amount_kobo[i], stream.at_ms[i]
            )
            while outcome is not None and outcome.accepted:
                rows[outcome.auction].append(outcome)
                outcome = outcome.answer
        for call in part.maxes:
            result = core.set_max(*call)
            for row in result.bids if result.accepted else ():
                rows[row.auction].append(row)
    return rows


def recomputed(core: bidcore.Core, handle: int, rows: list[Any]) -> list[bytes]:
    """The rows' hashes from engine/bidlog.py, from their fields alone."""
    entries = [
        bidlog.Entry(
            seq=row.seq,
            number=row.bidder_number,
            amount_kobo=row.amount_kobo,
            at_ms=row.at_ms,
            is_platform=row.is_platform,
            is_proxy=row.is_proxy,
        )
        for row in rows
    ]
    return bidlog.chain(uuid.UUID(int=core.auction(handle).auction_id), entries)


@pytest.fixture(scope="module")
def stream() -> BidStream:
    return generate(StreamParams(bids=20_000, auctions=40, bidders=300, seed=11, max_share=0.3))


def test_every_rows_hash_is_the_python_encodings(stream: BidStream) -> None:
    core = loaded(stream)
    rows = rows_in_order(core, stream)
    assert sum(len(r) for r in rows.values()) > 5_000
    assert any(row.is_proxy for r in rows.values() for row in r), "the stream has proxy rows"
    for handle, placed in rows.items():
        assert [row.hash for row in placed] == recomputed(core, handle, placed)
        assert core.auction(handle).log_head == placed[-1].hash


def test_a_batch_gives_the_same_hashes_as_one_bid_at_a_time(stream: BidStream) -> None:
    one_by_one = loaded(stream)
    single = rows_in_order(one_by_one, stream)
    batched = loaded(stream)
    for part in segments(stream):
        columns = (stream.auction, stream.user, stream.amount_kobo, stream.at_ms)
        batch = bidcore.BidBatch.from_columns(*(c[part.start : part.end] for c in columns))
        batched.place_batch(batch)
        for call in part.maxes:
            batched.set_max(*call)
    for handle, placed in single.items():
        assert batched.auction(handle).log_head == placed[-1].hash


def test_an_auction_without_bids_is_at_its_genesis(stream: BidStream) -> None:
    core = loaded(stream)
    auction = stream.auctions[0]
    expected = bidlog.genesis(uuid.UUID(int=auction.auction_id))
    assert core.auction(0).log_head == expected
    assert (
        expected == hashlib.sha256(b"D360gen\x01" + auction.auction_id.to_bytes(16, "big")).digest()
    )


def test_an_opened_auctions_pre_bids_are_chained_from_its_genesis() -> None:
    core = bidcore.Core(shards=1)
    alice = core.upsert_user(1, balance_kobo=10**12, eligible=True)
    bob = core.upsert_user(2, balance_kobo=10**12, eligible=True)
    auction_id = 0xABCDEF
    handle = core.add_auction(
        auction_id,
        start_time_ms=1_000,
        end_time_ms=10**9,
        start_price_kobo=1_000,
        bid_increment_kobo=100,
    )
    core.set_max(handle, alice, 5_000, 0)
    core.set_max(handle, bob, 3_000, 0)
    opened = core.open_auction(handle, 1_000)
    assert [row.user for row in opened.bids] == [bob, alice]
    assert [row.hash for row in opened.bids] == recomputed(core, handle, opened.bids)


def test_a_restored_auction_goes_on_from_the_head_it_was_given() -> None:
    core = bidcore.Core()
    alice = core.upsert_user(1, balance_kobo=10**12, eligible=True)
    bob = core.upsert_user(2, balance_kobo=10**12, eligible=True)
    head = hashlib.sha256(b"the ledger's last hash").digest()
    handle = core.restore_auction(
        7,
        **RESTORED,
        leader=bob,
        leading_amount_kobo=2_000,
        leader_is_platform=False,
        bidders=[alice, bob],
        bid_count=2,
        platform_bid_count=0,
        seq=4,
        log_head=head,
    )
    row = core.place_bid(handle, alice, 2_100, 5_000)
    entry = bidlog.Entry(5, 1, 2_100, 5_000, is_platform=False, is_proxy=False)
    assert row.hash == bidlog.bid_hash(uuid.UUID(int=7), entry, head)


@pytest.mark.parametrize("head", [bytes(31), bytes(33)])
def test_a_head_of_another_length_is_refused(head: bytes) -> None:
    core = bidcore.Core()
    user = core.upsert_user(1, balance_kobo=10**12, eligible=True)
    with pytest.raises(bidcore.InvalidArgument, match="log_head must be 32 bytes"):
        core.restore_auction(
            7,
            **RESTORED,
            leader=user,
            leading_amount_kobo=2_000,
            leader_is_platform=False,
            bidders=[user],
            bid_count=1,
            platform_bid_count=0,
            seq=1,
            log_head=head,
        )


def test_a_head_without_bids_is_refused() -> None:
    core = bidcore.Core()
    with pytest.raises(bidcore.InvalidArgument, match="head needs bids"):
        core.restore_auction(
            7,
            **RESTORED,
            leader=None,
            leading_amount_kobo=None,
            leader_is_platform=False,
            bidders=[],
            bid_count=0,
            platform_bid_count=0,
            seq=0,
            log_head=bytes(32),
        )


#: A live auction's terms for restore_auction.
RESTORED: dict[str, Any] = {
    "start_time_ms": 1_000,
    "end_time_ms": 10**9,
    "original_end_ms": 10**9,
    "start_price_kobo": 1_000,
    "bid_increment_kobo": 100,
    "reserve_price_kobo": None,
    "deposit_pct_bp": 2000,
    "anti_snipe_window_ms": 60_000,
    "anti_snipe_extension_ms": 60_000,
    "sellers": [99],
    "live": True,
}


ROWS = st.lists(
    st.tuples(
        st.sampled_from([1, 2, 2**127 + 5]),  # auction ids
        st.integers(1, 2**40 - 1),  # seq
        st.integers(0, 2**32 - 1),  # bidder number
        st.integers(1, 2**56 - 1),  # amount
        st.integers(0, 2**48 - 1),  # time
        st.booleans(),
        st.booleans(),
    ),
    max_size=30,
)


@given(rows=ROWS)
def test_a_log_batch_hashes_as_the_python_encoding_at_every_width(rows: list[Any]) -> None:
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 7
    heads = dict(bidcore.LogBatch.from_columns(*columns).heads())
    chains: dict[int, list[bidlog.Entry]] = defaultdict(list)
    for auction, seq, number, amount, at, platform, proxy in rows:
        chains[auction].append(bidlog.Entry(seq, number, amount, at, platform, proxy))
    assert heads == {
        auction: bidlog.chain(uuid.UUID(int=auction), entries)[-1]
        for auction, entries in chains.items()
    }


def test_a_log_batch_gives_the_heads_the_core_reached(stream: BidStream) -> None:
    core = loaded(stream)
    rows = [row for placed in rows_in_order(core, stream).values() for row in placed]
    batch = bidcore.LogBatch.from_columns(
        [core.auction(row.auction).auction_id for row in rows],
        [row.seq for row in rows],
        [row.bidder_number for row in rows],
        [row.amount_kobo for row in rows],
        [row.at_ms for row in rows],
        [row.is_platform for row in rows],
        [row.is_proxy for row in rows],
    )
    assert len(batch) == len(rows)
    heads = dict(batch.heads())
    for handle in {row.auction for row in rows}:
        state = core.auction(handle)
        assert heads[state.auction_id] == state.log_head


@pytest.mark.parametrize(
    "bad", [{"seqs": [2**40]}, {"amounts_kobo": [2**56]}, {"at_ms": [-1]}, {"at_ms": [2**48]}]
)
def test_a_log_batch_refuses_what_the_record_cannot_hold(bad: dict[str, list[int]]) -> None:
    columns: dict[str, Any] = {
        "auction_ids": [1],
        "seqs": [1],
        "numbers": [1],
        "amounts_kobo": [1],
        "at_ms": [0],
        "platform": [False],
        "proxy": [False],
    }
    with pytest.raises(bidcore.InvalidArgument, match="outside the bid log's record"):
        bidcore.LogBatch.from_columns(**{**columns, **bad})
