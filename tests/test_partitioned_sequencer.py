"""A node of several decides only for the partitions it holds leases on
(engine/sequencer.py, engine/recovery.py): it loads and claims just their open
auctions, refuses bids on the others' `unavailable` (never remembered, never a
rule's refusal), takes a partition's auctions into its running core when it
leases one more, and lets a partition's auctions go at once when it stops
deciding for it, releasing what they exposed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from engine.bids import BidAccepted, BidRejected
from engine.clock import SystemClock
from engine.leases import LeaseTable
from engine.partitions import settle_partitions
from engine.recovery import Held
from engine.sequencer import Sequencer
from jobs.lifecycle import Lifecycle
from tests.factories import create_user
from tests.fault_helpers import wait_until
from tests.partition_helpers import (
    NODE,
    PARTITIONS,
    allow,
    auction_in,
    fences,
    lease,
)

PRICE = 100_000_000  # the factory's start price


@contextlib.asynccontextmanager
async def node(pool: Any, partitions: set[int]) -> AsyncIterator[Sequencer]:
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
    await lease(pool, partitions)
    sequencer = await Sequencer.open(pool, held=Held(PARTITIONS, frozenset(partitions), NODE))
    sequencer.fence_with(await fences(pool, NODE))
    try:
        yield sequencer
    finally:
        await sequencer.close()


async def epochs(pool: Any, *auctions: uuid.UUID) -> list[int]:
    rows = await pool.fetch("SELECT id, epoch FROM auctions WHERE id = ANY($1::uuid[])", auctions)
    by_id = {row["id"]: row["epoch"] for row in rows}
    return [by_id[a] for a in auctions]


async def test_a_node_loads_and_claims_only_its_partitions_auctions(pool: Any) -> None:
    mine, theirs = await auction_in(pool, 1), await auction_in(pool, 6)
    bidder = await create_user(pool, balance_kobo=10**12)

    async with node(pool, {0, 1, 2, 3}) as sequencer:
        assert sequencer.held(mine) is not None and sequencer.held(theirs) is None
        assert await epochs(pool, mine, theirs) == [sequencer.writer.epoch, 0]
        refused = await sequencer.place_bid(theirs, bidder, PRICE, "b1")
        assert isinstance(refused, BidRejected) and refused.code == "unavailable"
        assert not sequencer.decides(theirs) and sequencer.decides(mine)
        accepted = await sequencer.place_bid(mine, bidder, PRICE, "b2")
        assert isinstance(accepted, BidAccepted)

    assert await pool.fetchval("SELECT count(*) FROM bids WHERE auction_id = $1", theirs) == 0


async def test_a_partition_taken_later_is_loaded_and_its_bids_decided(pool: Any) -> None:
    theirs = await auction_in(pool, 6)
    bidder = await create_user(pool, balance_kobo=10**12)

    async with node(pool, {0}) as sequencer:
        first = await sequencer.place_bid(theirs, bidder, PRICE, "again")
        assert isinstance(first, BidRejected) and first.code == "unavailable"
        await lease(pool, {6})
        sequencer.fence_with(await fences(pool, NODE))
        loaded = await sequencer.adopt_partitions({6})
        retried = await sequencer.place_bid(theirs, bidder, PRICE, "again")  # same id

        assert loaded == [theirs]
        assert isinstance(retried, BidAccepted)  # the refusal was not remembered
        assert await epochs(pool, theirs) == [sequencer.writer.epoch]
        assert sequencer.partitions == Held(PARTITIONS, frozenset({0, 6}), NODE)


async def test_a_dropped_partition_leaves_the_core_and_frees_its_exposure(pool: Any) -> None:
    mine, dropped = await auction_in(pool, 2), await auction_in(pool, 5)
    bidder = await create_user(pool, balance_kobo=10**12)

    async with node(pool, {2, 5}) as sequencer:
        handle = sequencer.registry.user_handle(bidder)
        assert isinstance(await sequencer.place_bid(mine, bidder, PRICE, "m"), BidAccepted)
        assert isinstance(await sequencer.place_bid(dropped, bidder, PRICE, "d"), BidAccepted)
        deposit = PRICE // 5
        assert sequencer.core.user(handle).exposure_kobo == 2 * deposit

        gone = sequencer.drop_partitions({5})
        retry = await sequencer.place_bid(dropped, bidder, PRICE, "d")  # the same bid again
        other = await sequencer.place_bid(dropped, bidder, PRICE + 5_000_000, "d2")

        assert gone == [dropped]
        assert sequencer.held(dropped) is None and sequencer.held(mine) is not None
        assert sequencer.core.user(handle).exposure_kobo == deposit
        # the acknowledged bid is still answered as itself, from the ledger
        assert isinstance(retry, BidAccepted) and retry.bid.amount_kobo == PRICE
        assert isinstance(other, BidRejected) and other.code == "unavailable"


async def test_loads_of_one_auction_at_once_take_it_in_once(pool: Any) -> None:
    async with node(pool, {3}) as sequencer:
        made = await auction_in(pool, 3)  # made after the node started: not yet in its core
        loads = [sequencer.load_auction(made) for _ in range(4)]

        assert await asyncio.gather(*loads, sequencer.adopt_strays()) == [True] * 4 + [[]]
        assert sequencer.registry.auction_ids().count(made) == 1
        assert await sequencer.load_auction(made)  # and again, once it is in


async def test_a_load_finishing_after_its_partition_left_is_let_go(pool: Any) -> None:
    async with node(pool, {4}) as sequencer:
        made = await auction_in(pool, 4)
        loading = asyncio.create_task(sequencer.load_auction(made))
        await asyncio.sleep(0)  # the load is waiting on the ledger
        sequencer.drop_partitions({4})

        assert await loading is False
        assert sequencer.held(made) is None and made not in sequencer.registry.auction_ids()


async def test_a_node_claims_no_partition_whose_lease_is_not_its_own(pool: Any) -> None:
    """A claim relies on the lease rows it locks, not on what the node believes."""
    kept, taken, unleased = [await auction_in(pool, p) for p in (1, 2, 7)]
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
    await lease(pool, {1, 2})
    other = LeaseTable(pool, "n2", "http://n2")
    assert await other.take(2) is None  # n1's lease has not lapsed
    await pool.execute("UPDATE partition_leases SET lease_until = now() WHERE id = 2")
    assert await other.take(2) is not None  # lapsed: n2 takes it

    believed = Held(PARTITIONS, frozenset({1, 2, 7}), NODE)
    sequencer = await Sequencer.open(pool, held=believed)
    try:
        assert sequencer.partitions == Held(PARTITIONS, frozenset({1}), NODE)
        assert sequencer.held(kept) is not None
        assert sequencer.held(taken) is None and sequencer.held(unleased) is None
        assert await epochs(pool, kept, taken, unleased) == [sequencer.writer.epoch, 0, 0]
        assert await sequencer.adopt_partitions({2, 7}) == []
        assert not await sequencer.load_auction(taken)
        assert sequencer.partitions == Held(PARTITIONS, frozenset({1}), NODE)
    finally:
        await sequencer.close()


async def test_a_batch_fenced_by_a_partitions_new_owner_costs_that_partition_only(
    pool: Any,
) -> None:
    """A node of several whose lease lapsed unnoticed (its ticks did not run) keeps
    deciding; the new owner's claim fences its batch: the bid is answered
    `unavailable` and never written, the node rebuilds without that partition and
    goes on deciding for the others (alone, a fenced writer stops for good)."""
    kept, lost = await auction_in(pool, 1), await auction_in(pool, 2)
    bidder = await create_user(pool, balance_kobo=10**12)
    # allowances granted earlier: the stale node decides with no round trip
    await allow(pool, bidder, {1: 10**11, 2: 10**11})
    async with node(pool, {1, 2}) as first:
        await pool.execute("UPDATE partition_leases SET lease_until = now() WHERE id = 2")
        await lease(pool, {2}, node="n2")
        second = await Sequencer.open(pool, held=Held(PARTITIONS, frozenset({2}), "n2"))
        second.fence_with(await fences(pool, "n2"))
        try:
            fenced = await first.place_bid(lost, bidder, PRICE, "f")
            await first.flush()
            # the rebuild runs in the writer's task
            await wait_until(lambda: first.available, 10, "the rebuild")
            after = await first.place_bid(kept, bidder, PRICE, "k")
            taken = await second.place_bid(lost, bidder, PRICE, "f")  # the retry, at the owner

            assert isinstance(fenced, BidRejected) and fenced.code == "unavailable"
            assert not first.writer.fenced
            assert first.partitions == Held(PARTITIONS, frozenset({1}), NODE)
            assert first.held(lost) is None
            assert isinstance(after, BidAccepted) and isinstance(taken, BidAccepted)
            assert await epochs(pool, kept, lost) == [first.writer.epoch, second.writer.epoch]
        finally:
            await second.close()
    counts = await pool.fetch(
        "SELECT auction_id, count(*) FROM bids WHERE auction_id = ANY($1::uuid[])"
        " GROUP BY auction_id",
        [kept, lost],
    )
    assert {row["auction_id"]: row["count"] for row in counts} == {kept: 1, lost: 1}
    # each row carries the epoch it was written under (sql/0024): each node's own
    written = dict(await pool.fetch("SELECT auction_id, epoch FROM bids"))
    assert written == {kept: first.writer.epoch, lost: second.writer.epoch}


async def test_a_bid_acknowledged_before_a_move_is_answered_as_itself_after_it(
    pool: Any,
) -> None:
    """The new owner of a partition knows the idempotency keys of the bids already
    in the ledger: a retry is that bid, not a second one (nor a refusal)."""
    auction = await auction_in(pool, 5)
    bidder = await create_user(pool, balance_kobo=10**12)
    async with node(pool, {5}) as first:
        acked = await first.place_bid(auction, bidder, PRICE, "once")
        first.drop_partitions({5})
    async with node(pool, {0}) as second:
        await pool.execute("UPDATE partition_leases SET lease_until = now() WHERE id = 5")
        await lease(pool, {5})
        await second.adopt_partitions({5})
        retried = await second.place_bid(auction, bidder, PRICE, "once")

    assert isinstance(acked, BidAccepted) and isinstance(retried, BidAccepted)
    assert retried.bid.id == acked.bid.id


async def test_end_processing_is_fenced_and_swept_by_the_partitions_owner(pool: Any) -> None:
    """End processing checks the partition's lease in its transaction: a node
    whose partition moved leaves an ended auction alone, its new owner's sweep
    finishes it, once."""
    auction = await auction_in(pool, 3)
    async with node(pool, {3}) as first:
        first.fence_with(await fences(pool, NODE))
        await pool.execute("UPDATE auctions SET status = 'ended' WHERE id = $1", auction)
        await pool.execute("UPDATE partition_leases SET lease_until = now() WHERE id = 3")
        await lease(pool, {3}, node="n2")
        second = await Sequencer.open(pool, held=Held(PARTITIONS, frozenset({3}), "n2"))
        second.fence_with(await fences(pool, "n2"))
        try:
            stale = await Lifecycle(pool, first, SystemClock()).end(auction, None)
            status = await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction)
            swept = await Lifecycle(pool, second, SystemClock()).sweep_ended()
        finally:
            await second.close()

    assert stale is None and status == "ended"
    assert [result.auction_id for result in swept] == [auction]
    assert await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == "unsold"
