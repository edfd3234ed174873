"""REDIS_URL naming a Redis Cluster: everything that uses Redis works on it, and a
master killed and failed over does not stop bidding.

Real processes only, on loopback: a Redis Cluster of three masters (Debian's
`redis-server` in cluster mode, joined by `redis-cli --cluster create`;
tests/redis_server.py), two `python -m engine serve` processes on one PostgreSQL
with REDIS_URL naming one node of it, clients over HTTP and WebSockets.

- Rooms across nodes: auctions whose channels land on all three masters, a watcher
  of each on both nodes; every watcher sees every event, in seq order. The
  masters themselves show sharded channels only, each on the master of its slot.
- A node holds a room's sharded channel while it has sockets in the room, and
  subscribes before the socket's snapshot is read.
- The rate limits are one count across both nodes.
- A master killed (SIGKILL) under load, with a replica each: the cluster fails it
  over; bids go on being acknowledged meanwhile and after; watchers on the other
  node get events again once the channel's new master serves it; every watcher
  ends knowing every seq (events, or a snapshot answering its `resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from bench.soak import SERVICE_TOKEN, START_PRICE, STEP
from tests.cluster_helpers import balanced, owner_first
from tests.fault_helpers import (
    EngineServer,
    Platform,
    Record,
    WsBidder,
    engine_env,
    ledger_problems,
    logged_problems,
    now_ms,
    running_engine,
    stop_tasks,
    token_for,
    wait_until,
)
from tests.redis_server import RedisCluster, running_redis_cluster
from tests.test_ratelimit_shared import bids_split_over, statuses, two_nodes

pytestmark = pytest.mark.slow  # long-running; still in the default run

RICH = 10**12
ROOM_EVENTS = ("bid", "state", "ended")
BIDS_PER_AUCTION = 6
NODE_TIMEOUT_MS = 1000  # how long before the cluster fails a silent master
AFTER_FAILOVER_S = 3.0  # bids go on this long once the watch node hears them again
#: What a process rightly logs while a master is down or being failed over.
EXPECTED_IN_LOG = ("redis bus:", "rate limits counted locally", "REDIS_URL")


# ---- a watcher that knows which seqs it has -------------------------------------------


@dataclass
class SeqWatcher:
    """A guest's page that knows the room up to `known`: every seq up to there
    came to it as an event, in order, or lies under a snapshot it was sent. An
    event beyond `known + 1` is a gap: the page asks to `resume` from `known`, as
    the room page does, and keeps what comes meanwhile."""

    http: aiohttp.ClientSession
    url: str
    joined_at: int = -1  # the first snapshot's seq
    known: int = -1
    ahead: set[int] = field(default_factory=set)
    gaps: int = 0  # resumes sent
    snapshots: int = 0  # after the first: answers to a resume
    #: (time.monotonic(), seq) of every room event, as it came.
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    _resumed_from: int = -1

    async def run(self) -> None:
        async with self.http.ws_connect(self.url, heartbeat=None) as ws:
            first = await ws.receive_json(timeout=10)
            assert first["type"] == "snapshot", first
            self.joined_at = self.known = first["seq"]
            self.joined.set()
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    return
                await self._take(ws, json.loads(message.data))

    def seqs(self) -> list[int]:
        return [seq for _, seq in self.arrivals]

    def first_after(self, moment: float, seq: int) -> float | None:
        """When the first event past `seq` came after `moment`."""
        return next((t for t, s in self.arrivals if t > moment and s > seq), None)

    def longest_silence(self, since: float) -> float:
        """The longest wait between two events (from `since`)."""
        times = [since] + [t for t, _ in self.arrivals if t > since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    async def _take(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
        if frame["type"] == "snapshot":
            self.snapshots += 1
            self._advance(frame["seq"])
        elif frame["type"] in ROOM_EVENTS:
            self.arrivals.append((time.monotonic(), frame["seq"]))
            self.ahead.add(frame["seq"])
            self._advance(self.known)
            if self.ahead and self._resumed_from != self.known:
                self.gaps += 1
                self._resumed_from = self.known
                await ws.send_json({"type": "resume", "last_seq": self.known})

    def _advance(self, covered: int) -> None:
        self.known = max(self.known, covered)
        self.ahead = {seq for seq in self.ahead if seq > self.known}
        while self.known + 1 in self.ahead:
            self.known += 1
            self.ahead.discard(self.known)


# ---- fixtures and helpers --------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def redis_cluster() -> AsyncIterator[RedisCluster]:
    async with running_redis_cluster() as cluster:
        yield cluster


@pytest_asyncio.fixture(scope="module")
async def nodes(
    postgres_cluster: Any,
    redis_cluster: RedisCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[EngineServer, EngineServer, str]]:
    """Two engine processes on one database and the module's Redis Cluster."""
    dsn = await postgres_cluster.create_database()
    logs = tmp_path_factory.mktemp("cluster-nodes")
    env = engine_env(dsn, REDIS_URL=redis_cluster.url)
    try:
        async with (
            running_engine(env, logs / "a.log") as a,
            running_engine(env, logs / "b.log") as b,
        ):
            yield a, b, dsn
    finally:
        await postgres_cluster.drop_database(dsn)


