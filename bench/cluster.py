"""The `rooms` steady load on one engine node, then spread over N, then kill -9
under it (shared/design/CLUSTER.md).

Every phase runs `python -m engine serve` processes on loopback that share a
fresh embedded PostgreSQL and a Redis of the bench's own, and loads them with
bench/rooms.py's steady scenario (its world, its load generators, its defaults):

1. **one node**: the load against a single node (with Redis, so room events take
   the same path as on several);
2. **N nodes**: the same load against `--nodes` nodes, every generator's sockets
   dealt round-robin over them, so most bids reach a node that does not own
   their auction and are forwarded to the owner (web/peers.py);
3. **failover**: the load goes on, and a node at a time is killed with SIGKILL
   (`--kills`, one every `--kill-every-s`); the bench times until every partition
   it owned is owned again and its owner decides a bid there (the failover gap),
   starts the node again and waits until the partitions are balanced. A socket
   the kill cut connects again to the next node.

Measured per phase: bid ack and fan-out latency (the generators' clocks), split
into bids decided where the client is connected and bids forwarded (the owners
from GET /internal/cluster and engine.partitions.partition_of); deliveries/s;
the engine processes' CPU seconds (/proc/<pid>/stat) per frame written to a
client socket (the nodes' `auction_ws_messages_sent_total`) and per accepted
bid. Then, per database: acknowledged bids missing from the ledger (lost), rows
the ledger holds twice (duplicated), and whether every room agrees with its bids
(`bench rooms`'s check, and the last price its watchers saw: `ledger_consistent`).
A run fails (exit 1) on a bid lost or duplicated, or a ledger that disagrees with
what the clients were told or with itself; a room whose watchers were left behind
the ledger is reported (`ledger_consistent` false), as are the speed targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import uvloop

from bench import plot, rooms, rooms_stats
from bench.core import BenchFailure
from bench.loadgen import AMOUNT_BITS, BID, UNANSWERED, Results
from bench.redis_server import RedisServer
from bench.report import Result, environment, progress
from bench.rooms_world import (
    Api,
    Target,
    World,
    check_ledger,
    parse_metrics,
)
from bench.soak import SECRET, SERVICE_TOKEN, EngineServer, engine_env, free_port, own_database
from engine.partitions import partition_of

HELP = (
    "the rooms steady load on 1 node, on N nodes, then kill -9 under it: ack and fan-out "
    "latency (forwarded bids apart), CPU per frame, failover gap, bids lost or duplicated"
)
TARGETS_MS = {"ack p99": 25.0, "fan-out p99": 50.0, "failover gap p99": 5_000.0}
CPU_PER_FRAME_RATIO_TARGET = 1.25
MAX_NODES = 8
MAX_KILLS = 20
#: The first kill comes this long after the N-node window ends.
KILL_LEAD_S = 2.0
#: No kill when the load would end sooner than this after it: the gap must be
#: measured under load.
LOAD_AFTER_A_KILL_S = 6.0
#: A failover probe's bid: below every auction's minimum, so the owner decides it
#: (refuses it) and no row is written.
PROBE_AMOUNT_KOBO = 1
FAILOVER_TIMEOUT_S = 30.0
VIEW_TIMEOUT_S = 30.0
FRAMES = "auction_ws_messages_sent_total"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nodes", type=int, default=3, help=f"engine processes in phases 2 and 3 (2..{MAX_NODES})"
    )
    parser.add_argument(
        "--kills", type=int, default=3, help=f"SIGKILLs in the failover phase (1..{MAX_KILLS})"
    )
    parser.add_argument(
        "--kill-every-s",
        type=float,
        default=15.0,
        help="a kill this often in the failover phase, which lasts kills × this",
    )
    rooms.add_load_arguments(
        parser,
        rate_help=f"offered bids/s, Poisson (default {rooms.STEADY_RATE:,.0f}, as `bench rooms`)",
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the nodes' logs here")
    parser.add_argument("--out", type=Path, default=rooms.RESULTS_DIR, help="where the .png goes")
    parser.set_defaults(room_scenario="steady")


# ---- a Redis of the bench's own ------------------------------------------------------


@contextlib.asynccontextmanager
async def own_redis() -> AsyncIterator[str]:
    if shutil.which("redis-server") is None:
        raise BenchFailure("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer(free_port())
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


# ---- the cluster as the database has it ---------------------------------------------


async def cluster_view(http: aiohttp.ClientSession, base: str) -> dict[str, Any] | None:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with (
            asyncio.timeout(2),
            http.get(
                f"{base}/internal/cluster", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}
            ) as reply,
        ):
            if reply.status == 200:
                body: dict[str, Any] = await reply.json()
                return body
    return None


def is_balanced(view: dict[str, Any], nodes: int) -> bool:
    """GET /internal/cluster's body: every partition held, `nodes` live nodes
    holding them as evenly as they go."""
    owners = [p["owner"] for p in view["partitions"] if not p["free"]]
    counts = [owners.count(n["id"]) for n in view["nodes"] if n["alive"]]
    return (
        len(owners) == len(view["partitions"])
        and len(counts) == nodes
        and max(counts) - min(counts) <= 1
    )


async def balanced(http: aiohttp.ClientSession, nodes: list[EngineServer]) -> None:
    async with asyncio.timeout(60):
        while True:
            view = await cluster_view(http, nodes[0].base)
            if view is not None and is_balanced(view, len(nodes)):
                return
            await asyncio.sleep(0.1)


async def until_taken_over(http: aiohttp.ClientSession, base: str, dead: str) -> None:
    """Until every partition is held, none by `dead` (as `base` reads the table)."""
    async with asyncio.timeout(FAILOVER_TIMEOUT_S):
        while True:
            view = await cluster_view(http, base)
            if view is not None and not any(
                p["free"] or p["owner"] == dead for p in view["partitions"]
            ):
                return
            await asyncio.sleep(0.02)


def node_id(index: int) -> str:
    return f"node{index}"


@dataclass(slots=True)
class Cluster:
    """Engine processes on one database and one Redis, as the bench started them;
    node i is `node{i}` and listens on ports[i]."""

    dsn: str
    nodes: list[EngineServer]
    http: aiohttp.ClientSession

    @property
    def target(self) -> Target:
        """Node 0, for the internal API (any node answers it)."""
        first = self.nodes[0]
        return Target(first.base, SERVICE_TOKEN, SECRET, first.pid)

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    async def view(self, via: int = 0) -> dict[str, Any]:
        """GET /internal/cluster through node `via`, asked again while it is too busy
        to answer (a loaded machine), for up to VIEW_TIMEOUT_S."""
        deadline = time.monotonic() + VIEW_TIMEOUT_S
        while time.monotonic() < deadline:
            view = await cluster_view(self.http, self.nodes[via].base)
            if view is not None:
                return view
            await asyncio.sleep(0.1)
        raise BenchFailure(f"{node_id(via)} did not answer GET /internal/cluster")

    async def owners(self, world: World) -> dict[int, int]:
        """Auction index → the index of the node that owns it now."""
        partitions = (await self.view())["partitions"]
        index = {node_id(n): n for n in range(len(self.nodes))}
        return {
            a: index.get(partitions[partition_of(uuid.UUID(auction), len(partitions))]["owner"], -1)
            for a, auction in enumerate(world.auction_ids)
        }

    async def probes(self) -> list[rooms.Probe]:
        """Each node's counters (GET /metrics) and its process's CPU, now."""
        probes = []
        for node in self.nodes:
            async with asyncio.timeout(10), self.http.get(f"{node.base}/metrics") as reply:
                metrics = parse_metrics(await reply.text())
            probes.append(
                rooms.Probe.take(Target(node.base, SERVICE_TOKEN, SECRET, node.pid), metrics)
            )
        return probes


@contextlib.asynccontextmanager
async def running_cluster(count: int, log_dir: Path, tag: str) -> AsyncIterator[Cluster]:
    """`count` nodes on a fresh database and Redis, balanced; stopped on exit."""
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(own_database())
        redis_url = await stack.enter_async_context(own_redis())
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        )
        # WS_BIDS_PER_S raised as `bench rooms` does: one socket may bid faster than
        # a person, and the limit is not what is measured.
        env = engine_env(dsn, REDIS_URL=redis_url, WS_BIDS_PER_S="1000000")
        nodes = [
            EngineServer({**env, "NODE_ID": node_id(n)}, log_dir / f"{tag}-node{n}.log")
            for n in range(count)
        ]
        for node in nodes:
            stack.push_async_callback(node.stop)
            await node.start()
        await balanced(http, nodes)
        progress(f"{count} node{'s' if count > 1 else ''} up and balanced ({tag})")
        yield Cluster(dsn, nodes, http)


# ---- what the engine processes spent ------------------------------------------------------


def spent(before: list[rooms.Probe], after: list[rooms.Probe], accepted: int) -> dict[str, Any]:
    """Every engine process between two probes: CPU seconds in all, per frame written
    to a client socket and per accepted bid; each node's own counters."""
    wall = after[0].at - before[0].at
    each = [
        None
        if a.server_cpu_s is None or b.server_cpu_s is None
        else a.server_cpu_s - b.server_cpu_s
        for a, b in zip(after, before, strict=True)
    ]
    cpu = None if None in each else sum(s for s in each if s is not None)
    frames = sum(
        a.metrics.get(FRAMES, 0.0) - b.metrics.get(FRAMES, 0.0)
        for a, b in zip(after, before, strict=True)
    )
    return {
        "engine_cpu_s": None if cpu is None else round(cpu, 2),
        "frames_sent": int(frames),
        "frames_per_s": round(frames / wall, 1),
        "cpu_per_frame_us": round(cpu / frames * 1e6, 2) if cpu is not None and frames else None,
        "cpu_per_accepted_bid_us": round(cpu / accepted * 1e6, 1)
        if cpu is not None and accepted
        else None,
        "machine_busy_share": rooms.machine_busy(before[0], after[0]),
        "measured_s": round(wall, 2),
        "server": [rooms.server_side(b, a) for b, a in zip(before, after, strict=True)],
    }


