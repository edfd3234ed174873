"""Maximum (proxy) bids through the engine: decided by the core, durable before
they are acknowledged (a maximum with the rows it placed, a bid with the proxy
answering it, an opening with its pre-bids' rows: each one transaction),
idempotent by client_bid_id in the bids' namespace, and rebuilt by recovery
exactly as the core held them."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from engine.bids import BidAccepted, DurableBid, MaxAccepted
from engine.clock import ManualClock
from engine.money import naira_to_kobo
from engine.sequencer import Sequencer
from tests.factories import create_auction, create_user

HOUR_MS = 3_600_000
PRICE = 100_000_000  # the factory's start price
STEP = 5_000_000  # the factory's increment
RICH = 10**12


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextlib.asynccontextmanager
async def engine(pool: Any, **options: Any) -> AsyncIterator[Sequencer]:
    sequencer = await Sequencer.open(pool, **options)
    try:
        yield sequencer
    finally:
        await sequencer.close()


async def live_auction(pool: Any, **fields: Any) -> uuid.UUID:
    seller = await create_user(pool, role="dealer")
    start = now_ms() - 1000
    return await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS, **fields
    )


def exposure_of(sequencer: Sequencer, user: uuid.UUID) -> int:
    exposure: int = sequencer.core.user(sequencer.registry.user_handle(user)).exposure_kobo
    return exposure


async def rows(pool: Any, auction: uuid.UUID) -> list[tuple[uuid.UUID, int, bool]]:
    found = await pool.fetch(
        "SELECT user_id, amount, is_proxy FROM bids WHERE auction_id = $1 ORDER BY seq", auction
    )
    return [(r["user_id"], naira_to_kobo(r["amount"]), r["is_proxy"]) for r in found]


async def test_a_maximum_is_durable_with_the_rows_it_placed_before_it_is_acknowledged(
    pool: Any,
) -> None:
    auction = await live_auction(pool)
    a, b = await create_user(pool, balance_kobo=RICH), await create_user(pool, balance_kobo=RICH)
    seen: list[DurableBid] = []
    async with engine(pool) as sequencer:
        sequencer.subscribe(seen.extend)
        first = await sequencer.set_max(auction, a, PRICE + 10 * STEP, "a-max")
        ledger_after_ack = await rows(pool, auction)
        passed = await sequencer.set_max(auction, b, PRICE + 20 * STEP, "b-max")
    assert isinstance(first, MaxAccepted) and isinstance(passed, MaxAccepted)
    assert (first.max.leading, first.max.price_kobo) == (True, PRICE)
    assert ledger_after_ack == [(a, PRICE, True)]
    # B's maximum meets A's in full, then passes it by one increment.
    assert (passed.max.leading, passed.max.price_kobo) == (True, PRICE + 11 * STEP)
    assert await rows(pool, auction) == [
        (a, PRICE, True),
        (a, PRICE + 10 * STEP, True),
        (b, PRICE + 11 * STEP, True),
    ]
    assert [(bid.user_id, bid.amount_kobo, bid.is_proxy) for bid in seen] == await rows(
        pool, auction
    )
    maxes = await pool.fetch(
        "SELECT user_id, max_amount, client_bid_id FROM max_bids ORDER BY position"
    )
    assert [(m["user_id"], naira_to_kobo(m["max_amount"]), m["client_bid_id"]) for m in maxes] == [
        (a, PRICE + 10 * STEP, "a-max"),
        (b, PRICE + 20 * STEP, "b-max"),
    ]


async def test_a_bid_under_the_leaders_maximum_is_answered_in_the_same_transaction(
    pool: Any,
) -> None:
    auction = await live_auction(pool)
    a, b = await create_user(pool, balance_kobo=RICH), await create_user(pool, balance_kobo=RICH)
    async with engine(pool) as sequencer:
        await sequencer.set_max(auction, a, PRICE + 10 * STEP)
        outcome = await sequencer.place_bid(auction, b, PRICE + 4 * STEP, "b-1")
        state = sequencer.held(auction)
    assert isinstance(outcome, BidAccepted)  # accepted, then outbid by the proxy
    assert await rows(pool, auction) == [
        (a, PRICE, True),
        (b, PRICE + 4 * STEP, False),
        (a, PRICE + 5 * STEP, True),
    ]
    assert state is not None and state.leader_max_kobo == PRICE + 10 * STEP
    winning = await pool.fetch(
        "SELECT user_id FROM bids WHERE auction_id = $1 AND is_winning", auction
    )
    assert [w["user_id"] for w in winning] == [a]


async def test_a_maximum_is_idempotent_in_the_bids_namespace(pool: Any) -> None:
    auction = await live_auction(pool)
    a = await create_user(pool, balance_kobo=RICH)
    async with engine(pool) as sequencer:
        first = await sequencer.set_max(auction, a, PRICE + 10 * STEP, "same")
        again = await sequencer.set_max(auction, a, PRICE + 30 * STEP, "same")
        as_bid = await sequencer.place_bid(auction, a, PRICE + 40 * STEP, "same")
        bid = await sequencer.place_bid(auction, a, PRICE + 40 * STEP, "other")
        as_max = await sequencer.set_max(auction, a, PRICE + 90 * STEP, "other")
    assert isinstance(first, MaxAccepted) and again == first
    assert (as_bid.accepted, getattr(as_bid, "code", None)) == (False, "client_bid_id_reused")
    assert (bid.accepted, getattr(bid, "code", None)) == (False, "already_leading")
    assert (as_max.accepted, getattr(as_max, "code", None)) == (False, "already_leading")
    assert await pool.fetchval("SELECT count(*) FROM max_bids") == 1


async def test_a_maximum_refused_changes_nothing_and_says_the_least_it_may_be(pool: Any) -> None:
    auction = await live_auction(pool)
    a = await create_user(pool, balance_kobo=RICH)
    poor = await create_user(pool, balance_kobo=PRICE // 5)  # covers deposit(PRICE) alone
    async with engine(pool) as sequencer:
        low = await sequencer.set_max(auction, a, PRICE - 1)
        short = await sequencer.set_max(auction, poor, PRICE * 2)
        state = sequencer.held(auction)
    assert (low.accepted, getattr(low, "code", None)) == (False, "below_minimum")
    assert "at least ₦1,000,000.00" in getattr(low, "message", "")
    assert getattr(short, "code", None) == "insufficient_buying_power"
    assert state is not None and state.leader is None
    assert await pool.fetchval("SELECT count(*) FROM max_bids") == 0
    assert await rows(pool, auction) == []


async def test_recovery_rebuilds_the_leaders_maximum_and_the_pre_bids(pool: Any) -> None:
    live = await live_auction(pool)
    seller = await create_user(pool, role="dealer")
    start = now_ms() + HOUR_MS
    scheduled = await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS, status="scheduled"
    )
    a, b, c = [await create_user(pool, balance_kobo=RICH) for _ in range(3)]
    async with engine(pool) as sequencer:
        await sequencer.set_max(live, a, PRICE + 10 * STEP)
        await sequencer.place_bid(live, b, PRICE + 2 * STEP)  # answered by a's proxy
        await sequencer.set_max(scheduled, b, PRICE + 7 * STEP)
        await sequencer.set_max(scheduled, c, PRICE + 7 * STEP)  # equal: b set it first
        before = (sequencer.held(live), sequencer.held(scheduled))
        exposure = {
            u: sequencer.core.user(sequencer.registry.user_handle(u)).exposure_kobo
            for u in (a, b, c)
        }
    async with engine(pool) as rebuilt:  # recovery verifies core = ledger, exposure too
        after = (rebuilt.held(live), rebuilt.held(scheduled))
        again = {
            u: rebuilt.core.user(rebuilt.registry.user_handle(u)).exposure_kobo for u in (a, b, c)
        }
        registry = rebuilt.registry
        prebids = [(registry.user_id(h), m) for h, m in after[1].prebids] if after[1] else []
    assert before[0] is not None and after[0] is not None
    assert after[0].leader_max_kobo == before[0].leader_max_kobo == PRICE + 10 * STEP
    assert after[0].current_price_kobo == PRICE + 3 * STEP
    assert prebids == [(b, PRICE + 7 * STEP), (c, PRICE + 7 * STEP)]
    assert again == exposure
    assert exposure[b] == (PRICE + 7 * STEP) // 5 and exposure[c] == 0


async def test_an_opening_writes_its_pre_bids_rows_with_the_state_change(pool: Any) -> None:
    seller = await create_user(pool, role="dealer")
    start = now_ms() + 10_000
    auction = await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS, status="scheduled"
    )
    a, b = await create_user(pool, balance_kobo=RICH), await create_user(pool, balance_kobo=RICH)
    clock = ManualClock(now_ms())
    async with engine(pool, clock=clock) as sequencer:
        await sequencer.set_max(auction, a, PRICE + 10 * STEP)
        await sequencer.set_max(auction, b, PRICE + 4 * STEP)
        clock.set(start)
        change = await sequencer.open_auction(auction)
        epoch = sequencer.writer.epoch
    # the rows carry the epoch they were written under (sql/0024), COPY'd here
    epochs = await pool.fetch("SELECT DISTINCT epoch FROM bids WHERE auction_id = $1", auction)
    assert [row["epoch"] for row in epochs] == [epoch]
    assert [(bid.user_id, bid.amount_kobo) for bid in change.bids] == [
        (b, PRICE + 4 * STEP),
        (a, PRICE + 5 * STEP),
    ]
    assert await rows(pool, auction) == [(b, PRICE + 4 * STEP, True), (a, PRICE + 5 * STEP, True)]
    row = await pool.fetchrow(
        "SELECT status, current_price, last_seq FROM auctions WHERE id = $1", auction
    )
    assert (row["status"], naira_to_kobo(row["current_price"])) == ("live", PRICE + 5 * STEP)
    assert row["last_seq"] == change.bids[-1].seq == change.seq + 2


async def test_each_bidders_latest_maximum_is_known_once_committed_and_after_recovery(
    pool: Any,
) -> None:
    auction = await live_auction(pool)
    a, b = await create_user(pool, balance_kobo=RICH), await create_user(pool, balance_kobo=RICH)
    heard: list[tuple[str, Any]] = []
    async with engine(pool) as sequencer:
        sequencer.subscribe(lambda bids: heard.append(("bids", len(bids))))
        sequencer.subscribe_maxes(
            lambda m: heard.append(("max", (m.user_id, sequencer.max_of(auction, m.user_id))))
        )
        assert sequencer.max_of(auction, a) is None
        await sequencer.set_max(auction, a, PRICE + 10 * STEP)
        await sequencer.set_max(auction, b, PRICE + 20 * STEP)  # passes a's
        await sequencer.set_max(auction, b, PRICE + 30 * STEP)  # a raise: no rows
        mine = (sequencer.max_of(auction, a), sequencer.max_of(auction, b))
        available = (sequencer.available_of(a), sequencer.available_of(b))
        assert sequencer.available_of(uuid.uuid4()) is None
    # A maximum's listeners hear it once its rows were told, the maximum already known.
    assert heard == [
        ("bids", 1),
        ("max", (a, PRICE + 10 * STEP)),
        ("bids", 2),
        ("max", (b, PRICE + 20 * STEP)),
        ("max", (b, PRICE + 30 * STEP)),
    ]
    # a's maximum was passed and is still a's latest; only b's binds.
    assert mine == (PRICE + 10 * STEP, PRICE + 30 * STEP)
    assert available == (RICH, RICH - (PRICE + 30 * STEP) // 5)
    async with engine(pool) as rebuilt:
        assert (rebuilt.max_of(auction, a), rebuilt.max_of(auction, b)) == mine
        await rebuilt.close_auction(auction)
        rebuilt.forget_auction(auction)
        assert rebuilt.max_of(auction, b) is None  # only for auctions the core holds


async def test_a_pre_bid_is_marked_as_one(pool: Any) -> None:
    seller = await create_user(pool, role="dealer")
    start = now_ms() + HOUR_MS
    scheduled = await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS, status="scheduled"
    )
    live = await live_auction(pool)
    a = await create_user(pool, balance_kobo=RICH)
    async with engine(pool) as sequencer:
        prebid = await sequencer.set_max(scheduled, a, PRICE + STEP)
        on_live = await sequencer.set_max(live, a, PRICE + STEP)
    assert isinstance(prebid, MaxAccepted) and isinstance(on_live, MaxAccepted)
    assert (prebid.max.prebid, prebid.max.bids) == (True, ())
    assert (on_live.max.prebid, len(on_live.max.bids)) == (False, 1)


async def test_a_maximum_sent_again_after_a_restart_says_where_it_stands_now(pool: Any) -> None:
    live = await live_auction(pool)
    seller = await create_user(pool, role="dealer")
    start = now_ms() + HOUR_MS
    scheduled = await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS, status="scheduled"
    )
    a, b = await create_user(pool, balance_kobo=RICH), await create_user(pool, balance_kobo=RICH)
    async with engine(pool) as sequencer:
        await sequencer.set_max(live, a, PRICE + 10 * STEP, "a-live")
        await sequencer.place_bid(live, b, PRICE + 2 * STEP)  # answered at PRICE + 3 steps
        await sequencer.set_max(scheduled, a, PRICE + 4 * STEP, "a-pre")
        await sequencer.set_max(scheduled, b, PRICE + 2 * STEP, "b-pre")
    async with engine(pool) as restarted:  # the ledger keeps maximums, not where they stood
        again = [
            await restarted.set_max(live, a, PRICE + 10 * STEP, "a-live"),
            await restarted.set_max(scheduled, a, PRICE + 4 * STEP, "a-pre"),
            await restarted.set_max(scheduled, b, PRICE + 2 * STEP, "b-pre"),
        ]
    assert all(isinstance(outcome, MaxAccepted) for outcome in again)
    assert [
        (o.max.max_kobo, o.max.leading, o.max.price_kobo)
        for o in again
        if isinstance(o, MaxAccepted)
    ] == [
        (PRICE + 10 * STEP, True, PRICE + 3 * STEP),
        (PRICE + 4 * STEP, True, PRICE + 3 * STEP),  # where the pre-bids would open
        (PRICE + 2 * STEP, False, PRICE + 3 * STEP),
    ]
    assert await pool.fetchval("SELECT count(*) FROM max_bids") == 3
