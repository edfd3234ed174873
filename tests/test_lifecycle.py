"""Auctions go live, end exactly once and are end-processed, on a driven clock."""

from __future__ import annotations

import asyncio
import inspect
import random
import time
import uuid
from typing import Any

import pytest

from engine import metrics
from engine.bids import BidAccepted
from engine.clock import ManualClock, to_ms
from engine.errors import Refused
from engine.money import naira_to_kobo
from engine.offers import PAYMENT_WINDOW_MS
from engine.registry import NO_HANDLE
from engine.roles import PLATFORM_USER_ID
from engine.sequencer import Sequencer
from engine.wallet import WalletChange, debit
from jobs.lifecycle import Lifecycle
from jobs.reserve import ReserveProtection
from jobs.scheduler import SWEEP_S, Jobs
from tests.factories import create_auction, create_user

PRICE = 100_000_000
STEP = 5_000_000
START = (time.time_ns() // 1_000_000 // 1000) * 1000
END = START + 3_600_000
HOUR_MS = 3_600_000


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


async def test_an_auction_without_bids_is_unsold_and_returns_the_vehicle(pool: Any) -> None:
    auction, _ = await world(pool)
    clock = ManualClock(END - 1000)
    sequencer, lifecycle, rooms = await engine(pool, clock)
    try:
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


@pytest.mark.parametrize(
    ("setup", "options"),
    [
        ("reserve_not_met", {"reserve_kobo": PRICE * 2, "auction_type": "reserve"}),
        ("platform_leads", {"reserve_kobo": PRICE * 10}),
    ],
)
async def test_below_the_reserve_the_seller_decides_and_the_vehicle_waits(
    pool: Any, setup: str, options: Any
) -> None:
    auction, bidders = await world(pool, **options)
    await pool.execute(
        "UPDATE vehicles SET status = 'in_auction'"
        " WHERE id = (SELECT vehicle_id FROM auctions WHERE id = $1)",
        auction,
    )
    clock = ManualClock(END - 1000)
    sequencer, lifecycle, rooms = await engine(pool, clock)
    try:
        await sequencer.place_bid(auction, bidders[0], PRICE)
        if setup == "platform_leads":
            await ReserveProtection(sequencer, clock).run()
        clock.set(END + 1_000_000)
        await lifecycle.tick()
        exposure = sequencer.core.user(sequencer.registry.user_handle(bidders[0])).exposure_kobo
    finally:
        await sequencer.close()
    row = await pool.fetchrow("SELECT status, winner_id FROM auctions WHERE id = $1", auction)
    assert (row["status"], row["winner_id"]) == ("seller_decision", None)
    assert await pool.fetchval("SELECT count(*) FROM transactions") == 0
    vehicle = await pool.fetchval(
        "SELECT v.status FROM vehicles v JOIN auctions a ON a.vehicle_id = v.id WHERE a.id = $1",
        auction,
    )
    assert vehicle == "in_auction"
    assert exposure == PRICE // 5  # the high bid binds until the seller decides
    assert [(r.result, r.high_bidder_id, r.final_price_kobo) for r in rooms.ended] == [
        ("seller_decision", bidders[0], PRICE)
    ]


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


# ---- the winner's deposit between the hammer and the hold ---------------------------


async def withdraw_all(pool: Any, sequencer: Sequencer, user: uuid.UUID) -> str:
    """The outcome of withdrawing the whole balance: 'taken' or the refusal's code."""
    amount = await balance(pool, user)
    try:
        await debit(pool, sequencer, user, WalletChange(amount, f"out-{uuid.uuid4().hex}"))
    except Refused as refused:
        return refused.code
    return "taken"


async def hold_of(pool: Any, auction: uuid.UUID) -> str:
    status: str = await pool.fetchval(
        "SELECT deposit_status FROM settlement_offers WHERE auction_id = $1", auction
    )
    return status


async def test_between_the_close_and_end_processing_the_deposit_stays_committed(
    pool: Any,
) -> None:
    auction, _ = await world(pool)
    seller = await create_user(pool, role="dealer")
    other = await create_auction(pool, seller=seller, start_ms=START, end_ms=END + HOUR_MS)
    deposit = PRICE // 5
    winner = await create_user(pool, balance_kobo=deposit + deposit // 2)
    clock = ManualClock(START + 1000)
    sequencer, lifecycle, _ = await engine(pool, clock)
    try:
        assert isinstance(await sequencer.place_bid(auction, winner, PRICE), BidAccepted)
        clock.set(END)
        await sequencer.close_auction(auction)  # the hammer; no hold yet
        withdrawal = await withdraw_all(pool, sequencer, winner)
        elsewhere = await sequencer.place_bid(other, winner, PRICE)
        await lifecycle.finish(auction, winner)
        exposure_after = sequencer.core.user(sequencer.registry.user_handle(winner)).exposure_kobo
    finally:
        await sequencer.close()
    assert withdrawal == "committed_capital"
    assert (elsewhere.accepted, getattr(elsewhere, "code", None)) == (
        False,
        "insufficient_buying_power",
    )
    assert await hold_of(pool, auction) == "held"
    assert await balance(pool, winner) == deposit // 2
    assert exposure_after == 0  # the hold has the deposit now


async def test_a_restart_between_the_close_and_end_processing_keeps_the_winner_exposed(
    pool: Any,
) -> None:
    auction, bidders = await world(pool)
    clock = ManualClock(START + 1000)
    first, _, _ = await engine(pool, clock)
    await first.place_bid(auction, bidders[0], PRICE)
    clock.set(END)
    await first.close_auction(auction)
    await first.close()  # the process dies before end processing
    second, lifecycle, _ = await engine(pool, clock)
    try:
        handle = second.registry.user_handle(bidders[0])
        exposed = second.core.user(handle).exposure_kobo
        withdrawal = await withdraw_all(pool, second, bidders[0])
        await lifecycle.sweep_ended()
        exposed_after = second.core.user(handle).exposure_kobo
    finally:
        await second.close()
    assert exposed == PRICE // 5
    assert withdrawal == "committed_capital"
    assert (await hold_of(pool, auction), exposed_after) == ("held", 0)


async def test_withdrawals_racing_the_hammer_never_escape_the_hold(pool: Any) -> None:
    rng = random.Random(5)
    clock = ManualClock(START + 1000)
    seller = await create_user(pool, role="dealer")
    sequencer, lifecycle, _ = await engine(pool, clock)
    try:
        for round_ in range(25):
            now = clock.now_ms()
            end = now + 600_000  # bids now are outside the anti-sniping window
            auction = await create_auction(pool, seller=seller, start_ms=now - 1000, end_ms=end)
            assert await sequencer.load_auction(auction)
            winner = await create_user(pool, balance_kobo=PRICE)
            sequencer.upsert_user(winner, balance_kobo=PRICE, eligible=True)
            assert isinstance(await sequencer.place_bid(auction, winner, PRICE), BidAccepted)
            clock.set(end)

            async def withdraw_soon(winner: uuid.UUID = winner) -> str:
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)  # land anywhere in the close and end processing
                return await withdraw_all(pool, sequencer, winner)

            _, withdrawal = await asyncio.gather(lifecycle.tick(), withdraw_soon())
            assert withdrawal == "committed_capital", round_
            assert await hold_of(pool, auction) == "held", round_
    finally:
        await sequencer.close()


# ---- end processing that fails ------------------------------------------------------


async def refuse_notifications(pool: Any) -> None:
    """End processing writes the notifications outbox: make that write fail."""
    await pool.execute(
        """
        CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
        CREATE TRIGGER test_refuse BEFORE INSERT ON notifications
        FOR EACH ROW EXECUTE FUNCTION test_refuse();
        """
    )


async def test_a_failed_end_processing_is_counted_and_finished_by_the_next_sweep(
    pool: Any,
) -> None:
    auction, bidders = await world(pool)
    clock = ManualClock(START + 1000)
    sequencer, lifecycle, rooms = await engine(pool, clock)
    failures = metrics.END_PROCESSING_FAILURES._value.get()
    try:
        await sequencer.place_bid(auction, bidders[0], PRICE)
        await refuse_notifications(pool)
        clock.set(END)
        await lifecycle.tick()  # closes, then end processing fails: no exception out
        after_failure = await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction)
        still_exposed = sequencer.core.user(sequencer.registry.user_handle(bidders[0]))
        await lifecycle.sweep_ended()  # fails again
        unprocessed = metrics.ENDED_UNPROCESSED._value.get()
        await pool.execute("DROP TRIGGER test_refuse ON notifications")
        finished = await lifecycle.sweep_ended()
    finally:
        await sequencer.close()
    assert after_failure == "ended"
    assert still_exposed.exposure_kobo == PRICE // 5
    assert metrics.END_PROCESSING_FAILURES._value.get() == failures + 2
    assert unprocessed == 1
    assert [r.auction_id for r in finished] == [auction]
    assert [r.auction_id for r in rooms.ended] == [auction]
    assert await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == (
        "pending_settlement"
    )
    assert await hold_of(pool, auction) == "held"


def test_the_sweep_runs_on_a_timer_of_seconds() -> None:
    assert 0 < SWEEP_S <= 5
    source = inspect.getsource(Jobs.start)
    assert 'self.lifecycle.sweep_ended, "interval", seconds=SWEEP_S' in source