# ---- failover: kill, time, start again ---------------------------------------------------


@dataclass(slots=True)
class Kill:
    node: str
    partitions: int  # the partitions it owned
    probed: int  # ... of which hold an auction of the run: a bid decided there again
    leases_s: float  # kill → every partition owned by a live node
    gap_s: float  # kill → ... and its owner decides a bid on each probed one
    restart_s: float
    rebalance_s: float
    probe_answers: dict[str, int] = field(default_factory=dict)


async def fail_over(cluster: Cluster, victim: int, world: World) -> Kill:
    """SIGKILL node `victim`; time until its partitions are owned and decide bids
    again; start it again and wait until the cluster is balanced."""
    survivor = (victim + 1) % len(cluster.nodes)
    dead = node_id(victim)
    view = await cluster.view(survivor)
    count = len(view["partitions"])
    owned = {p["id"] for p in view["partitions"] if p["owner"] == dead}
    probes: dict[int, str] = {}
    for auction in world.auction_ids:
        probes.setdefault(partition_of(uuid.UUID(auction), count), auction)
    auctions = [auction for p, auction in probes.items() if p in owned]
    node = cluster.nodes[victim]
    killed = time.monotonic()
    await node.kill()
    await until_taken_over(cluster.http, cluster.nodes[survivor].base, dead)
    leases_s = time.monotonic() - killed
    answers = await decided(cluster.http, cluster.nodes[survivor].base, world.tokens[0], auctions)
    gap_s = time.monotonic() - killed
    restart_s = await node.start()
    started = time.monotonic()
    await balanced(cluster.http, cluster.nodes)
    return Kill(
        dead,
        len(owned),
        len(auctions),
        leases_s,
        gap_s,
        restart_s,
        time.monotonic() - started,
        dict(answers),
    )


