"""The write-behind ledger against a real PostgreSQL: durable before acknowledged,
exactly the accepted bids, idempotent, recoverable, fenced, and safe in an outage."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from engine.bids import BidAccepted, BidOutcome, DurableBid
from engine.database import create_pool
from engine.errors import LedgerConflict, RecoveryMismatch
from engine.ledger import (
    _WRITE_BIDS,
    LedgerWriter,
    _auction_rows,
    _bid_rows,
    _last_per_auction,
    _OutOfOrder,
    _spread,
)
from engine.money import naira_to_kobo
from engine.recovery import recover
from engine.sequencer import Sequencer
from tests.factories import create_auction, create_user
from tests.tcp_proxy import TcpProxy

HOUR_MS = 3_600_000
PRICE = 100_000_000
STEP = 5_000_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class World:
    pool: Any
    seller: uuid.UUID
    bidders: list[uuid.UUID]
    auctions: list[uuid.UUID]


async def make_world(
    pool: Any, *, auctions: int = 1, bidders: int = 5, balance_kobo: int = 10**12
) -> World:
    seller = await create_user(pool, role="dealer")
    start = now_ms() - 1000
    return World(
        pool=pool,
        seller=seller,
        bidders=[await create_user(pool, balance_kobo=balance_kobo) for _ in range(bidders)],
        auctions=[
            await create_auction(pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS)
            for _ in range(auctions)
        ],
    )


@contextlib.asynccontextmanager
async def running(pool: Any, **options: Any) -> AsyncIterator[Sequencer]:
    """An engine recovered from the ledger as it is now (users and auctions made first)."""
    engine = await Sequencer.open(pool, **options)
    try:
        yield engine
    finally:
        await engine.close()


@contextlib.asynccontextmanager
async def behind_a_proxy(
    database_url: str, *, unavailable_after_ms: int, **options: Any
) -> AsyncIterator[tuple[TcpProxy, Sequencer]]:
    """An engine whose connections go through a proxy the test can cut."""
    proxy, proxied_dsn = await TcpProxy.in_front_of(database_url)
    engine_pool = await create_pool(proxied_dsn, min_size=1, max_size=4)
    try:
        engine = await Sequencer.open(
            engine_pool, unavailable_after_ms=unavailable_after_ms, **options
        )
        try:
            yield proxy, engine
        finally:
            proxy.restore()
            await engine.close()
    finally:
        await engine_pool.close()
        await proxy.close()


async def ledger_bids(pool: Any, auction_id: uuid.UUID) -> list[Any]:
    return await pool.fetch(
        "SELECT id, user_id, amount, seq, client_bid_id, is_winning FROM bids"
        " WHERE auction_id = $1 ORDER BY seq",
        auction_id,
    )


async def refuse_boom_bids(pool: Any) -> None:
    """A server-side error the writer has no special case for: inserting a bid whose
    client_bid_id is 'boom' raises (a trigger; made again harmlessly by each test)."""
    await pool.execute(
        """
        CREATE OR REPLACE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.client_bid_id = 'boom' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF;
          RETURN NEW;
        END $$;
        CREATE OR REPLACE TRIGGER refuse_boom BEFORE INSERT ON bids
          FOR EACH ROW EXECUTE FUNCTION refuse_boom();
        """
    )


async def assert_ledger_matches(
    pool: Any, sequencer: Sequencer, auction_id: uuid.UUID, outcomes: list[BidOutcome]
) -> None:
    accepted = sorted(
        (o.bid for o in outcomes if isinstance(o, BidAccepted) and o.bid.auction_id == auction_id),
        key=lambda bid: bid.seq,
    )
    rows = await ledger_bids(pool, auction_id)
    assert [row["id"] for row in rows] == [bid.id for bid in accepted]
    assert [naira_to_kobo(row["amount"]) for row in rows] == [bid.amount_kobo for bid in accepted]
    row = await pool.fetchrow("SELECT * FROM auctions WHERE id = $1", auction_id)
    state = sequencer.core.auction(sequencer.registry.auction_handle(auction_id))
    top = max((naira_to_kobo(r["amount"]) for r in rows), default=None)
    assert state.current_price_kobo == top
    assert (naira_to_kobo(row["current_price"]) if row["current_price"] else None) == top
    assert (row["bid_count"], row["bidder_count"], row["last_seq"]) == (
        state.bid_count,
        state.bidder_count,
        state.seq,
    )
    assert int(row["end_time"].timestamp() * 1000) == state.end_time_ms
    assert [r["is_winning"] for r in rows].count(True) == (1 if rows else 0)


async def test_acknowledged_bid_is_already_in_the_ledger(pool: Any) -> None:
    world = await make_world(pool)
    async with running(pool) as sequencer:
        outcome = await sequencer.place_bid(world.auctions[0], world.bidders[0], PRICE, "b-1")
        assert isinstance(outcome, BidAccepted)
        rows = await ledger_bids(pool, world.auctions[0])
        assert [(r["id"], r["seq"], r["client_bid_id"]) for r in rows] == [
            (outcome.bid.id, 1, "b-1")
        ]


async def test_rejected_bid_writes_nothing(pool: Any) -> None:
    world = await make_world(pool)
    async with running(pool) as sequencer:
        outcome = await sequencer.place_bid(world.auctions[0], world.bidders[0], PRICE - 1, "low")
        assert outcome.accepted is False
        assert outcome.code == "below_minimum"  # type: ignore[union-attr]
        assert outcome.message == "Your bid must be at least ₦1,000,000.00."  # type: ignore[union-attr]
        assert await ledger_bids(pool, world.auctions[0]) == []


async def bid_storm(
    sequencer: Sequencer, world: World, count: int, rng: random.Random
) -> list[BidOutcome]:
    """Concurrent bidders, amounts around each auction's current minimum."""

    async def one(i: int) -> BidOutcome:
        auction = rng.choice(world.auctions)
        await asyncio.sleep(rng.random() / 5)
        state = sequencer.core.auction(sequencer.registry.auction_handle(auction))
        amount = state.min_next_bid_kobo + rng.choice([-1, 0, 0, STEP, 3 * STEP])
        return await sequencer.place_bid(auction, rng.choice(world.bidders), amount, f"s-{i}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_hot_auction_ledger_holds_exactly_the_accepted_bids(pool: Any) -> None:
    world = await make_world(pool, bidders=30)
    async with running(pool) as sequencer:
        outcomes = await bid_storm(sequencer, world, 400, random.Random(1))
        assert sum(o.accepted for o in outcomes) > 50
        await assert_ledger_matches(pool, sequencer, world.auctions[0], outcomes)


async def test_many_auctions_ledger_holds_exactly_the_accepted_bids(pool: Any) -> None:
    # Tight balances, so buying power refuses some bids across auctions.
    world = await make_world(pool, auctions=20, bidders=40, balance_kobo=60_000_000)
    async with running(pool) as sequencer:
        outcomes = await bid_storm(sequencer, world, 600, random.Random(2))
        codes = {getattr(o, "code", "accepted") for o in outcomes}
        assert {"accepted", "insufficient_buying_power"} <= codes
        for auction in world.auctions:
            await assert_ledger_matches(pool, sequencer, auction, outcomes)


async def test_concurrent_bids_share_ledger_transactions(pool: Any) -> None:
    world = await make_world(pool, auctions=50, bidders=50)
    async with running(pool) as sequencer:
        batches_before = REGISTRY.get_sample_value("auction_ledger_batch_size_count") or 0
        outcomes = await asyncio.gather(
            *(
                sequencer.place_bid(auction, world.bidders[i], PRICE, f"g-{i}")
                for i, auction in enumerate(world.auctions)
            )
        )
        batches = (
            REGISTRY.get_sample_value("auction_ledger_batch_size_count") or 0
        ) - batches_before
        assert all(o.accepted for o in outcomes)
        assert batches < len(outcomes) / 5


async def test_same_client_bid_id_returns_the_first_outcome(pool: Any) -> None:
    world = await make_world(pool)
    auction, bidder = world.auctions[0], world.bidders[0]
    async with running(pool) as sequencer:
        first, second = await asyncio.gather(
            sequencer.place_bid(auction, bidder, PRICE, "same"),
            sequencer.place_bid(auction, bidder, PRICE + STEP, "same"),
        )
        third = await sequencer.place_bid(auction, bidder, PRICE * 3, "same")
        assert isinstance(first, BidAccepted)
        assert second == first and third == first
        assert len(await ledger_bids(pool, auction)) == 1


async def test_a_retry_learns_the_outcome_after_the_first_caller_went_away(pool: Any) -> None:
    world = await make_world(pool)
    auction, bidder = world.auctions[0], world.bidders[0]
    async with running(pool) as sequencer:
        first = asyncio.create_task(sequencer.place_bid(auction, bidder, PRICE, "gone"))
        await asyncio.sleep(0)  # decided and queued for the ledger, not yet written
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        async with asyncio.timeout(5):
            again = await sequencer.place_bid(auction, bidder, PRICE + STEP, "gone")
        assert isinstance(again, BidAccepted) and again.bid.amount_kobo == PRICE
        assert len(await ledger_bids(pool, auction)) == 1


async def test_same_client_bid_id_repeats_a_rejection(pool: Any) -> None:
    world = await make_world(pool)
    auction, bidder = world.auctions[0], world.bidders[0]
    async with running(pool) as sequencer:
        first = await sequencer.place_bid(auction, bidder, PRICE - 1, "r")
        again = await sequencer.place_bid(auction, bidder, PRICE, "r")
        assert first.accepted is False and again == first
        assert await ledger_bids(pool, auction) == []


async def test_client_bid_id_holds_across_a_restart(pool: Any) -> None:
    world = await make_world(pool)
    auction, bidder = world.auctions[0], world.bidders[0]
    first_engine = await Sequencer.open(pool)
    first = await first_engine.place_bid(auction, bidder, PRICE, "restart")
    await first_engine.close()
    second_engine = await Sequencer.open(pool)
    try:
        again = await second_engine.place_bid(auction, bidder, PRICE + STEP, "restart")
    finally:
        await second_engine.close()
    assert isinstance(first, BidAccepted) and isinstance(again, BidAccepted)
    assert again.bid.id == first.bid.id and again.bid.amount_kobo == PRICE
    assert len(await ledger_bids(pool, auction)) == 1


async def test_client_bid_id_is_found_in_the_ledger_after_the_auction_ended(pool: Any) -> None:
    world = await make_world(pool)
    auction, bidder = world.auctions[0], world.bidders[0]
    engine = await Sequencer.open(pool)
    first = await engine.place_bid(auction, bidder, PRICE, "late")
    await engine.close()
    await pool.execute("UPDATE auctions SET status = 'ended' WHERE id = $1", auction)
    engine = await Sequencer.open(pool)
    try:
        again = await engine.place_bid(auction, bidder, PRICE, "late")
    finally:
        await engine.close()
    assert isinstance(again, BidAccepted) and isinstance(first, BidAccepted)
    assert again.bid.id == first.bid.id


async def test_recovery_rebuilds_the_core_the_ledger_describes(pool: Any) -> None:
    world = await make_world(pool, auctions=10, bidders=20, balance_kobo=80_000_000)
    engine = await Sequencer.open(pool)
    await bid_storm(engine, world, 300, random.Random(3))
    await engine.close()
    rebuilt = await recover(pool)
    for auction in world.auctions:
        before = engine.core.auction(engine.registry.auction_handle(auction))
        after = rebuilt.registry.core.auction(rebuilt.registry.auction_handle(auction))
        for name in ("current_price_kobo", "bid_count", "bidder_count", "seq", "end_time_ms"):
            assert getattr(after, name) == getattr(before, name), name
        leader_before = (
            engine.registry.user_id(before.leader) if before.leader is not None else None
        )
        leader_after = rebuilt.registry.user_id(after.leader) if after.leader is not None else None
        assert leader_after == leader_before
    for bidder in world.bidders:
        exposure = engine.core.user(engine.registry.user_handle(bidder)).exposure_kobo
        assert rebuilt.registry.core.user(rebuilt.registry.user_handle(bidder)).exposure_kobo == (
            exposure
        )


async def test_recovery_refuses_a_ledger_that_contradicts_itself(pool: Any) -> None:
    world = await make_world(pool)
    engine = await Sequencer.open(pool)
    await engine.place_bid(world.auctions[0], world.bidders[0], PRICE)
    await engine.close()
    await pool.execute("UPDATE auctions SET bid_count = bid_count + 1")
    with pytest.raises(RecoveryMismatch, match="bid_count"):
        await recover(pool)


async def test_a_newer_owner_fences_off_the_older_writer(pool: Any) -> None:
    world = await make_world(pool)
    auction = world.auctions[0]
    old = await Sequencer.open(pool, unavailable_after_ms=200)
    new = await Sequencer.open(pool)
    try:
        refused = await old.place_bid(auction, world.bidders[0], PRICE, "old")
        accepted = await new.place_bid(auction, world.bidders[1], PRICE, "new")
    finally:
        await old.close()
        await new.close()
    assert refused.accepted is False and refused.code == "unavailable"  # type: ignore[union-attr]
    assert isinstance(accepted, BidAccepted)
    assert [r["client_bid_id"] for r in await ledger_bids(pool, auction)] == ["new"]


async def test_outage_refuses_bids_then_serves_again_without_a_restart(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    auction = world.auctions[0]
    async with behind_a_proxy(database_url, unavailable_after_ms=300) as (proxy, engine):
        before = await engine.place_bid(auction, world.bidders[0], PRICE, "before")
        proxy.cut()
        during = await engine.place_bid(auction, world.bidders[1], PRICE + STEP, "during")
        refused_at_once = await engine.place_bid(auction, world.bidders[2], PRICE * 2, "during-2")
        assert not engine.available
        proxy.restore()
        for _ in range(100):
            if engine.available:
                break
            await asyncio.sleep(0.05)
        assert engine.available
        after = await engine.place_bid(auction, world.bidders[1], PRICE + STEP, "after")
    assert isinstance(before, BidAccepted) and isinstance(after, BidAccepted)
    assert during.accepted is False and during.code == "unavailable"  # type: ignore[union-attr]
    assert refused_at_once.code == "unavailable"  # type: ignore[union-attr]
    rows = await ledger_bids(pool, auction)
    assert [r["client_bid_id"] for r in rows] == ["before", "after"]
    await recover(pool)  # the ledger and a rebuilt core agree


async def test_an_end_caught_by_a_ledger_outage_moves_once_after_it(
    pool: Any, database_url: str
) -> None:
    """RULES.md "Outages": the ledger away for longer than OUTAGE_MIN_MS on a
    running node, with an auction's end inside the interruption: once bids are
    taken again its end is the resumption + its extension, written with one audit
    row (reason `outage`); an auction ending long after is left alone."""
    seller = await create_user(pool, role="dealer")
    bidder = await create_user(pool, balance_kobo=10**12)
    start = now_ms() - 1000
    ending = await create_auction(
        pool, seller=seller, start_ms=start, end_ms=now_ms() + 700, extension_ms=30_000
    )
    later = await create_auction(pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS)
    async with behind_a_proxy(database_url, unavailable_after_ms=200, outage_min_ms=500) as (
        proxy,
        engine,
    ):
        proxy.cut()
        refused = await engine.place_bid(ending, bidder, PRICE, "during")
        await asyncio.sleep(1.0)  # the end passes while nothing is taken
        proxy.restore()
        for _ in range(200):
            if engine.available:
                break
            await asyncio.sleep(0.05)
        resumed = now_ms()
        await engine.flush()
        extended = await pool.fetchval("SELECT end_time FROM auctions WHERE id = $1", ending)
        after = await engine.place_bid(ending, bidder, PRICE, "after")
    ends = dict(
        await pool.fetch("SELECT id, end_time FROM auctions WHERE id = ANY($1)", [ending, later])
    )
    audits = await pool.fetch(
        "SELECT target_id, reason FROM admin_audit_log WHERE target_id = ANY($1)", [ending, later]
    )

    assert refused.code == "unavailable"  # type: ignore[union-attr]
    assert isinstance(after, BidAccepted)  # the auction is still open, later
    new_end = int(extended.timestamp() * 1000)
    assert resumed - 1000 + 30_000 <= new_end <= resumed + 30_000
    assert int(ends[later].timestamp() * 1000) == start + HOUR_MS
    assert [(row["target_id"], row["reason"]) for row in audits] == [(ending, "outage")]


async def test_an_unexpected_database_error_refuses_the_batch_and_recovers(pool: Any) -> None:
    world = await make_world(pool)
    auction = world.auctions[0]
    await refuse_boom_bids(pool)
    async with running(pool) as sequencer:
        refused = await asyncio.wait_for(
            sequencer.place_bid(auction, world.bidders[0], PRICE, "boom"), timeout=10
        )
        for _ in range(100):
            if sequencer.available:
                break
            await asyncio.sleep(0.05)
        after = await sequencer.place_bid(auction, world.bidders[1], PRICE, "fine")
    assert refused.accepted is False and refused.code == "unavailable"  # type: ignore[union-attr]
    assert isinstance(after, BidAccepted)
    assert [r["client_bid_id"] for r in await ledger_bids(pool, auction)] == ["fine"]


async def test_a_state_change_sharing_a_batch_with_other_bids_keeps_its_leader(
    pool: Any,
) -> None:
    """Extending auction A in the same batch as a bid on auction B leaves A's
    leading bid winning (found by the SIGKILL storm: an ended auction had no
    winning bid because its close shared a batch with another auction's bids)."""
    world = await make_world(pool, auctions=2)
    a, b = world.auctions
    async with running(pool, window_ms=30) as sequencer:
        first = await sequencer.place_bid(a, world.bidders[0], PRICE, "a-1")
        end = sequencer.core.auction(sequencer.registry.auction_handle(a)).end_time_ms
        await asyncio.gather(
            sequencer.extend_auction(a, end + 60_000),
            sequencer.place_bid(b, world.bidders[1], PRICE, "b-1"),
        )
        assert sequencer.writer.queue_depth == 0
    assert isinstance(first, BidAccepted)
    assert [(r["client_bid_id"], r["is_winning"]) for r in await ledger_bids(pool, a)] == [
        ("a-1", True)
    ]
    assert [(r["client_bid_id"], r["is_winning"]) for r in await ledger_bids(pool, b)] == [
        ("b-1", True)
    ]


async def test_no_bid_is_decided_while_a_batch_waits_on_its_retry(
    pool: Any, database_url: str
) -> None:
    """While a failed batch waits to be retried, new bids are refused before the
    core decides them: nothing may build on a bid that may never be written. When
    the retry lands, the waiting bid is acknowledged and bidding resumes."""
    world = await make_world(pool)
    auction = world.auctions[0]
    async with behind_a_proxy(database_url, unavailable_after_ms=20_000) as (proxy, engine):
        proxy.cut()
        in_flight = asyncio.ensure_future(
            engine.place_bid(auction, world.bidders[0], PRICE, "in-flight")
        )
        for _ in range(200):
            if engine.writer.stalled:
                break
            await asyncio.sleep(0.01)
        assert engine.writer.stalled and not engine.available
        seq_before = engine.core.auction(engine.registry.auction_handle(auction)).seq
        refused = await asyncio.wait_for(
            engine.place_bid(auction, world.bidders[1], PRICE + STEP, "meanwhile"), timeout=2
        )
        state = engine.core.auction(engine.registry.auction_handle(auction))
        assert state.seq == seq_before  # the core did not decide it
        proxy.restore()
        landed = await asyncio.wait_for(in_flight, timeout=15)
        assert not engine.writer.stalled and engine.available
        after = await engine.place_bid(auction, world.bidders[1], PRICE + STEP, "meanwhile")
    assert refused.accepted is False and refused.code == "unavailable"  # type: ignore[union-attr]
    assert isinstance(landed, BidAccepted) and isinstance(after, BidAccepted)
    rows = await ledger_bids(pool, auction)
    assert [r["client_bid_id"] for r in rows] == ["in-flight", "meanwhile"]
    await recover(pool)


async def test_the_writer_survives_a_failed_rebuild_and_serves_again(pool: Any) -> None:
    """After giving up a batch, a rebuild that fails (here: once, with an error of
    a kind the writer knows nothing about) is tried again; the writer never dies."""
    world = await make_world(pool)
    auction = world.auctions[0]
    await refuse_boom_bids(pool)
    async with running(pool) as sequencer:
        rebuild = sequencer.rebuild
        attempts = 0

        async def failing_once() -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise RuntimeError("a rebuild that fails once")
            await rebuild()

        sequencer.writer._on_recovered = failing_once
        refused = await sequencer.place_bid(auction, world.bidders[0], PRICE, "boom")
        for _ in range(100):
            if sequencer.available:
                break
            await asyncio.sleep(0.05)
        after = await sequencer.place_bid(auction, world.bidders[1], PRICE, "fine")
    assert attempts == 2
    assert refused.code == "unavailable"  # type: ignore[union-attr]
    assert isinstance(after, BidAccepted)
    assert [r["client_bid_id"] for r in await ledger_bids(pool, auction)] == ["fine"]


async def test_closing_while_the_database_is_down_does_not_hang(
    pool: Any, database_url: str
) -> None:
    """A shutdown during an outage (SIGTERM while PostgreSQL is down) returns: the
    writer has given its bids up and waits for the database only to serve again."""
    world = await make_world(pool)
    async with behind_a_proxy(database_url, unavailable_after_ms=300) as (proxy, engine):
        proxy.cut()
        refused = await engine.place_bid(world.auctions[0], world.bidders[0], PRICE, "down")
        assert refused.code == "unavailable"  # type: ignore[union-attr]
        await asyncio.wait_for(engine.close(), timeout=5)


async def batch_one_and_two_more(
    sequencer: Sequencer, world: World
) -> tuple[DurableBid, DurableBid]:
    """Bid "one" placed (the epoch's batch 1), and bids "two" and "three" after it
    on the same auction, for a test to hand to the writer itself."""
    outcome = await sequencer.place_bid(world.auctions[0], world.bidders[0], PRICE, "one")
    assert isinstance(outcome, BidAccepted)
    second = msgspec.structs.replace(
        outcome.bid, id=uuid.uuid4(), seq=outcome.bid.seq + 1, client_bid_id="two"
    )
    third = msgspec.structs.replace(
        second, id=uuid.uuid4(), seq=second.seq + 1, client_bid_id="three"
    )
    return second, third


async def assert_one_two_three(pool: Any, auction: uuid.UUID) -> None:
    rows = await ledger_bids(pool, auction)
    assert [(r["client_bid_id"], r["is_winning"]) for r in rows] == [
        ("one", False),
        ("two", False),
        ("three", True),
    ]


async def test_a_batch_that_overtakes_the_one_before_it_waits_for_it(pool: Any) -> None:
    """Batch n reaching the database a moment before n - 1 (each goes on its own
    connection) waits for it instead of being turned away (sql/0015: ledger_take_turn)."""
    world = await make_world(pool)
    auction = world.auctions[0]
    async with running(pool) as sequencer:
        second, third = await batch_one_and_two_more(sequencer, world)
        writer = sequencer.writer
        overtaking = asyncio.create_task(writer._write_bids([third], 3))
        await asyncio.sleep(0.01)
        assert not overtaking.done()  # waiting for batch 2
        assert await writer._write_bids([second], 2) == "ok"
        assert await overtaking == "ok"
        writer._batches = 3
    await assert_one_two_three(pool, auction)


@given(leaders=st.integers(0, 80), others=st.integers(0, 80))
def test_a_batch_spreads_its_leaders_evenly_among_its_other_rows(leaders: int, others: int) -> None:
    """Each auction's leader (updated once, when outbid) is spread among the batch's
    rows, so that no page holds more leaders than its free space can take as
    heap-only updates: any k consecutive rows hold at most k * share + 1 of them."""
    leading = [("leader", i) for i in range(leaders)]
    outbid = [("outbid", i) for i in range(others)]
    rows = _spread(leading, among=outbid)
    assert [row for row in rows if row[0] == "leader"] == leading
    assert [row for row in rows if row[0] == "outbid"] == outbid
    flags = [row[0] == "leader" for row in rows]
    share = leaders / len(rows) if rows else 0
    for k in range(1, len(rows) + 1):
        densest = max(sum(flags[i : i + k]) for i in range(len(rows) - k + 1))
        assert densest <= k * share + 1


def test_a_batch_marks_each_auctions_last_bid_winning() -> None:
    """The rows written for a batch: every bid once, the last bid of each auction
    winning, the others not."""
    auctions = [uuid.uuid4() for _ in range(3)]
    bids = [
        DurableBid(
            id=uuid.uuid4(),
            auction_id=auctions[n % 3],
            user_id=uuid.uuid4(),
            amount_kobo=PRICE + n * STEP,
            at_ms=n,
            is_platform=False,
            client_bid_id=str(n),
            seq=n,
            end_time_ms=HOUR_MS,
            extended=False,
            min_next_bid_kobo=PRICE,
            bid_count=n,
            bidder_count=n,
            bidder_number=n,
            previous_leader=None,
            previous_amount_kobo=None,
        )
        for n in range(10)
    ]
    rows = _bid_rows(bids, _last_per_auction(bids))
    assert sorted(row[0] for row in rows) == sorted(bid.id for bid in bids)
    winning = {row[6] for row in rows if row[5]}
    assert winning == {"7", "8", "9"}  # the last bid on each of the three auctions


async def test_a_batch_waits_for_the_one_ahead_however_long_that_one_runs(pool: Any) -> None:
    """The writer sends batch n + 1 while n runs; PostgreSQL holds n + 1 on n's lock
    until n commits (sql/0015), not for a fixed number of looks (sql/0014 gave up
    after 50 of them, ~100 ms here, and turned it away as out of order)."""
    world = await make_world(pool)
    auction = world.auctions[0]
    async with running(pool) as sequencer:
        second, third = await batch_one_and_two_more(sequencer, world)
        writer = sequencer.writer
        async with pool.acquire() as conn:
            running_batch = conn.transaction()
            await running_batch.start()  # batch 2, still running: not committed
            leaders = {auction: second}
            assert (
                await conn.fetchval(
                    _WRITE_BIDS,
                    writer.epoch,
                    2,
                    _auction_rows([second], leaders),
                    _bid_rows([second], leaders),
                )
                == "ok"
            )
            behind = asyncio.create_task(writer._write_bids([third], 3))
            await asyncio.sleep(0.5)
            assert not behind.done()  # still waiting for batch 2
            await running_batch.commit()
        assert await asyncio.wait_for(behind, timeout=5) == "ok"
        writer._batches = 3
    await assert_one_two_three(pool, auction)


async def test_a_retried_batch_that_already_landed_is_not_written_twice(pool: Any) -> None:
    """Batches of bids are numbered per epoch and the ledger takes batch n only
    right after n - 1 (sql/0012): a retry of a batch whose COMMIT landed is told
    `written`; a batch whose predecessor is missing writes nothing; a refused batch
    leaves no trace, not even its number."""
    world = await make_world(pool, auctions=2)
    auction = world.auctions[0]
    async with running(pool) as sequencer:
        outcome = await sequencer.place_bid(auction, world.bidders[0], PRICE, "landed")
        assert isinstance(outcome, BidAccepted)
        bid = outcome.bid
        writer = sequencer.writer
        assert await writer._write_bids([bid], 1) == "written"  # batch 1 landed before
        unwritten = msgspec.structs.replace(
            bid, id=uuid.uuid4(), seq=bid.seq + 1, client_bid_id="x"
        )
        with pytest.raises(_OutOfOrder, match=r"batch 5 .* follows batch 1"):
            await writer._write_bids([unwritten], 5)
        stranger = msgspec.structs.replace(unwritten, auction_id=uuid.uuid4())
        with pytest.raises(LedgerConflict, match="does not hold"):
            await writer._write_bids([stranger], 2)
        assert await writer._write_bids([unwritten], 2) == "ok"  # 2 is still free
        writer._batches = 2
    rows = await ledger_bids(pool, auction)
    assert [(r["client_bid_id"], r["is_winning"]) for r in rows] == [
        ("landed", False),
        ("x", True),
    ]


async def test_a_batch_in_flight_behind_a_failed_one_is_never_written(pool: Any) -> None:
    """Pipelined batches: while batch n commits, n + 1 is already in PostgreSQL. If n
    fails, n + 1 must not land (its bids were decided on top of n's): both are
    refused, the bids queued behind them too, and the ledger keeps the prefix."""
    world = await make_world(pool)
    auction = world.auctions[0]
    await refuse_boom_bids(pool)
    async with running(pool, batch_max=1, window_ms=0) as sequencer:
        first = await sequencer.place_bid(auction, world.bidders[0], PRICE, "first")
        assert isinstance(first, BidAccepted)
        later = [
            msgspec.structs.replace(
                first.bid,
                id=uuid.uuid4(),
                seq=first.bid.seq + n,
                amount_kobo=PRICE + n * STEP,
                client_bid_id="boom" if n == 1 else f"later-{n}",
            )
            for n in (1, 2, 3)
        ]
        futures = [sequencer.writer.submit(bid) for bid in later]
        results = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), timeout=10
        )
        assert [type(result).__name__ for result in results] == ["LedgerUnavailable"] * 3
    rows = await ledger_bids(pool, auction)
    assert [r["client_bid_id"] for r in rows] == ["first"]
    await recover(pool)


