"""Auctions go live, end exactly once and are end-processed, on a driven clock."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from engine.bidders import PLATFORM_USER_ID
from engine.bids import BidAccepted
from engine.clock import ManualClock, to_ms
from engine.money import naira_to_kobo
from engine.registry import NO_HANDLE
from engine.sequencer import Sequencer
from engine.settlement import PAYMENT_WINDOW_MS
from jobs.lifecycle import Lifecycle
from jobs.reserve import ReserveProtection
from tests.factories import create_auction, create_user

PRICE = 100_000_000
STEP = 5_000_000
START = (time.time_ns() // 1_000_000 // 1000) * 1000
END = START + 3_600_000


class Rooms:
    def __init__(self) -> None:
        self.ended: list[Any] = []

    def publish_ended(self, result: Any) -> None:
        self.ended.append(result)


async def world(
    pool: Any, *, status: str = "live", **auction: Any
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    seller = await create_user(pool, role="dealer")
    auction_id = await create_auction(
        pool, seller=seller, start_ms=START, end_ms=END, status=status, **auction
    )
    bidders = [await create_user(pool, balance_kobo=1_000_000_000) for _ in range(3)]
    return auction_id, bidders


async def engine(pool: Any, clock: ManualClock) -> tuple[Sequencer, Lifecycle, Rooms]:
    sequencer = await Sequencer.open(pool, clock=clock)
    rooms = Rooms()
    return sequencer, Lifecycle(pool, sequencer, clock, rooms), rooms


async def balance(pool: Any, user: uuid.UUID) -> int:
    return naira_to_kobo(
        await pool.fetchval("SELECT wallet_balance FROM users WHERE id = $1", user)
    )


async def test_a_scheduled_auction_goes_live_at_its_start(pool: Any) -> None:
    auction, bidders = await world(pool, status="scheduled")
    clock = ManualClock(START - 1)
    sequencer, lifecycle, _ = await engine(pool, clock)
    try:
        await lifecycle.tick()
        still = await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction)
        clock.set(START)
        await lifecycle.tick()
        bid = await sequencer.place_bid(auction, bidders[0], PRICE)
    finally:
        await sequencer.close()
    assert still == "scheduled"
    assert await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == "live"
    assert isinstance(bid, BidAccepted)


async def test_a_won_auction_holds_the_deposit_and_opens_settlement(pool: Any) -> None:
    auction, bidders = await world(pool)
    clock = ManualClock(START + 1000)
    sequencer, lifecycle, rooms = await engine(pool, clock)
    try:
        await sequencer.place_bid(auction, bidders[0], PRICE)
        await sequencer.place_bid(auction, bidders[1], PRICE + STEP)
        clock.set(END - 1)
        await lifecycle.tick()
        open_before_end = await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction)
        clock.set(END)
        await lifecycle.tick()
        core_balance = sequencer.core.user(sequencer.registry.user_handle(bidders[1])).balance_kobo
        forgotten = sequencer.registry.auction_handle(auction) == NO_HANDLE
    finally:
        await sequencer.close()
    deposit = (PRICE + STEP) // 5  # 20 %, a whole number of kobo here
    assert open_before_end == "live"
    row = await pool.fetchrow("SELECT * FROM auctions WHERE id = $1", auction)
    assert (row["status"], row["winner_id"]) == ("pending_settlement", bidders[1])
    assert to_ms(row["payment_deadline"]) == END + PAYMENT_WINDOW_MS
    assert await balance(pool, bidders[1]) == 1_000_000_000 - deposit == core_balance
    assert await balance(pool, bidders[0]) == 1_000_000_000
    hold = await pool.fetchrow(
        "SELECT amount, balance_after, status FROM transactions WHERE type = 'bid_deposit_hold'"
    )
    assert (naira_to_kobo(hold["amount"]), naira_to_kobo(hold["balance_after"])) == (
        deposit,
        1_000_000_000 - deposit,
    )
    assert hold["status"] == "completed"
    vehicle = await pool.fetchval(
        "SELECT v.status FROM vehicles v JOIN auctions a ON a.vehicle_id = v.id WHERE a.id = $1",
        auction,
    )
    assert vehicle == "pending_settlement"
    notes = await pool.fetch("SELECT user_id, channel, kind FROM notifications ORDER BY kind")
    assert sorted((n["kind"], n["channel"]) for n in notes if n["user_id"] == bidders[1]) == [
        ("auction_won", "email"),
        ("auction_won", "in_app"),
        ("auction_won", "sms"),
    ]
    assert {n["kind"] for n in notes if n["user_id"] == bidders[0]} == {"auction_lost"}
    assert forgotten
    assert [(r.sold, r.winner_number, r.seq) for r in rooms.ended] == [(True, 2, 4)]


async def test_anti_sniping_moves_the_end_the_scheduler_honours(pool: Any) -> None:
    auction, bidders = await world(pool)
    clock = ManualClock(END - 10_000)
    sequencer, lifecycle, _ = await engine(pool, clock)
    try:
        await sequencer.place_bid(auction, bidders[0], PRICE)  # inside the window: +2 min
        clock.set(END)
        await lifecycle.tick()
        still_live = await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction)
        clock.set(END + 120_000)
        await lifecycle.tick()
    finally:
        await sequencer.close()
    assert still_live == "live"
    row = await pool.fetchrow("SELECT status, end_time FROM auctions WHERE id = $1", auction)
    assert row["status"] == "pending_settlement" and to_ms(row["end_time"]) == END + 120_000


@pytest.mark.parametrize(
    ("setup", "options"),
    [
        ("no_bid", {}),
        ("reserve_not_met", {"reserve_kobo": PRICE * 2, "auction_type": "reserve"}),
        ("platform_leads", {"reserve_kobo": PRICE * 10}),
    ],
)
async def test_unsold_auctions_return_the_vehicle(pool: Any, setup: str, options: Any) -> None:
    auction, bidders = await world(pool, **options)
    clock = ManualClock(END - 1000)
    sequencer, lifecycle, rooms = await engine(pool, clock)
    try:
        if setup != "no_bid":
            await sequencer.place_bid(auction, bidders[0], PRICE)
        if setup == "platform_leads":
            await ReserveProtection(sequencer, clock).run()
        clock.set(END + 1_000_000)
        await lifecycle.tick()
    finally:
        await sequencer.close()
    row = await pool.fetchrow("SELECT status, winner_id FROM auctions WHERE id = $1", auction)
    assert (row["status"], row["winner_id"]) == ("unsold", None)
    assert await pool.fetchval("SELECT count(*) FROM transactions") == 0
    vehicle = await pool.fetchval(
        "SELECT v.status FROM vehicles v JOIN auctions a ON a.vehicle_id = v.id WHERE a.id = $1",
        auction,
    )
    assert vehicle == "available"
    assert [r.sold for r in rooms.ended] == [False]


async def test_a_deposit_the_wallet_cannot_cover_is_recorded_as_due(pool: Any) -> None:
    auction, bidders = await world(pool)
    clock = ManualClock(START + 1000)
    sequencer, lifecycle, _ = await engine(pool, clock)
    try:
        await sequencer.place_bid(auction, bidders[0], PRICE)
        await pool.execute("UPDATE users SET wallet_balance = 0 WHERE id = $1", bidders[0])
        clock.set(END)
        await lifecycle.tick()
    finally:
        await sequencer.close()
    offer = await pool.fetchrow("SELECT deposit, deposit_status FROM settlement_offers")
    assert (naira_to_kobo(offer["deposit"]), offer["deposit_status"]) == (PRICE // 5, "due")
    assert await pool.fetchval("SELECT count(*) FROM transactions") == 0
    assert await balance(pool, bidders[0]) == 0


async def test_end_processing_happens_once_when_two_processes_race(pool: Any) -> None:
    auction, bidders = await world(pool)
    clock = ManualClock(START + 1000)
    sequencer, lifecycle, _ = await engine(pool, clock)
    try:
        await sequencer.place_bid(auction, bidders[0], PRICE)
        clock.set(END)
        await sequencer.close_auction(auction)
        other = Lifecycle(pool, sequencer, clock)
        results = await asyncio.gather(
            lifecycle.finish(auction, bidders[0]), other.finish(auction, bidders[0])
        )
    finally:
        await sequencer.close()
    assert sum(r is not None for r in results) == 1
    assert await pool.fetchval("SELECT count(*) FROM transactions") == 1
    assert await pool.fetchval("SELECT count(*) FROM settlement_offers") == 1


async def test_a_crash_between_close_and_end_processing_is_finished_once_on_restart(
    pool: Any,
) -> None:
    auction, bidders = await world(pool)
    clock = ManualClock(START + 1000)
    first, _, _ = await engine(pool, clock)
    await first.place_bid(auction, bidders[0], PRICE)
    clock.set(END)
    await first.close_auction(auction)  # durable close, then "the process dies"
    await first.close()
    second, lifecycle, rooms = await engine(pool, clock)
    try:
        finished = await lifecycle.sweep_ended()
        again = await lifecycle.sweep_ended()
    finally:
        await second.close()
    assert [r.auction_id for r in finished] == [auction] and again == []
    assert [r.auction_id for r in rooms.ended] == [auction]
    assert await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == (
        "pending_settlement"
    )
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'auction_won'") == 3


async def test_reserve_protection_bids_are_labelled_and_stop_at_95_percent(pool: Any) -> None:
    reserve = 200_000_000
    auction, bidders = await world(
        pool, reserve_kobo=reserve, start_price_kobo=100_000_000, increment_kobo=40_000_000
    )
    clock = ManualClock(END - 1_800_000)  # the last hour
    sequencer, _, _ = await engine(pool, clock)
    protection = ReserveProtection(sequencer, clock)
    try:
        first = await protection.run()  # 100M < 180M: bids the start price
        await sequencer.place_bid(auction, bidders[0], 140_000_000)
        second = await protection.run()  # next minimum 180M <= 190M: bids
        await sequencer.place_bid(auction, bidders[1], 220_000_000)
        third = await protection.run()  # at 220M the price is above 90 % of reserve
    finally:
        await sequencer.close()
    assert [o.bid.amount_kobo for o in first + second if isinstance(o, BidAccepted)] == [
        100_000_000,
        180_000_000,
    ]
    assert third == []
    rows = await pool.fetch(
        "SELECT amount, is_platform_bid, user_id FROM bids WHERE auction_id = $1 ORDER BY seq",
        auction,
    )
    platform = [naira_to_kobo(r["amount"]) for r in rows if r["is_platform_bid"]]
    assert platform == [100_000_000, 180_000_000]
    assert all(r["user_id"] == PLATFORM_USER_ID for r in rows if r["is_platform_bid"])
    assert max(platform) * 100 <= reserve * 95
    assert await pool.fetchval("SELECT ai_bids_placed FROM auctions WHERE id = $1", auction) == 2
