"""Buying power across nodes (engine/allowances.py): two in-process nodes on one
PostgreSQL, each deciding its partitions against the allowances it holds. A
bidder's deposits across both never pass their balance, a bidder active in one
partition asks the ledger once for several bids, what one node holds idle goes
to the other when needed, withdrawals and holds count allowances, and
allowances move with their partitions. (The other node is reached through a
stand-in here; tests/test_cluster.py runs the real peer sockets.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine import metrics
from engine.bids import BidAccepted, BidRejected, MaxAccepted
from engine.clock import SystemClock
from engine.errors import Refused
from engine.partitions import settle_partitions
from engine.recovery import Held
from engine.sequencer import Sequencer
from engine.wallet import WalletChange, debit, read_wallet
from jobs.lifecycle import Lifecycle
from tests.buying_power import check, install_commit_checks, violations
from tests.factories import create_auction, create_user
from tests.partition_helpers import PARTITIONS, auction_in, fences, id_in, lease

PRICE = 100_000_000  # the factory's start price
STEP = 5_000_000
DEPOSIT = 20_000_000  # deposit(PRICE) at the factory's 20 %
ONE = frozenset({0, 1, 2, 3})
TWO = frozenset({4, 5, 6, 7})


class OtherNodes:
    """engine.sequencer.Elsewhere between in-process nodes: only what allowances use."""

    def __init__(self) -> None:
        self.nodes: list[Sequencer] = []
        self.asked = 0

    async def load_auction(self, auction_id: uuid.UUID) -> bool:
        return False

    async def user_changed(self, user_id: uuid.UUID) -> None:
        return None

    async def release_allowances(self, user_id: uuid.UUID) -> None:
        self.asked += 1
        for node in self.nodes:
            await node.release_allowances(user_id)


@contextlib.asynccontextmanager
async def two_nodes(pool: Any) -> AsyncIterator[tuple[Sequencer, Sequencer]]:
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
        await install_commit_checks(conn)
    await lease(pool, set(ONE), node="n1")
    await lease(pool, set(TWO), node="n2")
    first = await Sequencer.open(pool, held=Held(PARTITIONS, ONE, "n1"))
    second = await Sequencer.open(pool, held=Held(PARTITIONS, TWO, "n2"))
    for node, name, other in ((first, "n1", second), (second, "n2", first)):
        node.fence_with(await fences(pool, name))
        elsewhere = OtherNodes()
        elsewhere.nodes.append(other)
        node.reach(elsewhere)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()
    async with pool.acquire() as conn:
        assert await violations(conn) == []


async def allowance(pool: Any, user: uuid.UUID, partition: int) -> int:
    amount = await pool.fetchval(
        "SELECT amount_kobo FROM allowances WHERE user_id = $1 AND partition = $2",
        user,
        partition,
    )
    return int(amount or 0)


def grants(result: str) -> float:
    return metrics.ALLOWANCE_GRANTS.labels(result)._value.get()


async def test_a_bidder_in_one_partition_asks_the_ledger_once_for_several_bids(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=100 * DEPOSIT)
    auctions = [await auction_in(pool, 1) for _ in range(2)]
    async with two_nodes(pool) as (first, _):
        before = grants("granted")
        placed = [await first.place_bid(a, bidder, PRICE, f"b{n}") for n, a in enumerate(auctions)]
        asked = grants("granted") - before

    assert all(isinstance(outcome, BidAccepted) for outcome in placed)
    assert asked == 1  # the first bid's grant had room for the second
    assert await allowance(pool, bidder, 1) == 50 * DEPOSIT  # half the free balance


async def test_a_bidder_whose_exposure_grows_tenfold_asks_the_ledger_once(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=100 * DEPOSIT)
    auctions = [await auction_in(pool, 1) for _ in range(10)]
    async with two_nodes(pool) as (first, _):
        before = grants("granted")
        placed = [await first.place_bid(a, bidder, PRICE, f"b{n}") for n, a in enumerate(auctions)]
        asked = grants("granted") - before

    assert all(isinstance(outcome, BidAccepted) for outcome in placed)
    assert asked == 1  # ten deposits, not one grant per doubling (1, 2, 4, 8)


async def test_a_second_partition_is_granted_from_what_the_first_left_free(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=100 * DEPOSIT)
    one, five = await auction_in(pool, 1), await auction_in(pool, 5)
    async with two_nodes(pool) as (first, second):
        here = await first.place_bid(one, bidder, PRICE, "b1")
        there = await second.place_bid(five, bidder, PRICE, "b2")

    assert isinstance(here, BidAccepted) and isinstance(there, BidAccepted)
    assert await allowance(pool, bidder, 1) == 50 * DEPOSIT
    assert await allowance(pool, bidder, 5) == 25 * DEPOSIT  # half of what was left


async def test_deposits_across_nodes_never_pass_the_balance(pool: Any) -> None:
    """Two deposits of balance: one lead on each node, a third refused on either;
    outbid on one node, the other node may take that deposit's room."""
    bidder = await create_user(pool, balance_kobo=2 * DEPOSIT)
    rival = await create_user(pool, balance_kobo=100 * DEPOSIT)
    here, there, third, fourth = [await auction_in(pool, p) for p in (1, 5, 6, 2)]
    async with two_nodes(pool) as (first, second):
        assert isinstance(await first.place_bid(here, bidder, PRICE, "a"), BidAccepted)
        assert isinstance(await second.place_bid(there, bidder, PRICE, "b"), BidAccepted)
        refused = await second.place_bid(third, bidder, PRICE, "c")
        refused_here = await first.place_bid(fourth, bidder, PRICE, "d")
        assert isinstance(await first.place_bid(here, rival, PRICE + STEP, "r"), BidAccepted)
        taken = await second.place_bid(third, bidder, PRICE, "c2")
        async with pool.acquire() as conn:
            standing = await check(conn, bidder)

    assert isinstance(refused, BidRejected) and refused.code == "insufficient_buying_power"
    assert isinstance(refused_here, BidRejected)
    assert refused_here.code == "insufficient_buying_power"
    assert isinstance(taken, BidAccepted)  # node 1 gave back what `here` no longer exposed
    assert standing.exposure_kobo == 2 * DEPOSIT == standing.balance_kobo
    assert standing.problems(pooled=True) == []