@contextlib.asynccontextmanager
async def node_client(port: int) -> AsyncIterator[Redis]:
    client = Redis(port=port, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def master_of(redis_cluster: RedisCluster, channel: str) -> int:
    """The port of the master serving `channel`'s slot (CLUSTER KEYSLOT, CLUSTER SLOTS)."""
    return (await redis_cluster.slot_owners())[await redis_cluster.keyslot(channel)]


async def shard_subscribers(port: int, channel: str) -> int:
    async with node_client(port) as client:
        reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


async def live_auction(platform: Platform, seller: uuid.UUID) -> uuid.UUID:
    start = now_ms() - 1000
    return await platform.auction(seller, start_ms=start, end_ms=start + 3_600_000)


async def is_live(
    http: aiohttp.ClientSession, nodes: tuple[EngineServer, ...], auction: uuid.UUID
) -> bool:
    """Live as every node serves it (a node not deciding it reads the ledger): a
    watcher that joins after this gets the opening in its snapshot. (One that
    joins a room while an event is on its way may see that event's seq missing,
    and resume.)"""
    for node in nodes:
        async with http.get(f"{node.base}/api/auctions/{auction}") as reply:
            if reply.status != 200 or (await reply.json())["auction"]["status"] != "live":
                return False
    return True


async def rest_bid(
    http: aiohttp.ClientSession, base: str, auction: uuid.UUID, user: uuid.UUID, amount: int
) -> int:
    body = {"auction_id": str(auction), "amount_kobo": amount, "client_bid_id": uuid.uuid4().hex}
    headers = {"Authorization": f"Bearer {token_for(user)}"}
    async with http.post(f"{base}/api/bids", json=body, headers=headers) as reply:
        return reply.status


async def last_seqs(dsn: str, auctions: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, last_seq FROM auctions WHERE id = ANY($1::uuid[])", auctions
        )
    finally:
        await conn.close()
    return {row["id"]: row["last_seq"] for row in rows}


# ---- rooms across nodes ------------------------------------------------------------------


async def auctions_on_every_master(
    platform: Platform, seller: uuid.UUID, redis_cluster: RedisCluster
) -> dict[uuid.UUID, int]:
    """Live auctions until each master serves the channels of two of them (ids
    are random: a few more than six, at most 40): auction -> its channel's master."""
    masters = await redis_cluster.masters()
    placed: dict[uuid.UUID, int] = {}
    while any(list(placed.values()).count(m) < 2 for m in masters) and len(placed) < 40:
        auction = await live_auction(platform, seller)
        placed[auction] = await master_of(redis_cluster, f"auction:{auction}")
    return placed


async def test_rooms_on_every_master_reach_watchers_on_both_nodes_in_seq_order(
    nodes: tuple[EngineServer, EngineServer, str], redis_cluster: RedisCluster
) -> None:
    a, b, dsn = nodes
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await balanced(http, (a, b), SERVICE_TOKEN)
        platform = Platform(http, a.base)
        seller = await platform.user("dealer")
        users = [await platform.user(balance_kobo=RICH) for _ in range(2)]
        placed = await auctions_on_every_master(platform, seller, redis_cluster)
        auctions = list(placed)
        for auction in auctions:
            await wait_until(lambda auction=auction: is_live(http, (a, b), auction), 15, "live")
        watchers = {
            (auction, node.base): SeqWatcher(http, node.room_url(auction))
            for auction in auctions
            for node in (a, b)
        }
        watching = [asyncio.create_task(w.run()) for w in watchers.values()]
        try:
            await wait_until(lambda: all(w.joined.is_set() for w in watchers.values()), 15, "join")

            async def bid_on(auction: uuid.UUID) -> list[int]:
                return [  # through either node by turns: the one not deciding forwards
                    await rest_bid(
                        http, (a, b)[n % 2].base, auction, users[n % 2], START_PRICE + n * STEP
                    )
                    for n in range(BIDS_PER_AUCTION)
                ]

            codes = await asyncio.gather(*(bid_on(auction) for auction in auctions))
            final = await last_seqs(dsn, auctions)
            await wait_until(
                lambda: all(w.known == final[auction] for (auction, _), w in watchers.items()),
                10,
                "every watcher caught up",
            )
            shard_channels, patterns = {}, 0
            for port in await redis_cluster.masters():
                async with node_client(port) as client:
                    listed = await client.execute_command("PUBSUB", "SHARDCHANNELS", "auction:*")
                    shard_channels[port] = set(listed)
                    patterns += int(await client.execute_command("PUBSUB", "NUMPAT"))
        finally:
            assert await stop_tasks(watching) == []

    assert codes == [[201] * BIDS_PER_AUCTION] * len(auctions)
    assert len(set(placed.values())) == 3, placed  # the rooms spread over every master
    # Sharded channels, each on the master of its slot; no pattern subscription.
    assert shard_channels == {
        port: {f"auction:{auction}" for auction, master in placed.items() if master == port}
        for port in shard_channels
    }
    assert patterns == 0
    for (auction, _), watcher in watchers.items():
        expected = list(range(watcher.joined_at + 1, final[auction] + 1))
        assert (watcher.seqs(), watcher.gaps, watcher.snapshots) == (expected, 0, 0), watcher.url
    print(
        f"\n{len(auctions)} rooms, channels per master "
        f"{sorted(list(placed.values()).count(m) for m in set(placed.values()))}, "
        f"{sum(len(w.arrivals) for w in watchers.values())} events to {len(watchers)} watchers"
    )


async def test_a_node_holds_a_rooms_channel_while_it_has_sockets_in_the_room(
    nodes: tuple[EngineServer, EngineServer, str], redis_cluster: RedisCluster
) -> None:
    a, b, _ = nodes
    async with aiohttp.ClientSession() as http:
        platform = Platform(http, a.base)
        auction = await live_auction(platform, await platform.user("dealer"))
        channel = f"auction:{auction}"
        master = await master_of(redis_cluster, channel)
        counts = [await shard_subscribers(master, channel)]
        sockets = []
        for node in (b, b, a):
            ws = await http.ws_connect(node.room_url(auction))
            await ws.receive_json(timeout=5)  # the snapshot: the subscription came first
            sockets.append(ws)
            counts.append(await shard_subscribers(master, channel))
        for ws, left in zip(sockets, (2, 1, 0), strict=True):
            await ws.close()
            await wait_until(
                lambda left=left: subscribers_are(master, channel, left), 5, "unsubscribed"
            )
    assert counts == [0, 1, 1, 2]  # one subscription per node, however many sockets


async def subscribers_are(port: int, channel: str, count: int) -> bool:
    return await shard_subscribers(port, channel) == count


# ---- shared limits -----------------------------------------------------------------------


@pytest_asyncio.fixture
async def empty_cluster(redis_cluster: RedisCluster) -> RedisCluster:
    """The module's cluster with no counts left by earlier tests (same address)."""
    for port in await redis_cluster.masters():
        async with node_client(port) as client:
            await client.flushall()
    return redis_cluster


async def test_an_ips_requests_are_counted_once_across_nodes_on_a_cluster(
    database_url: str, empty_cluster: RedisCluster, tmp_path: Path
) -> None:
    async with (
        two_nodes(database_url, empty_cluster, tmp_path, RATE_LIMIT_IP_PER_MIN=10) as (a, b),
        aiohttp.ClientSession() as http,
    ):
        on_a = await statuses(http, f"{a.base}/api/auctions", 6)
        on_b = await statuses(http, f"{b.base}/api/auctions", 5)
    assert [status for status, _ in on_a] == [200] * 6
    assert [status for status, _ in on_b] == [200] * 4 + [429]


async def test_a_bidders_bids_a_second_are_counted_once_across_nodes_on_a_cluster(
    database_url: str, empty_cluster: RedisCluster, tmp_path: Path
) -> None:
    async with (
        two_nodes(database_url, empty_cluster, tmp_path, WS_BIDS_PER_S=2) as (a, b),
        aiohttp.ClientSession() as http,
    ):
        platform = Platform(http, a.base)
        seller, bidder = await platform.user("dealer"), await platform.user()
        auction = await live_auction(platform, seller)
        on_a, on_b = await bids_split_over(http, (a, b), auction, token_for(bidder))
    # Answered by the engine (below_minimum; unavailable while a partition moves
    # between the two fresh nodes), or by the limit.
    assert "rate_limited" not in on_a
    assert on_b[0] != "rate_limited" and on_b[1:] == ["rate_limited"] * 2, on_b


# ---- a master killed under load --------------------------------------------------------


@contextlib.asynccontextmanager
async def owner_and_watch_node(
    database_url: str, redis_cluster: RedisCluster, tmp_path: Path
) -> AsyncIterator[tuple[EngineServer, EngineServer]]:
    env = engine_env(database_url, REDIS_URL=redis_cluster.url, LOG_LEVEL="INFO")
    async with (
        running_engine(env, tmp_path / "first.log") as first,
        running_engine(env, tmp_path / "second.log") as second,
    ):
        yield first, second


async def test_a_master_killed_under_load_is_failed_over_and_every_watcher_gets_every_seq(
    database_url: str, tmp_path: Path
) -> None:
    record = Record()
    async with (
        running_redis_cluster(replicas=1, node_timeout_ms=NODE_TIMEOUT_MS) as redis_cluster,
        owner_and_watch_node(database_url, redis_cluster, tmp_path) as engines,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        await balanced(http, engines, SERVICE_TOKEN)
        platform = Platform(http, engines[0].base)
        users = [await platform.user(balance_kobo=RICH) for _ in range(4)]
        auction = await live_auction(platform, await platform.user("dealer"))
        owner, watch_node = await owner_first(http, engines, SERVICE_TOKEN, auction)
        await wait_until(lambda: is_live(http, engines, auction), 15, "auction live")
        on_owner = [SeqWatcher(http, owner.room_url(auction)) for _ in range(2)]
        on_watch_node = [SeqWatcher(http, watch_node.room_url(auction)) for _ in range(2)]
        watchers = on_owner + on_watch_node
        watching = [asyncio.create_task(w.run()) for w in watchers]
        bidders = [  # three on the owner, one forwarded through the watch node
            WsBidder(http, node.room_url(auction), user, record, seed=n)
            for n, (node, user) in enumerate(zip([owner] * 3 + [watch_node], users, strict=True))
        ]
        bidding: list[asyncio.Task[None]] = []
        channel = f"auction:{auction}"
        try:
            # Every watcher in before the first bid: the room's events follow its snapshot.
            await wait_until(lambda: all(w.joined.is_set() for w in watchers), 15, "joined")
            bidding = [asyncio.create_task(bidder.run()) for bidder in bidders]
            await wait_until(
                lambda: all(len(w.arrivals) >= 10 for w in on_watch_node), 20, "events cross"
            )
            victim = await master_of(redis_cluster, channel)
            seq_at_kill = max(w.known for w in on_owner)
            killed = time.monotonic()
            await redis_cluster.kill(victim)
            await redis_cluster.wait_ok(timeout_s=20)
            failed_over = time.monotonic()
            await wait_until(
                lambda: all(w.first_after(killed, seq_at_kill) for w in on_watch_node),
                15,
                "events reach the watch node again",
            )
            await asyncio.sleep(AFTER_FAILOVER_S)
            assert await stop_tasks(bidding) == []
            stopped = time.monotonic()
            final = (await last_seqs(database_url, [auction]))[auction]
            await wait_until(
                lambda: all(w.known == final for w in on_owner + on_watch_node),
                10,
                "every watcher knows every seq",
            )
            new_master = await master_of(redis_cluster, channel)
            subscribed = await shard_subscribers(new_master, channel)
        finally:
            assert await stop_tasks(bidding + watching) == []

    acked = [ack.at for ack in record.acks]
    before = sum(t < killed for t in acked)
    during = sum(killed <= t < failed_over for t in acked)
    after = sum(t >= failed_over for t in acked)
    back_s = [(w.first_after(killed, seq_at_kill) or killed) - killed for w in on_watch_node]
    silence = [w.longest_silence(killed) for w in on_watch_node]
    owner_silence = [w.longest_silence(killed) for w in on_owner]
    problems, _ = await ledger_problems(database_url, record.acks)
    logged = [p for node in (owner, watch_node) for p in logged_problems(node, EXPECTED_IN_LOG)]
    print(
        f"\nmaster :{victim} killed; the cluster failed it over in {failed_over - killed:.2f}s "
        f"(node timeout {NODE_TIMEOUT_MS} ms), the channel now on :{new_master}"
        f"\nbids acknowledged: {before} before, {during} during the failover, {after} after "
        f"(until {stopped - failed_over:.1f}s past it); final seq {final}"
        f"\nfan-out gap on the watch node: events past the kill again after "
        f"{', '.join(f'{s:.2f}s' for s in back_s)}; longest silence "
        f"{', '.join(f'{s:.2f}s' for s in silence)} (the owner's own watchers: "
        f"{', '.join(f'{s:.2f}s' for s in owner_silence)}); resumes "
        f"{[w.gaps for w in on_watch_node]}, answered by snapshots "
        f"{[w.snapshots for w in on_watch_node]}"
    )
    assert new_master != victim and subscribed == 2  # both nodes resubscribed on the new master
    assert during > 0 and after > 0, (before, during, after)
    # local fan-out never waits on Redis
    assert all(w.gaps == 0 for w in on_owner), [(w.joined_at, w.seqs()) for w in on_owner]
    assert all(w.known == final for w in on_owner + on_watch_node)
    assert problems == [] and record.violations == []
    assert logged == [], logged[:5]


async def test_a_room_whose_event_was_lost_with_its_master_is_caught_up_after_the_failover(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        running_redis_cluster(replicas=1, node_timeout_ms=NODE_TIMEOUT_MS) as redis_cluster,
        owner_and_watch_node(database_url, redis_cluster, tmp_path) as engines,
        aiohttp.ClientSession() as http,
    ):
        await balanced(http, engines, SERVICE_TOKEN)
        platform = Platform(http, engines[0].base)
        bidders = [await platform.user(balance_kobo=RICH) for _ in range(2)]
        auction = await live_auction(platform, await platform.user("dealer"))
        owner, watch_node = await owner_first(http, engines, SERVICE_TOKEN, auction)
        await wait_until(lambda: is_live(http, engines, auction), 15, "auction live")
        watcher = SeqWatcher(http, watch_node.room_url(auction))
        watching = asyncio.create_task(watcher.run())
        try:
            await wait_until(watcher.joined.is_set, 15, "joined")

            async def bid(user: uuid.UUID, amount: int) -> None:
                reply = await http.post(
                    f"{owner.base}/api/bids",
                    json={
                        "auction_id": str(auction),
                        "amount_kobo": amount,
                        "client_bid_id": uuid.uuid4().hex,
                    },
                    headers={"Authorization": f"Bearer {token_for(user)}"},
                )
                assert reply.status == 201, await reply.text()

            await bid(bidders[0], START_PRICE)
            await wait_until(lambda: watcher.known > watcher.joined_at, 15, "the event crosses")
            await redis_cluster.kill(await master_of(redis_cluster, f"auction:{auction}"))
            await bid(bidders[1], START_PRICE + STEP)  # published as the master is away
            final = (await last_seqs(database_url, [auction]))[auction]
            await redis_cluster.wait_ok(timeout_s=20)
            # No bid after it: the watch node, subscribed again, finds the room behind.
            await wait_until(lambda: watcher.known == final, 20, "the watch node catches up")
        finally:
            assert await stop_tasks([watching]) == []
