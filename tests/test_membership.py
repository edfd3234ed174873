"""A node's leases over its life (engine/membership.py): two nodes in this process
on one database, their ticks driven by the test. The first takes every partition;
when a second registers, the first hands half over (drained and flushed first) and
the second loads those partitions' auctions, which then take bids there, the
price going on from where it was; a partition whose renewal is lost or lapses is
dropped at once; a clean leave hands everything over. The served route
`GET /internal/cluster` shows it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.bids import BidAccepted, BidRejected
from engine.errors import ConfigError, Fenced
from engine.leases import Fence, Lease, LeaseTable
from engine.membership import Membership
from engine.partitions import partition_of, settle_partitions
from engine.payments import pay
from engine.roles import PLATFORM_USER_ID
from engine.sequencer import Sequencer
from tests.factories import create_auction, create_user
from tests.http_helpers import Api, start

PARTITIONS = 8
PRICE = 100_000_000
STEP = 5_000_000
HOUR_MS = 3_600_000


@contextlib.asynccontextmanager
async def node(
    pool: Any, name: str, *, table: LeaseTable | None = None
) -> AsyncIterator[tuple[Membership, Sequencer]]:
    # these nodes share no rooms (no sockets here): they say they would, to run side by side
    table = table or LeaseTable(pool, name, f"http://{name}", shares_rooms=True)
    membership = Membership(table, PARTITIONS)
    held = await membership.start()
    sequencer = await Sequencer.open(pool, held=held, interrupted=membership.interrupted)
    membership._decider = sequencer  # ticked by the test, not by its own task
    sequencer.fence_with(membership.fence_partition)
    try:
        yield membership, sequencer
    finally:
        await sequencer.close()
        await membership.leave()


async def auctions_in_every_partition(pool: Any) -> dict[int, uuid.UUID]:
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
    seller = await create_user(pool, role="dealer")
    start_ms = time.time_ns() // 1_000_000 - 1000
    found: dict[int, uuid.UUID] = {}
    while len(found) < PARTITIONS:
        candidate = uuid.uuid4()
        partition = partition_of(candidate, PARTITIONS)
        if partition not in found:
            found[partition] = await create_auction(
                pool,
                seller=seller,
                start_ms=start_ms,
                end_ms=start_ms + HOUR_MS,
                auction_id=candidate,
            )
    return found


async def test_a_second_node_gets_half_by_a_handover_and_takes_bids_there(pool: Any) -> None:
    auctions = await auctions_in_every_partition(pool)
    alice, bob = [await create_user(pool, balance_kobo=10**12) for _ in range(2)]

    async with node(pool, "a") as (a, seq_a), node(pool, "b") as (b, seq_b):
        assert set(a.leases) == set(range(PARTITIONS)) and b.leases == {}
        for auction in auctions.values():  # one bid on every auction, all on a
            assert isinstance(await seq_a.place_bid(auction, alice, PRICE), BidAccepted)

        await a.tick()  # b is live: a hands over its surplus
        await b.tick()  # and b takes it

        assert len(a.leases) == len(b.leases) == PARTITIONS // 2
        assert set(a.leases).isdisjoint(b.leases)
        moved = auctions[min(b.leases)]
        assert seq_a.held(moved) is None
        state = seq_b.held(moved)
        assert state is not None and state.current_price_kobo == PRICE  # from the ledger
        on_a = await seq_a.place_bid(moved, bob, PRICE + STEP)
        on_b = await seq_b.place_bid(moved, bob, PRICE + STEP)
        assert isinstance(on_a, BidRejected) and on_a.code == "unavailable"
        assert isinstance(on_b, BidAccepted) and on_b.bid.bid_count == 2
        rows = await pool.fetch("SELECT epoch, owner FROM partition_leases ORDER BY id")
        assert [row["owner"] for row in rows] == [
            "a" if p in a.leases else "b" for p in range(PARTITIONS)
        ]
        assert all(
            row["epoch"] == 2
            for row, p in zip(rows, range(PARTITIONS), strict=True)
            if p in b.leases
        )  # taken twice: by a, then by b


async def test_a_node_leaving_hands_every_partition_over(pool: Any) -> None:
    await auctions_in_every_partition(pool)
    async with node(pool, "b") as (b, _):
        async with node(pool, "a") as (a, _):
            await b.tick()
            await a.tick()
            assert len(a.leases) == len(b.leases) == PARTITIONS // 2
        # a left: its row is gone and its partitions are free at once
        await b.tick()
        assert set(b.leases) == set(range(PARTITIONS))


class _Unreachable(LeaseTable):
    """The database stops answering this node's lease calls (a real cut between
    a node process and PostgreSQL is the cluster fault tests')."""

    cut = False

    async def heartbeat(self) -> None:
        if self.cut:
            raise ConnectionRefusedError("cut")
        await super().heartbeat()

    async def renew(self, leases: Any) -> dict[int, Lease]:
        if self.cut:
            raise ConnectionRefusedError("cut")
        return await super().renew(leases)