async def decided(
    http: aiohttp.ClientSession, base: str, token: str, auctions: Sequence[str]
) -> Counter[str]:
    """Until a bid on each auction, sent through `base`, is decided by its owner (any
    answer but `unavailable`); the codes of those answers."""
    answers: Counter[str] = Counter()

    async def one(auction: str) -> None:
        while True:
            code = await probe_bid(http, base, token, auction)
            if code not in ("unavailable", None):
                answers[code] += 1
                return
            await asyncio.sleep(0.02)

    async with asyncio.timeout(FAILOVER_TIMEOUT_S):
        await asyncio.gather(*(one(auction) for auction in auctions))
    return answers


async def probe_bid(http: aiohttp.ClientSession, base: str, token: str, auction: str) -> str | None:
    """A bid too low to be placed; the answer's code (None: no answer)."""
    body = {
        "auction_id": auction,
        "amount_kobo": PROBE_AMOUNT_KOBO,
        "client_bid_id": f"failover-probe-{uuid.uuid4().hex}",
    }
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):
        async with (
            asyncio.timeout(5),
            http.post(
                f"{base}/api/bids", json=body, headers={"Authorization": f"Bearer {token}"}
            ) as reply,
        ):
            answer = await reply.json()
            return "accepted" if reply.status == 201 else str(answer["error"]["code"])
    return None


