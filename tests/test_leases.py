"""Partitions and their leases (engine/partitions.py, engine/leases.py, sql/0022):
the auction → partition map in Python and SQL, the partition count fixed per
database, takes that bump the epoch, renewals and releases guarded by it, a node
that stops deciding before anyone else may take over, and the balancing plan."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.leases import (
    ClusterView,
    LeaseTable,
    NodeRow,
    PartitionRow,
    margin_ms,
    owners,
    plan_balance,
)
from engine.partitions import DEFAULT_PARTITIONS, partition_of, settle_partitions

# ---- the map ------------------------------------------------------------------------------


@pytest.mark.parametrize("partitions", [1, 7, 64, 4096])
async def test_python_and_sql_place_every_auction_in_the_same_partition(
    pool: Any, partitions: int
) -> None:
    rng = random.Random(partitions)
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(500)]
    ids += [uuid.UUID("ffffffff-ffff-ffff-0000-000000000000"), uuid.UUID(int=0)]  # both ends
    rows = await pool.fetch(
        "SELECT id, auction_partition(id, $2) AS p FROM unnest($1::uuid[]) AS id", ids, partitions
    )
    assert {row["id"]: row["p"] for row in rows} == {i: partition_of(i, partitions) for i in ids}
    assert {partition_of(i, partitions) for i in ids} <= set(range(partitions))


def test_the_map_reads_the_first_eight_bytes_unsigned() -> None:
    top = uuid.UUID("80000000-0000-0001-ffff-ffffffffffff")  # high bit set: unsigned 2^63 + 1
    assert partition_of(top, 10) == (2**63 + 1) % 10
    assert partition_of(uuid.UUID("00000000-0000-0005-ffff-ffffffffffff"), 64) == 5


# ---- the count, fixed per database ----------------------------------------------------------


async def test_the_first_node_fixes_the_count_and_makes_a_lease_row_for_each(pool: Any) -> None:
    async with pool.acquire() as conn:
        assert await settle_partitions(conn, None) == DEFAULT_PARTITIONS
        assert await settle_partitions(conn, None) == DEFAULT_PARTITIONS
        assert await settle_partitions(conn, DEFAULT_PARTITIONS) == DEFAULT_PARTITIONS
    rows = await pool.fetch("SELECT id, owner, epoch FROM partition_leases ORDER BY id")
    assert [(r["id"], r["owner"], r["epoch"]) for r in rows] == [
        (p, None, 0) for p in range(DEFAULT_PARTITIONS)
    ]


async def test_a_node_with_another_count_refuses_to_start_and_changes_nothing(pool: Any) -> None:
    async with pool.acquire() as conn:
        assert await settle_partitions(conn, 16) == 16
        with pytest.raises(ConfigError, match=r"PARTITIONS=32, but this database .* 16 partitions"):
            await settle_partitions(conn, 32)
        with pytest.raises(ConfigError, match="out of range"):
            await settle_partitions(conn, 0)
    assert await pool.fetchval("SELECT partitions FROM cluster_settings") == 16
    assert await pool.fetchval("SELECT count(*) FROM partition_leases") == 16


# ---- leases -------------------------------------------------------------------------------


@pytest.fixture
async def leases(pool: Any) -> Any:
    async with pool.acquire() as conn:
        await settle_partitions(conn, 8)
    return pool


def node(pool: Any, name: str, ttl_ms: int = 3000) -> LeaseTable:
    return LeaseTable(pool, name, f"http://127.0.0.1/{name}", ttl_ms)


async def test_a_take_bumps_the_epoch_and_nobody_else_takes_a_held_lease(leases: Any) -> None:
    a, b = node(leases, "a"), node(leases, "b")

    first = await a.take(0)
    assert first is not None and first.epoch == 1
    assert await b.take(0) is None  # held
    renewed = await a.renew([first])
    assert list(renewed) == [0] and renewed[0].epoch == 1
    assert await b.take(0) is None  # still held after the renewal
    assert await a.release(first)
    second = await b.take(0)

    assert second is not None and second.epoch == 2
    assert await a.renew([first]) == {}  # fenced: its epoch moved on
    assert not await a.release(first)
    row = await leases.fetchrow("SELECT owner, epoch FROM partition_leases WHERE id = 0")
    assert (row["owner"], row["epoch"]) == ("b", 2)


async def test_a_renewal_keeps_the_epoch_and_moves_the_node_deadline(leases: Any) -> None:
    clock = [100.0]
    a = LeaseTable(leases, "a", "http://a", 3000, monotonic=lambda: clock[0])
    lease = await a.take(3)
    assert lease is not None
    assert lease.valid_until == pytest.approx(100.0 + (3000 - margin_ms(3000)) / 1000)

    clock[0] = 101.0
    renewed = await a.renew([lease])

    assert renewed[3].epoch == lease.epoch
    assert renewed[3].valid_until == pytest.approx(101.0 + 2.4)


async def test_a_node_back_under_its_own_id_takes_its_partition_under_a_new_epoch(
    leases: Any,
) -> None:
    before = await node(leases, "a").take(5)
    again = await node(leases, "a").take(5)  # the same NODE_ID, restarted
    assert before is not None and again is not None
    assert again.epoch == before.epoch + 1
    assert await node(leases, "a").renew([before]) == {}  # the old process is fenced


async def test_a_node_that_stops_renewing_stops_deciding_before_another_can_take_over(
    leases: Any,
) -> None:
    """The lapsed owner's deadline (its own clock, from when it sent the take)
    passes before the database lets anyone else take the partition."""
    ttl = 600
    a, b = node(leases, "a", ttl), node(leases, "b", ttl)
    held = await a.take(1)
    assert held is not None

    for _ in range(500):  # the database says when; polled every 10 ms, 5 s at most
        if (taken := await b.take(1)) is not None:
            break
        await asyncio.sleep(0.01)
    taken_at = time.monotonic()
    assert taken is not None

    assert not held.valid(taken_at)
    assert taken_at - held.valid_until >= margin_ms(ttl) / 1000 * 0.9
    assert taken.epoch == held.epoch + 1
    assert await a.renew([held]) == {}


async def test_the_view_shows_live_nodes_and_who_holds_what(leases: Any) -> None:
    a, b = node(leases, "a"), node(leases, "b", ttl_ms=300)
    await a.heartbeat()
    await b.heartbeat()
    lease = await a.take(2)
    assert lease is not None

    await asyncio.sleep(0.4)  # b's row lapses
    view = await a.view()

    assert [(n.id, n.url, n.alive) for n in view.nodes] == [
        ("a", "http://127.0.0.1/a", True),
        ("b", "http://127.0.0.1/b", False),
    ]
    assert view.live_nodes() == ["a"]
    assert owners(view) == {p: ("a" if p == 2 else None) for p in range(8)}
    row = view.partitions[2]
    assert (row.owner, row.epoch, row.free) == ("a", lease.epoch, False)
    assert row.lease_until_ms is not None and row.lease_until_ms > time.time() * 1000
    assert view.partitions[0].lease_until_ms is None  # never leased
    await b.leave()
    assert [n.id for n in (await a.view()).nodes] == ["a"]


# ---- balancing ------------------------------------------------------------------------------


def _view(partitions: dict[int, str | None], live: list[str]) -> ClusterView:
    return ClusterView(
        nodes=[NodeRow(n, f"http://{n}", 0, True) for n in live],
        partitions=[
            PartitionRow(p, owner, 1, 0, owner is None) for p, owner in sorted(partitions.items())
        ],
    )


def test_a_lone_node_takes_every_partition() -> None:
    plan = plan_balance("a", _view(dict.fromkeys(range(64)), []))
    assert (sorted(plan.take), plan.release) == (list(range(64)), [])


def test_a_full_node_hands_over_its_surplus_when_a_second_joins() -> None:
    view = _view(dict.fromkeys(range(64), "a"), ["a", "b"])
    assert plan_balance("a", view).release == list(range(63, 31, -1))
    assert plan_balance("b", view).take == []  # nothing free yet


def test_a_dead_nodes_partitions_are_dealt_to_the_survivors_without_overlap() -> None:
    # c held 22 of 64 and died: its partitions are free, a and b hold 21 each.
    table = {p: ("a" if p < 21 else "b" if p < 42 else None) for p in range(64)}
    view = _view(table, ["a", "b"])
    a, b = plan_balance("a", view).take, plan_balance("b", view).take

    assert set(a).isdisjoint(b)  # read on the same table: no race for any partition
    assert sorted(a + b) == list(range(42, 64))
    assert (len(a), len(b)) == (11, 11)


@settings(max_examples=200, deadline=None)
@given(
    partitions=st.integers(1, 70),
    nodes=st.integers(1, 6),
    seed=st.integers(0, 2**32),
)
def test_nodes_planning_on_one_table_never_try_the_same_free_partition(
    partitions: int, nodes: int, seed: int
) -> None:
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(nodes)]
    table = {p: rng.choice([None, *names]) for p in range(partitions)}
    view = _view(table, names)
    takes = [p for name in names for p in plan_balance(name, view).take]

    assert len(takes) == len(set(takes))
    assert all(table[p] is None for p in takes)


@settings(max_examples=200, deadline=None)
@given(
    partitions=st.integers(1, 70),
    nodes=st.integers(1, 6),
    seed=st.integers(0, 2**32),
)
def test_nodes_following_their_plans_converge_to_one_owner_each_balanced(
    partitions: int, nodes: int, seed: int
) -> None:
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(nodes)]
    # any start: some partitions held, some by nodes no longer live, some free
    table: dict[int, str | None] = {
        p: rng.choice([None, "gone", *names]) for p in range(partitions)
    }
    for _ in range(4 * nodes + 4):
        for name in rng.sample(names, nodes):
            view = _view(
                {p: (None if o == "gone" else o) for p, o in table.items()},  # lapsed: free
                names,
            )
            plan = plan_balance(name, view)
            for p in plan.release:
                assert table[p] == name
                table[p] = None
            for p in plan.take:
                if table[p] in (None, "gone"):
                    table[p] = name
    counts = {name: sum(owner == name for owner in table.values()) for name in names}
    assert None not in table.values() and "gone" not in table.values()
    assert max(counts.values()) <= math.ceil(partitions / nodes)
    assert max(counts.values()) - min(counts.values()) <= 1  # as even as they go
    assert sum(counts.values()) == partitions


def test_the_next_lapse_is_the_earliest_lease_another_node_holds() -> None:
    rows = [
        PartitionRow(0, "me", 1, 10_000, False),  # mine: renewed by me, not waited for
        PartitionRow(1, "b", 1, 12_500, False),
        PartitionRow(2, "c", 1, 11_200, False),
        PartitionRow(3, None, 1, 9_000, True),  # free already
    ]
    view = ClusterView(nodes=[], partitions=rows, now_ms=10_000, read_at=50.0)

    assert view.next_lapse("me") == 51.2  # c's, 1.2 s after the read
    assert ClusterView(nodes=[], partitions=rows[:1], now_ms=10_000).next_lapse("me") is None