async def test_leases_that_lapse_unrenewed_are_dropped_before_another_node_may_take_them(
    pool: Any,
) -> None:
    auctions = await auctions_in_every_partition(pool)
    alice = await create_user(pool, balance_kobo=10**12)
    clock = [1000.0]
    table = _Unreachable(pool, "a", "http://a", 600, monotonic=lambda: clock[0])
    async with node(pool, "a", table=table) as (a, seq_a):
        a._monotonic = lambda: clock[0]
        table.cut = True
        clock[0] += 0.3  # inside the lease: kept
        await a.tick()
        assert len(a.leases) == PARTITIONS
        clock[0] += 0.3  # past ttl - margin (0.48 s) since the take was sent: stop
        await a.tick()

        assert a.leases == {}
        refused = await seq_a.place_bid(auctions[0], alice, PRICE)
        assert isinstance(refused, BidRejected) and refused.code == "unavailable"


async def test_a_partition_another_node_took_is_dropped_at_the_next_renewal(pool: Any) -> None:
    auctions = await auctions_in_every_partition(pool)
    alice = await create_user(pool, balance_kobo=10**12)
    async with node(pool, "a") as (a, seq_a):
        taken = a.leases[3]
        # another node takes partition 3 behind a's back (as after a's lease lapsed)
        await pool.execute(
            "UPDATE partition_leases SET owner = 'z', epoch = epoch + 1 WHERE id = 3"
        )
        await a.tick()

        assert 3 not in a.leases and len(a.leases) == PARTITIONS - 1
        assert seq_a.held(auctions[3]) is None
        refused = await seq_a.place_bid(auctions[3], alice, PRICE)
        assert isinstance(refused, BidRejected) and refused.code == "unavailable"
        assert not await a.table.release(Lease(3, taken.epoch, 0.0))  # not a's to release


async def test_the_cluster_route_shows_this_node_holding_every_partition(
    database_url: str, aiohttp_client: Any
) -> None:
    api: Api = await start(aiohttp_client, database_url)

    reply = await api.service("GET", "/internal/cluster")
    denied = await api.call("GET", "/internal/cluster")

    assert reply.status == 200, reply.text
    body = reply.body
    assert [n["id"] for n in body["nodes"]] == [body["node"]]
    assert body["nodes"][0]["alive"] is True
    assert len(body["partitions"]) == 64
    assert {(p["owner"], p["free"]) for p in body["partitions"]} == {(body["node"], False)}
    assert all(p["epoch"] >= 1 and p["lease_until_ms"] > 0 for p in body["partitions"])
    assert denied.status == 401


async def test_an_auction_and_a_bidder_made_through_another_node_are_learned_by_this_one(
    pool: Any,
) -> None:
    await auctions_in_every_partition(pool)
    bidder = await create_user(pool, balance_kobo=10**12)
    async with node(pool, "a") as (a, seq_a):
        seller = await create_user(pool, role="dealer")
        start_ms = time.time_ns() // 1_000_000 - 1000
        # written by another node's API: this node's core has not heard of it
        made = await create_auction(
            pool, seller=seller, start_ms=start_ms, end_ms=start_ms + HOUR_MS
        )
        assert seq_a.held(made) is None

        late = await create_user(pool, balance_kobo=10**12)  # so was this bidder
        await a.tick()

        assert seq_a.held(made) is not None
        assert isinstance(await seq_a.place_bid(made, bidder, PRICE), BidAccepted)
        outbid = await seq_a.place_bid(made, late, PRICE + STEP)
        assert isinstance(outbid, BidAccepted), outbid


async def test_a_node_whose_deadline_passed_decides_nothing_until_it_renews(pool: Any) -> None:
    """A process paused past its leases' deadline (its ticks did not run) refuses
    bids the moment it runs again, before any tick, and takes them once renewed."""
    auctions = await auctions_in_every_partition(pool)
    alice = await create_user(pool, balance_kobo=10**12)
    async with node(pool, "a", table=LeaseTable(pool, "a", "http://a", 600)) as (a, seq_a):
        a._tell(seq_a)
        assert seq_a.available
        await asyncio.sleep(0.5)  # past ttl - margin (0.48 s): as after a SIGSTOP

        refused = await seq_a.place_bid(auctions[0], alice, PRICE, "p")
        await a.tick()
        taken = await seq_a.place_bid(auctions[0], alice, PRICE, "p")  # the same bid again

        assert isinstance(refused, BidRejected) and refused.code == "unavailable"
        assert isinstance(taken, BidAccepted) and len(a.leases) == PARTITIONS


@pytest.mark.parametrize("first_shares", [False, True])
async def test_a_node_without_redis_refuses_to_start_beside_another(
    pool: Any, first_shares: bool
) -> None:
    """Several nodes need Redis on each: the second refuses, naming why, and leaves
    no row behind; the first runs on as it did."""
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
    first = Membership(LeaseTable(pool, "a", "http://a", shares_rooms=first_shares), PARTITIONS)
    await first.start()
    second = Membership(
        LeaseTable(pool, "b", "http://b", shares_rooms=not first_shares), PARTITIONS
    )

    lacking = "this node has no REDIS_URL" if first_shares else r"node\(s\) a are live"
    with pytest.raises(ConfigError, match=f"several nodes need Redis.*{lacking}"):
        await second.start()
    assert second.leases == {}
    assert [row["id"] for row in await pool.fetch("SELECT id FROM nodes")] == ["a"]
    assert len(first.leases) == PARTITIONS
    await first.leave()