async def kill_in_turn(
    cluster: Cluster, world: World, kills: int, every_s: float, from_ns: int, stop_ns: int
) -> list[Kill]:
    """A kill every `every_s` from `from_ns`, nodes in turn, while the load runs."""
    done: list[Kill] = []
    for number in range(kills):
        at_ns = from_ns + int((KILL_LEAD_S + number * every_s) * 1e9)
        await sleep_until(at_ns)
        if (stop_ns - time.monotonic_ns()) / 1e9 < LOAD_AFTER_A_KILL_S:
            progress(f"kill {number + 1} skipped: the load ends too soon after it")
            break
        kill = await fail_over(cluster, number % len(cluster.nodes), world)
        progress(
            f"kill {number + 1} ({kill.node}, {kill.partitions} partitions): owned again after "
            f"{kill.leases_s:.2f}s, deciding bids after {kill.gap_s:.2f}s; restarted in "
            f"{kill.restart_s:.1f}s, balanced {kill.rebalance_s:.1f}s later"
        )
        done.append(kill)
    return done


async def sleep_until(monotonic_ns: int) -> None:
    await asyncio.sleep(max(0.0, (monotonic_ns - time.monotonic_ns()) / 1e9))


# ---- one loaded cluster ----------------------------------------------------------------------


@dataclass(slots=True)
class Played:
    """One load run on a cluster: its steady window, then (kills) its failover window."""

    results: list[Results]
    world: World
    start_ns: int
    boundary_ns: int  # the steady window ends, the failover window begins
    stop_ns: int
    partitions: int  # PARTITIONS of the run
    owners: dict[int, int]
    owners_moved: int  # auctions whose owner changed during the steady window
    steady_probes: tuple[list[rooms.Probe], list[rooms.Probe]]
    kills: list[Kill]
    sockets: int
    sockets_failed: int
    audit: Audit


async def play(cluster: Cluster, args: argparse.Namespace, kills: int) -> Played:
    """The steady load for --seconds on `cluster`, then `kills` kills under it."""
    bidding_s = args.seconds + kills * args.kill_every_s
    target = cluster.target
    api = Api(cluster.http, target)
    async with contextlib.AsyncExitStack() as stack:
        world = await rooms.world_for(api, target, args, bidding_s)
        load = await rooms.connected(
            stack, args, api, world, target, bidding_s, ports=cluster.ports, reconnect=kills > 0
        )
        await asyncio.sleep(rooms.SETTLE_S)
        partitions = len((await cluster.view())["partitions"])
        owners = await cluster.owners(world)
        start_ns = time.monotonic_ns() + 200_000_000
        boundary_ns = start_ns + int(args.seconds * 1e9)
        stop_ns = start_ns + int(bidding_s * 1e9)
        before = await cluster.probes()
        await load.gens.go(start_ns, stop_ns)
        progress(f"steady on {len(cluster.nodes)} node(s): bidding for {args.seconds:g}s")
        collecting = asyncio.ensure_future(load.gens.done(timeout_s=bidding_s + args.drain_s + 120))
        try:
            await sleep_until(boundary_ns)
            after = await cluster.probes()
            moved = await cluster.owners(world)
            done = await kill_in_turn(
                cluster, world, kills, args.kill_every_s, boundary_ns, stop_ns
            )
            results = await collecting
        finally:
            collecting.cancel()
        audit = await audit_run(api, cluster.dsn, world, results, start_ns, stop_ns)
    return Played(
        results=results,
        world=world,
        start_ns=start_ns,
        boundary_ns=boundary_ns,
        stop_ns=stop_ns,
        partitions=partitions,
        owners=owners,
        owners_moved=sum(1 for a, n in owners.items() if moved.get(a) != n),
        steady_probes=(before, after),
        kills=done,
        sockets=load.sockets,
        sockets_failed=sum(load.failures.values()),
        audit=audit,
    )


# ---- the ledger against what the clients were told -------------------------------------------


@dataclass(slots=True)
class Audit:
    acknowledged: int
    lost: int
    duplicated: int
    duplicated_detail: dict[str, int]
    rooms: dict[str, Any]  # bench rooms' check (rooms_world.check_ledger)
    #: Auctions whose watchers' last price is not the ledger's: (index, seen, ledger) kobo.
    rooms_last_seen_off: list[tuple[int, int, int]]
    #: Ledger bids above the last price their room's watchers saw.
    bids_never_seen: int

    @property
    def ledger_holds(self) -> bool:
        """The ledger holds what the clients were told, and agrees with itself."""
        return bool(self.rooms["ledger_consistent"])

    @property
    def consistent(self) -> bool:
        """... and every room's watchers last saw the ledger's price."""
        return self.ledger_holds and not self.rooms_last_seen_off


