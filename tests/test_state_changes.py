"""State changes travel the ledger's queue in the core's order, with the bids."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import bidcore
from engine.bids import BidAccepted
from engine.money import naira_to_kobo
from engine.recovery import recover
from engine.sequencer import Sequencer
from tests.factories import create_auction, create_user

HOUR_MS = 3_600_000
PRICE = 100_000_000
STEP = 5_000_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def setup(pool: Any, status: str = "live") -> tuple[Any, list[Any]]:
    seller = await create_user(pool, role="dealer")
    start = now_ms() - 1000
    auction = await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS, status=status
    )
    bidders = [await create_user(pool, balance_kobo=10**12) for _ in range(3)]
    return auction, bidders


async def auction_row(pool: Any, auction: Any) -> Any:
    return await pool.fetchrow("SELECT * FROM auctions WHERE id = $1", auction)


async def test_opening_makes_the_auction_live_in_ledger_and_core(pool: Any) -> None:
    auction, bidders = await setup(pool, status="scheduled")
    engine = await Sequencer.open(pool)
    try:
        refused = await engine.place_bid(auction, bidders[0], PRICE)
        change = await engine.open_auction(auction)
        accepted = await engine.place_bid(auction, bidders[0], PRICE)
    finally:
        await engine.close()
    assert refused.accepted is False
    assert (change.status, change.seq) == ("live", 1)
    assert isinstance(accepted, BidAccepted) and accepted.bid.seq == 2
    row = await auction_row(pool, auction)
    assert (row["status"], row["last_seq"]) == ("live", 2)


async def test_extension_between_bids_keeps_the_latest_end(pool: Any) -> None:
    auction, bidders = await setup(pool)
    engine = await Sequencer.open(pool)
    try:
        state = engine.core.auction(engine.registry.auction_handle(auction))
        later = state.end_time_ms + 600_000
        # The first bid and the extension wait in the same queue; order must hold.
        first, change = await asyncio.gather(
            engine.place_bid(auction, bidders[0], PRICE),
            engine.extend_auction(auction, later),
        )
        second = await engine.place_bid(auction, bidders[1], PRICE + STEP)
        core_end = engine.core.auction(engine.registry.auction_handle(auction)).end_time_ms
    finally:
        await engine.close()
    assert first.accepted and second.accepted
    assert change.end_time_ms == later == core_end
    row = await auction_row(pool, auction)
    assert int(row["end_time"].timestamp() * 1000) == later
    assert row["last_seq"] == 3


async def test_a_bid_queued_before_a_cancel_is_written_before_it(pool: Any) -> None:
    auction, bidders = await setup(pool)
    engine = await Sequencer.open(pool)
    try:
        bid, change = await asyncio.gather(
            engine.place_bid(auction, bidders[0], PRICE),
            engine.cancel_auction(auction, "seller withdrew the vehicle"),
        )
        exposure = engine.core.user(engine.registry.user_handle(bidders[0])).exposure_kobo
        with pytest.raises(bidcore.InvalidTransition):
            await engine.cancel_auction(auction, "again")
    finally:
        await engine.close()
    assert isinstance(bid, BidAccepted) and change.status == "cancelled"
    assert exposure == 0
    row = await auction_row(pool, auction)
    assert (row["status"], row["cancel_reason"], row["bid_count"]) == (
        "cancelled",
        "seller withdrew the vehicle",
        1,
    )
    assert naira_to_kobo(row["current_price"]) == PRICE
    rebuilt = await recover(pool)
    assert rebuilt.registry.auction_handle(auction) == 2**32 - 1  # not loaded: not open


async def test_close_is_durable_and_reports_the_result(pool: Any) -> None:
    auction, bidders = await setup(pool)
    engine = await Sequencer.open(pool)
    try:
        await engine.place_bid(auction, bidders[0], PRICE, "win")
        change, closed = await engine.close_auction(auction)
        late = await engine.place_bid(auction, bidders[1], PRICE * 2)
        engine.forget_auction(auction)
        retry = await engine.place_bid(auction, bidders[0], PRICE, "win")
    finally:
        await engine.close()
    assert change.status == "ended"
    assert closed.leader is not None and closed.leading_amount_kobo == PRICE
    assert late.accepted is False
    assert isinstance(retry, BidAccepted) and retry.bid.amount_kobo == PRICE
    row = await auction_row(pool, auction)
    assert row["status"] == "ended" and row["ended_at"] is not None


async def test_state_changes_reach_their_listeners_after_commit(pool: Any) -> None:
    auction, _ = await setup(pool)
    engine = await Sequencer.open(pool)
    seen: list[tuple[str, int, str]] = []

    def listener(change: Any) -> None:
        seen.append((change.kind, change.seq, change.status))

    engine.subscribe_state(listener)
    try:
        await engine.extend_auction(
            auction, engine.core.auction(engine.registry.auction_handle(auction)).end_time_ms + 1
        )
        await engine.cancel_auction(auction, "test")
    finally:
        await engine.close()
    assert seen == [("extended", 1, "live"), ("cancelled", 2, "cancelled")]
