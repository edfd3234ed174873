"""Buying power across nodes, as a property (CLUSTER.md invariant 3): one
bidder's bids, maximums, withdrawals and credits on auctions whose partitions
two in-process nodes own, some sent to both nodes at once, with rivals' bids,
partition moves and node restarts in between — and PostgreSQL checking at
every commit that the bidder's deposits never passed their balance
(tests/buying_power.py), besides each node's core never allotting more than
the ledger does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import Refused
from engine.partitions import settle_partitions
from engine.recovery import Held
from engine.sequencer import Sequencer
from engine.wallet import WalletChange, credit, debit
from tests.buying_power import check, install_commit_checks, violations
from tests.factories import create_user
from tests.partition_helpers import PARTITIONS, auction_in, fences, lease
from tests.test_allowances import OtherNodes

PRICE = 100_000_000
STEP = 5_000_000
DEPOSIT = 20_000_000
#: The auctions' partitions: two on each node at the start.
AUCTION_PARTITIONS = (1, 2, 5, 6)
NAMES = ("n1", "n2")

auction_index = st.integers(0, len(AUCTION_PARTITIONS) - 1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("bid"), auction_index, st.integers(0, 3)),
        st.tuples(st.just("together"), auction_index, auction_index),
        st.tuples(st.just("rival"), auction_index, st.integers(0, 3)),
        st.tuples(st.just("max"), auction_index, st.integers(1, 20)),
        st.tuples(st.just("move"), auction_index, st.just(0)),
        st.tuples(st.just("restart"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("withdraw"), st.integers(1, 3), st.just(0)),
        st.tuples(st.just("credit"), st.integers(1, 2), st.just(0)),
    ),
    min_size=1,
    max_size=20,
)


@dataclass
class World:
    pool: Any
    bidder: uuid.UUID
    rival: uuid.UUID
    auctions: list[uuid.UUID]
    nodes: list[Sequencer] = field(default_factory=list)
    owner: dict[int, int] = field(default_factory=dict)  # partition → node index

    def next_id(self) -> str:
        """A client_bid_id or wallet reference unused in any example so far."""
        return uuid.uuid4().hex

    def node_of(self, auction: int) -> Sequencer:
        return self.nodes[self.owner[AUCTION_PARTITIONS[auction]]]

    def minimum(self, auction: int) -> int:
        state = self.node_of(auction).held(self.auctions[auction])
        return PRICE if state is None else state.min_next_bid_kobo

    def held_by(self, index: int) -> frozenset[int]:
        return frozenset(p for p, n in self.owner.items() if n == index)

    async def open_node(self, index: int) -> Sequencer:
        name = NAMES[index]
        await lease(self.pool, set(self.held_by(index)), node=name)
        node = await Sequencer.open(self.pool, held=Held(PARTITIONS, self.held_by(index), name))
        node.fence_with(await fences(self.pool, name))
        return node

    def link(self) -> None:
        for index, node in enumerate(self.nodes):
            elsewhere = OtherNodes()
            elsewhere.nodes.extend(n for i, n in enumerate(self.nodes) if i != index)
            node.reach(elsewhere)


@contextlib.asynccontextmanager
async def world(pool: Any, balance: int) -> AsyncIterator[World]:
    await pool.execute("UPDATE partition_leases SET owner = NULL, lease_until = now()")
    here = World(
        pool,
        bidder=await create_user(pool, balance_kobo=balance),
        rival=await create_user(pool, balance_kobo=10**13),
        auctions=[await auction_in(pool, p) for p in AUCTION_PARTITIONS],
        nodes=[],
        owner={p: 0 if p < PARTITIONS // 2 else 1 for p in range(PARTITIONS)},
    )
    here.nodes = [await here.open_node(0), await here.open_node(1)]
    here.link()
    try:
        yield here
    finally:
        for node in here.nodes:
            await node.close()


async def step(w: World, op: tuple[str, int, int]) -> None:
    kind, a, b = op
    if kind == "bid":
        amount = w.minimum(a) + b * STEP
        await w.node_of(a).place_bid(w.auctions[a], w.bidder, amount, w.next_id())
    elif kind == "together":
        await asyncio.gather(
            *(
                w.node_of(i).place_bid(w.auctions[i], w.bidder, w.minimum(i), w.next_id())
                for i in (a, b)
            )
        )
    elif kind == "rival":
        amount = w.minimum(a) + b * STEP
        await w.node_of(a).place_bid(w.auctions[a], w.rival, amount, w.next_id())
    elif kind == "max":
        await w.node_of(a).set_max(w.auctions[a], w.bidder, w.minimum(a) + b * STEP, w.next_id())
    elif kind == "move":
        await move(w, AUCTION_PARTITIONS[a])
    elif kind == "restart":
        await w.nodes[a].close()
        await w.pool.execute(
            "UPDATE partition_leases SET lease_until = now() WHERE owner = $1", NAMES[a]
        )
        w.nodes[a] = await w.open_node(a)
        w.link()
    elif kind == "withdraw":
        with contextlib.suppress(Refused):
            await debit(w.pool, w.nodes[0], w.bidder, WalletChange(a * DEPOSIT, w.next_id()))
    elif kind == "credit":
        await credit(w.pool, w.nodes[1], w.bidder, WalletChange(a * DEPOSIT, w.next_id()))


async def move(w: World, partition: int) -> None:
    """The partition's owner hands it over (drain, flush, release) to the other node."""
    giver = w.owner[partition]
    taker = 1 - giver
    w.nodes[giver].drop_partitions({partition})
    await w.nodes[giver].flush()
    await w.pool.execute(
        "UPDATE partition_leases SET owner = NULL, lease_until = now() WHERE id = $1", partition
    )
    await lease(w.pool, {partition}, node=NAMES[taker])
    w.owner[partition] = taker
    for index, node in enumerate(w.nodes):
        node.fence_with(await fences(w.pool, NAMES[index]))
    await w.nodes[taker].adopt_partitions({partition})


async def no_core_allots_more_than_the_ledger(w: World) -> list[str]:
    rows = await w.pool.fetch(
        "SELECT partition, amount_kobo FROM allowances WHERE user_id = $1", w.bidder
    )
    ledger = {row["partition"]: row["amount_kobo"] for row in rows}
    found = []
    for index, node in enumerate(w.nodes):
        handle = node.registry.user_handle(w.bidder)
        if handle < 0 or node.partitions is None:
            continue
        for partition in node.partitions.partitions:
            allowed, exposed = node.core.allowance(handle, partition)
            if allowed > ledger.get(partition, 0) or exposed > allowed:
                found.append(
                    f"node {index} partition {partition}: core allows {allowed} (exposes "
                    f"{exposed}), ledger {ledger.get(partition, 0)}"
                )
    return found


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(balance=st.integers(1, 4).map(lambda k: k * DEPOSIT), ops=operations)
async def test_a_bidders_deposits_across_nodes_never_pass_their_balance(
    pool: Any, balance: int, ops: list[tuple[str, int, int]]
) -> None:
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
        await install_commit_checks(conn)
    async with world(pool, balance) as w:
        for op in ops:
            await step(w, op)
            for node in w.nodes:
                await node.flush()
            async with pool.acquire() as conn:
                standing = await check(conn, w.bidder)
            assert standing.problems(pooled=True) == [], (op, standing)
            assert await no_core_allots_more_than_the_ledger(w) == [], op
    async with pool.acquire() as conn:
        assert await violations(conn) == []