async def audit_run(
    api: Api, dsn: str, world: World, results: Sequence[Results], start_ns: int, stop_ns: int
) -> Audit:
    """The ledger against every bid acknowledged in the run, and every room against it."""
    whole = rooms.checked_figures(results, start_ns, stop_ns)
    progress(f"checking the ledger of {len(world.auction_ids)} auctions")
    checked = await check_ledger(api, world.auction_ids, rooms.acknowledged(whole))
    acks = acknowledged_ids(results)
    conn = await asyncpg.connect(dsn)
    try:
        missing = await lost(conn, acks)
        twice = await duplicated(conn, world.auction_ids)
        prices = await ledger_prices(conn, world.auction_ids)
        seen = last_seen_prices(results)
        off = [
            (a, seen.get(a, 0), prices.get(auction, 0))
            for a, auction in enumerate(world.auction_ids)
            if seen.get(a, 0) != prices.get(auction, 0)
        ]
        unseen = await bids_above(conn, {world.auction_ids[a]: seen for a, seen, _ in off})
    finally:
        await conn.close()
    return Audit(len(acks), missing, twice["duplicated"], twice, checked, off, unseen)


def acknowledged_ids(results: Sequence[Results]) -> dict[str, str]:
    """Every bid answered `accepted`: its ledger id → its client_bid_id."""
    return {
        bid_id: r.bids.client_bid_id[index]
        for r in results
        for index, bid_id in r.bids.bid_id.items()
    }


def last_seen_prices(results: Sequence[Results]) -> dict[int, int]:
    """Auction index → the highest client's bid its watchers received (the room's
    last price, but for bids placed for maximums)."""
    seen: dict[int, int] = {}
    mask = (1 << AMOUNT_BITS) - 1
    for result in results:
        for key in result.delivery_key:
            auction, amount = key >> AMOUNT_BITS, key & mask
            if amount > seen.get(auction, 0):
                seen[auction] = amount
    return seen


async def lost(conn: asyncpg.Connection, acks: Mapping[str, str]) -> int:
    """Acknowledged bids the ledger does not hold under their id and client_bid_id."""
    found: int = await conn.fetchval(
        "SELECT count(*) FROM bids b"
        " JOIN unnest($1::uuid[], $2::text[]) AS a(id, client_bid_id)"
        " ON b.id = a.id AND b.client_bid_id = a.client_bid_id",
        list(acks),
        list(acks.values()),
    )
    return len(acks) - found


_DUPLICATED = """
WITH run AS (SELECT * FROM bids WHERE auction_id = ANY($1::uuid[])),
by_id AS (
  SELECT count(*) - 1 AS extra FROM run WHERE client_bid_id IS NOT NULL
  GROUP BY client_bid_id HAVING count(*) > 1),
by_amount AS (
  SELECT count(*) - greatest(count(DISTINCT client_bid_id), 1) AS extra FROM run
  GROUP BY auction_id, user_id, amount HAVING count(*) > 1),
both_ways AS (
  SELECT count(*) - 1 AS extra FROM run WHERE client_bid_id IS NOT NULL
  GROUP BY auction_id, user_id, amount, client_bid_id HAVING count(*) > 1)
SELECT (SELECT coalesce(sum(extra), 0) FROM by_id)::bigint AS by_client_bid_id,
       (SELECT coalesce(sum(extra), 0) FROM by_amount)::bigint AS by_amount,
       (SELECT coalesce(sum(extra), 0) FROM both_ways)::bigint AS both_ways
"""


async def duplicated(conn: asyncpg.Connection, auction_ids: Sequence[str]) -> dict[str, int]:
    """Rows beyond the first of a client_bid_id, and beyond the client's sends of one
    amount by one bidder on one auction (its distinct client_bid_ids there); a row
    that is both counts once."""
    row = await conn.fetchrow(_DUPLICATED, [uuid.UUID(a) for a in auction_ids])
    counts = {key: int(row[key]) for key in ("by_client_bid_id", "by_amount", "both_ways")}
    counts["duplicated"] = counts["by_client_bid_id"] + counts["by_amount"] - counts["both_ways"]
    return counts


