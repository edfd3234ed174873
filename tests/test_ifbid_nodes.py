"""The if-bid on several nodes (engine/allowances.py, engine/leases.py): the high
bidder stays exposed in the auction's partition, backed by its allowance, while
the seller decides — also after the partition moves to another node; a win
spends that allowance with the deposit it backed, a decline gives it back, and
a node that lost the partition writes nothing. PostgreSQL checks the bidder's
standing at every commit (tests/buying_power.py)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from engine.clock import ManualClock
from engine.decisions import SellerDecisions
from engine.errors import Fenced
from engine.ifbid import Acting
from engine.sequencer import Sequencer
from jobs.lifecycle import Lifecycle
from tests.buying_power import check
from tests.factories import create_auction, create_user
from tests.partition_helpers import fences, id_in, lease
from tests.test_allowances import DEPOSIT, PRICE, STEP, allowance, two_nodes

RESERVE = PRICE + 10 * STEP
PARTITION = 3  # the first node's (tests/test_allowances.py: ONE = 0–3)


async def deciding_auction(pool: Any) -> tuple[uuid.UUID, uuid.UUID]:
    """A live reserve auction in PARTITION; its seller."""
    seller = await create_user(pool, role="dealer")
    start = time.time_ns() // 1_000_000 - 1000
    auction = await create_auction(
        pool,
        seller=seller,
        start_ms=start,
        end_ms=start + 3_600_000,
        auction_type="reserve",
        reserve_kobo=RESERVE,
        auction_id=id_in(PARTITION),
    )
    return auction, seller


async def to_the_seller(pool: Any, node: Sequencer, auction: uuid.UUID, leader: uuid.UUID) -> None:
    lifecycle = Lifecycle(pool, node, ManualClock(time.time_ns() // 1_000_000))
    await node.close_auction(auction)
    result = await lifecycle.finish(auction, leader)
    assert result is not None and result.result == "seller_decision"


def pool_of(node: Sequencer, user: uuid.UUID) -> tuple[int, int]:
    """(allowance, exposure) of the user in PARTITION, as the node's core has them."""
    return node.core.allowance(node.registry.user_handle(user), PARTITION)


async def test_the_bidder_stays_exposed_in_the_partition_and_the_exposure_moves_with_it(
    pool: Any,
) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    auction, _ = await deciding_auction(pool)
    async with two_nodes(pool) as (first, second):
        await first.place_bid(auction, bidder, PRICE, "a")
        await to_the_seller(pool, first, auction, bidder)
        held_first = pool_of(first, bidder)
        first.drop_partitions({PARTITION})
        dropped = pool_of(first, bidder)
        await pool.execute(
            "UPDATE partition_leases SET lease_until = now() WHERE id = $1", PARTITION
        )
        await lease(pool, {PARTITION}, node="n2")
        second.fence_with(await fences(pool, "n2"))
        await second.adopt_partitions({PARTITION})
        held_second = pool_of(second, bidder)
        decision = second.decision_of(auction)
        async with pool.acquire() as conn:
            standing = await check(conn, bidder)

    assert held_first[1] == DEPOSIT and held_first[0] >= DEPOSIT
    assert dropped == (0, 0)
    assert held_second[1] == DEPOSIT and held_second[0] >= DEPOSIT
    assert decision == (bidder, PRICE)
    assert standing.exposure_kobo == DEPOSIT
    assert standing.problems(pooled=True) == []


async def test_an_accepted_if_bid_spends_the_allowance_that_backed_it(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    auction, seller = await deciding_auction(pool)
    async with two_nodes(pool) as (first, _):
        await first.place_bid(auction, bidder, PRICE, "a")
        await to_the_seller(pool, first, auction, bidder)
        granted = await allowance(pool, bidder, PARTITION)
        decisions = SellerDecisions(pool, first, ManualClock(time.time_ns() // 1_000_000))

        body = await decisions.act(auction, Acting(seller, "dealer"), "accept", None)
        core = pool_of(first, bidder)
        async with pool.acquire() as conn:
            standing = await check(conn, bidder)

    assert body.state == "accepted"
    assert standing.balance_kobo == 9 * DEPOSIT  # the hold left the wallet
    assert await allowance(pool, bidder, PARTITION) == granted - DEPOSIT  # and the allowance
    assert core == (granted - DEPOSIT, 0)
    assert standing.problems(pooled=True) == []


async def test_the_bidder_s_counter_widens_the_allowance_and_a_decline_gives_it_back(
    pool: Any,
) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    auction, seller = await deciding_auction(pool)
    counter = PRICE + 9 * STEP
    async with two_nodes(pool) as (first, _):
        await first.place_bid(auction, bidder, PRICE, "a")
        await to_the_seller(pool, first, auction, bidder)
        clock = ManualClock(time.time_ns() // 1_000_000)
        decisions = SellerDecisions(pool, first, clock)
        await decisions.act(auction, Acting(seller, "dealer"), "counter", RESERVE - STEP)
        # Give back what the grant's headroom held, so the counter must widen it.
        await first.release_allowances(bidder)
        before = pool_of(first, bidder)

        await decisions.act(auction, Acting(bidder, "user"), "counter", counter)
        raised = pool_of(first, bidder)
        await decisions.act(auction, Acting(seller, "dealer"), "decline", None)
        after = pool_of(first, bidder)
        async with pool.acquire() as conn:
            standing = await check(conn, bidder)

    deposit_counter = counter // 5
    assert before == (DEPOSIT, DEPOSIT)
    assert raised[1] == deposit_counter and raised[0] >= deposit_counter
    assert after == (0, 0)  # exposure gone, the allowance given back
    assert await allowance(pool, bidder, PARTITION) == 0
    assert standing.balance_kobo == 10 * DEPOSIT
    assert standing.problems(pooled=True) == []


async def test_a_node_that_lost_the_partition_writes_no_step(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    auction, seller = await deciding_auction(pool)
    async with two_nodes(pool) as (first, _):
        await first.place_bid(auction, bidder, PRICE, "a")
        await to_the_seller(pool, first, auction, bidder)
        await pool.execute(
            "UPDATE partition_leases SET owner = 'z', epoch = epoch + 1 WHERE id = $1", PARTITION
        )
        before = await pool.fetchrow("SELECT * FROM if_bids WHERE auction_id = $1", auction)
        decisions = SellerDecisions(pool, first, ManualClock(time.time_ns() // 1_000_000))

        with pytest.raises(Fenced):
            await decisions.act(auction, Acting(seller, "dealer"), "decline", None)
        expired_clock = ManualClock(time.time_ns() // 1_000_000 + 48 * 3_600_000)
        late = SellerDecisions(pool, first, expired_clock)
        with pytest.raises(Fenced):
            await late.expire(auction, expired_clock.now_ms())
        after = await pool.fetchrow("SELECT * FROM if_bids WHERE auction_id = $1", auction)
        status = await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction)

    assert after == before
    assert status == "seller_decision"
