"""A node of several decides only for the partitions it holds leases on
(engine/sequencer.py, engine/recovery.py): it loads and claims just their open
auctions, refuses bids on the others' `unavailable` (never remembered, never a
rule's refusal), takes a partition's auctions into its running core when it
leases one more, and lets a partition's auctions go at once when it stops
deciding for it, releasing what they exposed."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from engine.bids import BidAccepted, BidRejected
from engine.partitions import partition_of, settle_partitions
from engine.recovery import Held
from engine.sequencer import Sequencer
from tests.factories import create_auction, create_user

PARTITIONS = 8
PRICE = 100_000_000  # the factory's start price
HOUR_MS = 3_600_000


def id_in(partition: int) -> uuid.UUID:
    while partition_of(candidate := uuid.uuid4(), PARTITIONS) != partition:
        pass
    return candidate


async def auction_in(pool: Any, partition: int) -> uuid.UUID:
    seller = await create_user(pool, role="dealer")
    start = time.time_ns() // 1_000_000 - 1000
    return await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS, auction_id=id_in(partition)
    )


@contextlib.asynccontextmanager
async def node(pool: Any, partitions: set[int]) -> AsyncIterator[Sequencer]:
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
    sequencer = await Sequencer.open(pool, held=Held(PARTITIONS, frozenset(partitions)))
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
        loaded = await sequencer.adopt_partitions({6})
        retried = await sequencer.place_bid(theirs, bidder, PRICE, "again")  # same id

        assert loaded == [theirs]
        assert isinstance(retried, BidAccepted)  # the refusal was not remembered
        assert await epochs(pool, theirs) == [sequencer.writer.epoch]
        assert sequencer.partitions == Held(PARTITIONS, frozenset({0, 6}))


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