async def bids_above(conn: asyncpg.Connection, prices: Mapping[str, int]) -> int:
    """Ledger bids placed by clients above the given price (kobo) of their auction."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM bids b JOIN unnest($1::uuid[], $2::bigint[]) AS s(id, kobo)"
        " ON b.auction_id = s.id AND b.amount * 100 > s.kobo AND NOT b.is_proxy",
        [uuid.UUID(a) for a in prices],
        list(prices.values()),
    )
    return count


async def ledger_prices(conn: asyncpg.Connection, auction_ids: Sequence[str]) -> dict[str, int]:
    """Auction id → its highest bid in the ledger placed by a client, in kobo (the
    watchers record bids placed for maximums without their amounts)."""
    rows = await conn.fetch(
        "SELECT auction_id::text AS id, (max(amount) * 100)::bigint AS kobo FROM bids"
        " WHERE auction_id = ANY($1::uuid[]) AND NOT is_proxy GROUP BY auction_id",
        [uuid.UUID(a) for a in auction_ids],
    )
    return {row["id"]: row["kobo"] for row in rows}


# ---- the figures -------------------------------------------------------------------------


def latency(values: Sequence[float]) -> dict[str, Any]:
    return {**rooms_stats.percentiles(values), "count": len(values)}


def ack_paths(
    results: Sequence[Results], owners: Mapping[int, int], start_ns: int, stop_ns: int
) -> dict[str, list[float]]:
    """Answered bids sent in [start_ns, stop_ns), by where they were decided: `local`
    when the node the bidder was connected to owned the auction, else `forwarded`."""
    paths: dict[str, list[float]] = {"local": [], "forwarded": []}
    for result in results:
        bids = result.bids
        for i, send in enumerate(bids.send_ns):
            if bids.kind[i] != BID or bids.outcome[i] == UNANSWERED:
                continue
            if start_ns <= send < stop_ns:
                path = "local" if owners.get(bids.auction[i]) == bids.node[i] else "forwarded"
                paths[path].append((bids.ack_ns[i] - send) / 1e6)
    return paths


def window(
    played: Played, start_ns: int, stop_ns: int
) -> tuple[dict[str, Any], rooms_stats.Figures]:
    """Rates, latencies and counts of the bids sent in [start_ns, stop_ns)."""
    figures = rooms.checked_figures(played.results, start_ns, stop_ns, phase=True)
    seconds = (stop_ns - start_ns) / 1e9
    # The last window keeps the drops of the drain after it too.
    until_ns = stop_ns if stop_ns < played.stop_ns else 2**63 - 1
    drops = [d for r in played.results for d in r.drops if start_ns <= d.at_ns < until_ns]
    result: dict[str, Any] = {
        "seconds": round(seconds, 1),
        "accepted_bids_per_s": round(figures.accepted / seconds, 1),
        "sent_bids_per_s": round(figures.sent / seconds, 1),
        "ack_ms": latency(figures.ack_ms),
        "fanout_ms": latency(figures.fanout_ms),
        "deliveries_per_s": round(len(figures.fanout_ms) / seconds, 1),
        "deliveries": {
            "expected": figures.deliveries_expected,
            "measured": len(figures.fanout_ms),
            "unmatched": figures.deliveries_unmatched,
        },
        "accepted": figures.accepted,
        "unanswered": figures.unanswered,
        "rejections": figures.rejections,
        "sockets_dropped": len(drops),
    }
    return result, figures


def steady_phase(played: Played) -> dict[str, Any]:
    """The steady window: latencies (local and forwarded bids apart) and CPU."""
    result, figures = window(played, played.start_ns, played.boundary_ns)
    paths = ack_paths(played.results, played.owners, played.start_ns, played.boundary_ns)
    before, after = played.steady_probes
    result.update(
        {
            "nodes": len(before),
            "ack_local_ms": latency(paths["local"]),
            "ack_forwarded_ms": latency(paths["forwarded"]),
            "auctions_whose_owner_moved": played.owners_moved,
            **spent(before, after, figures.accepted),
            "sockets": played.sockets,
            "sockets_failed": played.sockets_failed,
            "generators": generators(played.results),
        }
    )
    return result


def failover_phase(played: Played) -> dict[str, Any]:
    """The failover window: the gaps, what the load saw meanwhile, reconnections."""
    result, _ = window(played, played.boundary_ns, played.stop_ns)
    gaps = [kill.gap_s * 1000 for kill in played.kills]
    result.update(
        {
            "kills": len(played.kills),
            "failover_gap_ms": rooms_stats.percentiles(gaps),
            "leases_owned_again_ms": rooms_stats.percentiles(
                [kill.leases_s * 1000 for kill in played.kills]
            ),
            "each_kill": [
                {
                    "node": kill.node,
                    "partitions": kill.partitions,
                    "auctions_probed": kill.probed,
                    "probe_answers": kill.probe_answers,
                    "leases_s": round(kill.leases_s, 3),
                    "gap_s": round(kill.gap_s, 3),
                    "restart_s": round(kill.restart_s, 2),
                    "rebalance_s": round(kill.rebalance_s, 2),
                }
                for kill in played.kills
            ],
            "reconnects": sum(r.reconnects for r in played.results),
            "reconnect_failures": sum(r.reconnect_failures for r in played.results),
            "reconnects_unfinished": sum(r.reconnects_unfinished for r in played.results),
            "seq_gaps_whole_run": sum(r.seq_gaps for r in played.results),
        }
    )
    return result


def generators(results: Sequence[Results]) -> list[dict[str, Any]]:
    """Each load generator's CPU share and worst loop lag over its run."""
    return [
        {
            "index": r.index,
            "cpu_share": round(r.cpu_s / r.wall_s, 3) if r.wall_s else None,
            "lag_max_ms": max(r.lag_ms_per_s, default=0.0),
        }
        for r in results
    ]