async def live_auction_in(pool: Any, partition: int, end_in_ms: int) -> uuid.UUID:
    seller = await create_user(pool, role="dealer")
    now = time.time_ns() // 1_000_000
    while partition_of(candidate := uuid.uuid4(), PARTITIONS) != partition:
        pass
    return await create_auction(
        pool,
        seller=seller,
        start_ms=now - HOUR_MS,
        end_ms=now + end_in_ms,
        window_ms=60_000,
        extension_ms=30_000,
        auction_id=candidate,
    )


async def test_an_end_caught_by_a_move_longer_than_the_outage_bound_moves_once(
    pool: Any,
) -> None:
    """RULES.md "Outages": partition 1's owner died 12 s ago (its last renewal);
    the node taking it over extends what ended meanwhile or ends within the
    anti-sniping window (60 s here) to now + the extension (30 s), writes it with
    an audit row (reason `outage`), and leaves later ends alone; so does a node
    restarting after 10 s down for its own partition 3. Partition 2 was released
    1 s ago (a planned handoff): shorter than OUTAGE_MIN_MS, nothing moves."""
    async with pool.acquire() as conn:
        await settle_partitions(conn, PARTITIONS)
    ended_meanwhile = await live_auction_in(pool, 1, end_in_ms=-4_000)
    ending_soon = await live_auction_in(pool, 1, end_in_ms=20_000)
    ending_later = await live_auction_in(pool, 1, end_in_ms=HOUR_MS)
    after_handoff = await live_auction_in(pool, 2, end_in_ms=-500)
    own_restart = await live_auction_in(pool, 3, end_in_ms=-2_000)
    await pool.execute(  # the dead owner renewed last 12 s ago (TTL 3 s)
        "UPDATE partition_leases SET owner = 'dead', epoch = 4,"
        " lease_until = now() - interval '9 s' WHERE id = 1"
    )
    await pool.execute(
        "UPDATE partition_leases SET owner = NULL, epoch = 2,"
        " lease_until = now() - interval '1 s' WHERE id = 2"
    )
    await pool.execute(  # b itself, down (killed) since its renewal 10 s ago, restarts
        "UPDATE partition_leases SET owner = 'b', epoch = 7,"
        " lease_until = now() - interval '7 s' WHERE id = 3"
    )
    ends_before = dict(await pool.fetch("SELECT id, end_time FROM auctions"))

    started = time.time_ns() // 1_000_000
    async with node(pool, "b") as (b, seq_b):
        await seq_b.flush()
        ends = dict(await pool.fetch("SELECT id, end_time FROM auctions"))
        audits = await pool.fetch(
            "SELECT target_id, reason, admin_id, old_value, new_value FROM admin_audit_log"
        )
        assert set(b.interrupted) >= {1, 2}

    moved = {a for a in ends if ends[a] != ends_before[a]}
    assert moved == {ended_meanwhile, ending_soon, own_restart}
    for auction in moved:
        new_end = int(ends[auction].timestamp() * 1000)
        assert started + 30_000 <= new_end <= time.time_ns() // 1_000_000 + 30_000
    assert {row["target_id"] for row in audits} == moved
    assert {(row["reason"], row["admin_id"]) for row in audits} == {("outage", PLATFORM_USER_ID)}
    assert ending_later not in moved and after_handoff not in moved


async def test_settlement_writes_are_fenced_by_the_partitions_lease(pool: Any) -> None:
    """A payment (or a default, a void) checks, in its own transaction, that the
    auction's partition is still this node's under its epoch: once another node
    took it, the write is refused Fenced and nothing is written."""
    auctions = await auctions_in_every_partition(pool)
    payer = await create_user(pool, balance_kobo=10**12)
    async with node(pool, "a") as (a, seq_a):
        auction = auctions[5]
        fence = seq_a.fence(auction)
        assert fence is not None and fence.epoch == a.leases[5].epoch
        async with pool.acquire() as conn, conn.transaction():
            await fence.check(conn)  # still a's: passes
        await pool.execute(
            "UPDATE partition_leases SET owner = 'z', epoch = epoch + 1 WHERE id = 5"
        )
        payments_before = await pool.fetchval("SELECT count(*) FROM transactions")

        with pytest.raises(Fenced, match="partition 5 is no longer node a's"):
            await pay(pool, auction, payer, 10_000_000, "ref-fenced", 0, fence=fence)
        assert await pool.fetchval("SELECT count(*) FROM transactions") == payments_before
        with pytest.raises(Fenced):  # a node holding no lease on it at all
            async with pool.acquire() as conn, conn.transaction():
                await Fence(6, "a", -1).check(conn)