async def test_a_maximum_is_backed_by_its_partitions_allowance(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=3 * DEPOSIT)
    auction, elsewhere = await auction_in(pool, 2), await auction_in(pool, 6)
    async with two_nodes(pool) as (first, second):
        assert isinstance(await second.place_bid(elsewhere, bidder, PRICE, "e"), BidAccepted)
        too_high = await first.set_max(auction, bidder, 3 * PRICE, "m1")
        fits = await first.set_max(auction, bidder, 2 * PRICE, "m2")
        async with pool.acquire() as conn:
            standing = await check(conn, bidder)

    assert isinstance(too_high, BidRejected) and too_high.code == "insufficient_buying_power"
    assert isinstance(fits, MaxAccepted)
    assert standing.exposure_kobo == 3 * DEPOSIT  # deposit(2 × PRICE) + deposit(PRICE)
    assert standing.problems(pooled=True) == []


async def test_a_withdrawal_waits_for_what_allowances_back_and_gets_the_rest(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    rival = await create_user(pool, balance_kobo=100 * DEPOSIT)
    auction = await auction_in(pool, 5)
    async with two_nodes(pool) as (first, second):
        await second.place_bid(auction, bidder, PRICE, "a")
        with pytest.raises(Refused) as leading:
            await debit(pool, first, bidder, WalletChange(DEPOSIT, "w-1"))
        await second.place_bid(auction, rival, PRICE + STEP, "r")
        before = await allowance(pool, bidder, 5)
        moved, _ = await debit(pool, first, bidder, WalletChange(10 * DEPOSIT, "w-2"))

    assert leading.value.code == "committed_capital"
    # the refused withdrawal already had node 2 give back the idle half; the
    # lead's deposit stayed allotted until the rival's bid released it
    assert before == DEPOSIT
    assert moved.balance_kobo == 0
    assert await allowance(pool, bidder, 5) == 0


async def test_idle_allowances_go_back_to_the_free_balance(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    auction = await auction_in(pool, 3)
    async with two_nodes(pool) as (first, _):
        await first.place_bid(auction, bidder, PRICE, "a")
        assert await allowance(pool, bidder, 3) == 5 * DEPOSIT  # half the free balance
        assert await first.escrow.release_idle(idle_s=3600) == 0  # not idle yet
        assert await first.escrow.release_idle(idle_s=0) == 1
        kept = await allowance(pool, bidder, 3)
        core = first.core.allowance(first.registry.user_handle(bidder), 3)

    assert kept == DEPOSIT  # what the lead still exposes stays
    assert core == (DEPOSIT, DEPOSIT)


async def test_allowances_move_with_their_partition(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    auction = await auction_in(pool, 2)
    async with two_nodes(pool) as (first, second):
        await first.place_bid(auction, bidder, PRICE, "a")
        await first.flush()
        first.drop_partitions({2})
        await pool.execute("UPDATE partition_leases SET lease_until = now() WHERE id = 2")
        await lease(pool, {2}, node="n2")
        second.fence_with(await fences(pool, "n2"))
        await second.adopt_partitions({2})
        handle = second.registry.user_handle(bidder)
        moved = second.core.allowance(handle, 2)
        gone = first.core.allowance(first.registry.user_handle(bidder), 2)
        again = await second.place_bid(auction, bidder, PRICE + 10 * STEP, "self")  # leads

    assert moved == (5 * DEPOSIT, DEPOSIT)
    assert gone == (0, 0)
    assert isinstance(again, BidRejected) and again.code == "already_leading"


async def test_end_processing_takes_the_deposit_from_the_allowance_that_backed_it(
    pool: Any,
) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    seller = await create_user(pool, role="dealer")
    start = time.time_ns() // 1_000_000 - 1000
    auction = await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + 1500, auction_id=id_in(3)
    )
    async with two_nodes(pool) as (first, _):
        await first.place_bid(
            auction,
            bidder,
            PRICE,
            "a",
        )
        lifecycle = Lifecycle(pool, first, SystemClock())
        _, closed = await first.close_auction(auction)
        result = await lifecycle.finish(auction, bidder)
        core = first.core.allowance(first.registry.user_handle(bidder), 3)
        async with pool.acquire() as conn:
            standing = await check(conn, bidder)

    assert result is not None and result.sold and closed.leader is not None
    assert standing.balance_kobo == 9 * DEPOSIT  # the hold left the wallet
    # The allowance (half of the free balance) lost the deposit with it.
    assert await allowance(pool, bidder, 3) == 5 * DEPOSIT - DEPOSIT
    assert core == (4 * DEPOSIT, 0)
    assert standing.problems(pooled=True) == []


async def test_the_commit_checks_record_a_balance_below_its_allowances(pool: Any) -> None:
    """The instrument the property tests rely on can fail: an allowance above the
    balance, written by hand, is recorded at its commit."""
    bidder = await create_user(pool, balance_kobo=DEPOSIT)
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
        await install_commit_checks(conn)
        await conn.execute(
            "INSERT INTO allowances (user_id, partition, amount_kobo, epoch) VALUES ($1, 1, $2, 0)",
            bidder,
            2 * DEPOSIT,
        )
        found = await violations(conn)

    assert found == [f"{bidder}: allowances {2 * DEPOSIT} > balance {DEPOSIT}"]


async def test_a_wallet_read_through_any_node_counts_the_leads_of_every_node(pool: Any) -> None:
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    auction = await auction_in(pool, 6)
    async with two_nodes(pool) as (first, second):
        await second.place_bid(auction, bidder, PRICE, "a")
        await second.flush()
        wallet = await read_wallet(pool, first, bidder)

    assert (wallet.exposure_kobo, wallet.available_kobo) == (DEPOSIT, 9 * DEPOSIT)


async def test_leads_loaded_beyond_their_allowance_are_allotted_at_the_start(pool: Any) -> None:
    """Leads written by a node that weighed whole balances (a node alone keeps no
    allowances) get an allowance for what they expose as soon as a node of
    several has loaded them and holds its leases."""
    bidder = await create_user(pool, balance_kobo=10 * DEPOSIT)
    auction = await auction_in(pool, 1)
    async with two_nodes(pool) as (first, _):
        await first.place_bid(auction, bidder, PRICE, "a")
    await pool.execute("DELETE FROM allowances WHERE user_id = $1", bidder)
    async with two_nodes(pool) as (first, _):
        for _ in range(100):
            if await allowance(pool, bidder, 1) > 0:
                break
            await asyncio.sleep(0.02)
        core = first.core.allowance(first.registry.user_handle(bidder), 1)

    assert await allowance(pool, bidder, 1) == DEPOSIT
    assert core == (DEPOSIT, DEPOSIT)