def audit_result(audit: Audit) -> Result:
    return {
        "acknowledged": audit.acknowledged,
        "lost": audit.lost,
        "duplicated": audit.duplicated_detail,
        "ledger_consistent": audit.consistent,
        "rooms_check": {k: v for k, v in audit.rooms.items() if k != "examples"},
        "rooms_whose_last_seen_price_is_not_the_ledgers": len(audit.rooms_last_seen_off),
        "ledger_bids_no_watcher_saw": audit.bids_never_seen,
        "last_seen_price_examples": [
            {"auction": a, "seen_kobo": seen, "ledger_kobo": ledger}
            for a, seen, ledger in audit.rooms_last_seen_off[:5]
        ],
    }


def at_most(value: float | None, bound: float) -> dict[str, Any]:
    return {"value": value, "at_most": bound, "met": value is not None and value <= bound}


def summary(args: argparse.Namespace, one: Played, many: Played) -> Result:
    """The result line: headline figures (the N-node steady window's latencies), the
    targets, and each phase's detail."""
    one_node, n_nodes, failover = steady_phase(one), steady_phase(many), failover_phase(many)
    ack_p99 = n_nodes["ack_ms"]["p99"]
    fanout_p99 = n_nodes["fanout_ms"]["p99"]
    gap_p99 = failover["failover_gap_ms"]["p99"]
    per_frame = (one_node["cpu_per_frame_us"], n_nodes["cpu_per_frame_us"])
    ratio = round(per_frame[1] / per_frame[0], 3) if None not in per_frame else None
    lost = one.audit.lost + many.audit.lost
    twice = one.audit.duplicated + many.audit.duplicated
    consistent = one.audit.consistent and many.audit.consistent
    behind = len(one.audit.rooms_last_seen_off) + len(many.audit.rooms_last_seen_off)
    targets = {
        "ack_p99_ms": at_most(ack_p99, TARGETS_MS["ack p99"]),
        "fanout_p99_ms": at_most(fanout_p99, TARGETS_MS["fan-out p99"]),
        "failover_gap_p99_ms": at_most(gap_p99, TARGETS_MS["failover gap p99"]),
        "cpu_per_frame_ratio": at_most(ratio, CPU_PER_FRAME_RATIO_TARGET),
        "lost": at_most(lost, 0),
        "duplicated": at_most(twice, 0),
        "ledger_consistent": {"value": consistent, "required": True, "met": consistent},
    }
    return {
        "scenario": "cluster",
        "nodes": args.nodes,
        "ack_p99_ms": ack_p99,
        "ack_forwarded_p99_ms": n_nodes["ack_forwarded_ms"]["p99"],
        "ack_local_p99_ms": n_nodes["ack_local_ms"]["p99"],
        "fanout_p99_ms": fanout_p99,
        "failover_gap_p99_ms": gap_p99,
        "lost": lost,
        "duplicated": twice,
        "ledger_consistent": consistent,
        "ledger_holds": one.audit.ledger_holds and many.audit.ledger_holds,
        "rooms_behind_the_ledger": behind,
        "cpu_per_frame_ratio": ratio,
        "targets": targets,
        "targets_met": all(t["met"] for t in targets.values()),
        "phases": {"one_node": one_node, "n_nodes": n_nodes, "failover": failover},
        "ledger": {"one_node": audit_result(one.audit), "n_nodes": audit_result(many.audit)},
        "config": {
            "nodes": args.nodes,
            "kills": args.kills,
            "kill_every_s": args.kill_every_s,
            "auctions": args.auctions,
            "bidders": args.bidders,
            "watchers": args.watchers,
            "seconds": args.seconds,
            "rate": args.rate,
            "processes": args.processes,
            "seed": args.seed,
            "partitions": many.partitions,
        },
        **environment(),
    }