async def test_a_long_queue_goes_out_as_two_batches_one_behind_the_other(pool: Any) -> None:
    """With nothing in flight, a queue of bids is split in two so that the second
    half is in PostgreSQL while the first half's bidders are answered; both land,
    in order."""
    world = await make_world(pool, bidders=2)
    auction = world.auctions[0]
    sizes: list[int] = []
    async with running(pool, window_ms=100) as sequencer:
        sequencer.subscribe(lambda bids: sizes.append(len(bids)))
        outcomes = await asyncio.gather(
            *(
                sequencer.place_bid(auction, world.bidders[n % 2], PRICE + n * STEP, f"b{n}")
                for n in range(200)
            )
        )
        await assert_ledger_matches(pool, sequencer, auction, list(outcomes))
    assert all(isinstance(outcome, BidAccepted) for outcome in outcomes)
    assert sizes == [100, 100]


async def test_a_connection_the_pool_cannot_reset_is_a_warning_not_a_lost_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The writer hands connections back to the pool without waiting (the pool
    resets each, a round trip); when that reset fails, as in an outage, it says so
    once and leaves no task whose error nobody reads. A fake pool: the outage itself
    is tests/test_faults_pg.py's, against a real PostgreSQL."""

    class Connection:
        async def fetchval(self, query: str, *args: Any) -> str:
            return "ok"

    class Pool:
        async def acquire(self) -> Connection:
            return Connection()

        async def release(self, connection: Connection) -> None:
            raise ConnectionResetError("the server closed the connection")

    a, b = uuid.uuid4(), uuid.uuid4()
    bid = DurableBid(
        id=uuid.uuid4(),
        auction_id=a,
        user_id=b,
        amount_kobo=PRICE,
        at_ms=now_ms(),
        is_platform=False,
        client_bid_id="c",
        seq=1,
        end_time_ms=now_ms() + HOUR_MS,
        extended=False,
        min_next_bid_kobo=PRICE + STEP,
        bid_count=1,
        bidder_count=1,
        bidder_number=1,
        previous_leader=None,
        previous_amount_kobo=None,
    )
    writer = LedgerWriter(Pool(), epoch=1, window_ms=0)  # type: ignore[arg-type]
    writer.start()
    with caplog.at_level(logging.WARNING):
        await writer.submit(bid)
        await writer.stop()
        gc.collect()  # an unread task error is reported when the task is collected
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "could not be reset" in caplog.records[0].getMessage()