# ---- the plot ----------------------------------------------------------------------------------


def draw(args: argparse.Namespace, result: Result, kills: Sequence[Kill]) -> None:
    """bench/results/cluster.png: p99s for 1 and N nodes, and each kill's gap."""
    skipped = plot.unavailable()
    if skipped is not None:
        result["files"] = {"png": None}
        result["plot_skipped"] = skipped
        progress(f"the plot was skipped: {skipped}")
        return
    phases = result["phases"]
    assert isinstance(phases, dict)
    p99s = {
        label: {
            "ack, all": phases[key]["ack_ms"]["p99"],
            "ack, local": phases[key]["ack_local_ms"]["p99"],
            "ack, forwarded": phases[key]["ack_forwarded_ms"]["p99"],
            "fan-out": phases[key]["fanout_ms"]["p99"],
        }
        for key, label in (("one_node", "1 node"), ("n_nodes", f"{args.nodes} nodes"))
    }
    png = args.out / "cluster.png"
    plot.cluster_phases(
        png,
        p99s,
        [(kill.leases_s, kill.gap_s) for kill in kills],
        title=(
            f"cluster: {args.auctions} auctions, {args.bidders} bidders, {args.watchers} "
            f"watchers, {args.rate:,.0f} bids/s offered; kills: {len(kills)}"
        ),
        targets_ms=TARGETS_MS,
    )
    result["files"] = {"png": str(png)}
    progress(f"wrote {png}")


# ---- entry -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Result:
    check_bounds(args)
    if args.rate is None:
        args.rate = rooms.STEADY_RATE
    try:
        result = uvloop.run(_main(args))
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise BenchFailure("interrupted; every process the run started is stopped") from None
    failures = []
    if result["lost"]:
        failures.append(f"{result['lost']} acknowledged bids are not in the ledger")
    if result["duplicated"]:
        failures.append(f"{result['duplicated']} bids are in the ledger twice")
    if not result["ledger_holds"]:
        failures.append(f"the ledger disagrees with the clients or itself: {result['ledger']}")
    # A room whose watchers were left behind the ledger makes `ledger_consistent`
    # false and is reported, not failed: the figures still stand.
    if failures:
        # On stderr: a failed run prints no result, but what it measured helps find why.
        progress(f"the failed run's figures: {json.dumps(result, separators=(',', ':'))}")
        raise BenchFailure("; ".join(failures))
    return result


def check_bounds(args: argparse.Namespace) -> None:
    """Bounded in count and time, whatever is asked."""
    least_every = KILL_LEAD_S + LOAD_AFTER_A_KILL_S + 1  # a second for the probes between
    if not 2 <= args.nodes <= MAX_NODES:
        raise BenchFailure(f"--nodes must be 2 to {MAX_NODES}, not {args.nodes}")
    if not 1 <= args.kills <= MAX_KILLS:
        raise BenchFailure(f"--kills must be 1 to {MAX_KILLS}, not {args.kills}")
    if not least_every <= args.kill_every_s <= 120:
        raise BenchFailure(f"--kill-every-s must be {least_every:g} to 120 s")
    if not 0 < args.seconds <= 3600:
        raise BenchFailure("--seconds must be above 0 and at most 3600")


async def _main(args: argparse.Namespace) -> Result:
    # SIGTERM (say, from `timeout`) cancels the run like Ctrl-C: every process it
    # started is stopped on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with contextlib.ExitStack() as stack:
        logs = args.log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        logs.mkdir(parents=True, exist_ok=True)
        progress("phase 1: the steady load on one node")
        async with running_cluster(1, logs, "one") as cluster:
            one = await play(cluster, args, kills=0)
        progress(f"phases 2 and 3: the same load on {args.nodes} nodes, then kills under it")
        async with running_cluster(args.nodes, logs, "many") as cluster:
            many = await play(cluster, args, kills=args.kills)
    result = summary(args, one, many)
    draw(args, result, many.kills)
    progress(
        f"ack p99 {result['ack_p99_ms']} ms (forwarded {result['ack_forwarded_p99_ms']}, local "
        f"{result['ack_local_p99_ms']}), fan-out p99 {result['fanout_p99_ms']} ms, failover gap "
        f"p99 {result['failover_gap_p99_ms']} ms, CPU per frame {result['cpu_per_frame_ratio']}x "
        f"one node's; lost {result['lost']}, duplicated {result['duplicated']}, ledger "
        f"consistent: {result['ledger_consistent']}; targets met: {result['targets_met']}"
    )
    return result
