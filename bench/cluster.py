"""Several engine nodes, one PostgreSQL, one Redis: kill -9 a node under load,
again and again (shared/design/CLUSTER.md).

`--nodes` `python -m engine serve` processes on loopback share a fresh embedded
PostgreSQL and a Redis of their own. Bidders post bids on `--auctions` live
auctions through every node (a bid reaching a node that does not own the
auction is forwarded to its owner), each sending an unanswered bid again with
the same `client_bid_id`. Every `--storm-s` seconds a node is killed with
SIGKILL (in turn), and the bench times how long until every partition is held
by a live node again (the failover gap); the node is then started again and the
cluster left to rebalance before the next kill.

Reported: the failover gap (p50, p99, max), the longest any auction went without
an accepted bid, the bids acknowledged and — checked against the ledger — how
many of them are missing (a second row for one `client_bid_id` the schema
refuses itself). It fails when a bid acknowledged is lost, or the gap's p99 is
above 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import uvloop

from bench.core import BenchFailure
from bench.redis_server import RedisServer
from bench.report import Result, progress
from bench.soak import (
    SERVICE_TOKEN,
    STEP,
    EngineServer,
    Platform,
    engine_env,
    free_port,
    now_ms,
    own_database,
    token_for,
)
from engine.partitions import partition_of

HELP = "N nodes on one PostgreSQL and Redis: kill -9 one under load, again; failover gap, bids lost"
GAP_P99_BOUND_S = 5.0
BALANCE = 10**13


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="engine processes (default 3)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs, one node at a time")
    parser.add_argument("--auctions", type=int, default=6, help="live auctions bid on")
    parser.add_argument(
        "--bidders", type=int, default=2, help="REST bidders per auction per node (default 2)"
    )
    parser.add_argument(
        "--storm-s", type=float, default=2.0, help="load between a rebalance and the next kill"
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the nodes' logs here")


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
    async with asyncio.timeout(30):
        while True:
            view = await cluster_view(http, base)
            if view is not None and not any(
                p["free"] or p["owner"] == dead for p in view["partitions"]
            ):
                return
            await asyncio.sleep(0.02)


# ---- bidders ---------------------------------------------------------------------------


@dataclass
class Tally:
    acks: dict[str, str] = field(default_factory=dict)  # bid id → client_bid_id
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    accepted_at: dict[uuid.UUID, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    latencies: list[float] = field(default_factory=list)

    def longest_without_a_bid_s(self) -> float:
        gaps = [b - a for times in self.accepted_at.values() for a, b in itertools.pairwise(times)]
        return max(gaps, default=0.0)


async def bidder(
    http: aiohttp.ClientSession, base: str, auction: uuid.UUID, user: uuid.UUID, tally: Tally
) -> None:
    """Bids at the last minimum it heard of, about 4 a second; an unanswered or
    `unavailable` bid goes again with the same client_bid_id."""
    headers = {"Authorization": f"Bearer {token_for(user)}"}
    minimum, pending = await _minimum(http, base, auction), None
    while True:
        if pending is None:
            pending = (uuid.uuid4().hex, minimum)
        client_bid_id, amount = pending
        body = {"auction_id": str(auction), "amount_kobo": amount, "client_bid_id": client_bid_id}
        sent = time.monotonic()
        try:
            async with (
                asyncio.timeout(10),
                http.post(f"{base}/api/bids", json=body, headers=headers) as reply,
            ):
                answer = await reply.json()
        except (aiohttp.ClientError, OSError, TimeoutError):
            tally.outcomes["no answer"] += 1
            await asyncio.sleep(0.1)
            continue  # the same bid again
        now = time.monotonic()
        if reply.status == 201:
            tally.acks[answer["bid"]["id"]] = client_bid_id
            tally.outcomes["accepted"] += 1
            tally.accepted_at[auction].append(now)
            tally.latencies.append(now - sent)
            minimum = answer["bid"]["amount_kobo"] + STEP
            pending = None
        else:
            code = answer["error"]["code"]
            tally.outcomes[code] += 1
            if code in ("below_minimum", "already_leading", "invalid_amount", "auction_not_live"):
                minimum = max(minimum + STEP, await _minimum(http, base, auction))
                pending = None
            elif code != "unavailable":
                pending = None
        await asyncio.sleep(0.25)


async def _minimum(http: aiohttp.ClientSession, base: str, auction: uuid.UUID) -> int:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, KeyError):
        async with asyncio.timeout(5), http.get(f"{base}/api/auctions/{auction}") as reply:
            minimum: int = (await reply.json())["auction"]["min_next_bid_kobo"]
            return minimum
    return 0


# ---- the run ---------------------------------------------------------------------------


async def lost(dsn: str, tally: Tally) -> int:
    """Acknowledged bids the ledger does not hold under their id and client_bid_id."""
    conn = await asyncpg.connect(dsn)
    try:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM bids b"
            " JOIN unnest($1::uuid[], $2::text[]) AS a(id, client_bid_id)"
            " ON b.id = a.id AND b.client_bid_id = a.client_bid_id",
            list(tally.acks),
            list(tally.acks.values()),
        )
    finally:
        await conn.close()
    return len(tally.acks) - found


async def run_cluster(args: argparse.Namespace) -> Result:
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(own_database())
        redis_url = await stack.enter_async_context(own_redis())
        log_dir = args.log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        log_dir.mkdir(parents=True, exist_ok=True)
        nodes = [
            EngineServer(
                engine_env(dsn, REDIS_URL=redis_url, NODE_ID=f"node{n}"),
                log_dir / f"node{n}.log",
            )
            for n in range(args.nodes)
        ]
        for node in nodes:
            stack.push_async_callback(node.stop)
            await node.start()
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        await balanced(http, nodes)
        progress(f"{args.nodes} nodes up and balanced")
        platform = Platform(http, nodes[0].base)
        seller = await platform.user("dealer")
        start = now_ms() - 1000
        auctions = [
            await platform.auction(seller, start_ms=start, end_ms=start + 3_600_000)
            for _ in range(args.auctions)
        ]
        view = await cluster_view(http, nodes[0].base)
        assert view is not None
        owners = {
            a: view["partitions"][partition_of(a, len(view["partitions"]))]["owner"]
            for a in auctions
        }
        tally = Tally()
        tasks = []
        for auction in auctions:
            for node in nodes:
                for _ in range(args.bidders):
                    user = await platform.user(balance_kobo=BALANCE)
                    tasks.append(asyncio.create_task(bidder(http, node.base, auction, user, tally)))
        gaps: list[float] = []
        try:
            for number in range(args.kills):
                await asyncio.sleep(args.storm_s)
                victim, survivor = nodes[number % len(nodes)], nodes[(number + 1) % len(nodes)]
                killed = time.monotonic()
                await victim.kill()
                await until_taken_over(http, survivor.base, f"node{number % len(nodes)}")
                gaps.append(time.monotonic() - killed)
                progress(f"kill {number + 1}: partitions owned again after {gaps[-1]:.2f} s")
                await victim.start()
                await balanced(http, nodes)
            await asyncio.sleep(args.storm_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        missing = await lost(dsn, tally)
    cuts = statistics.quantiles(gaps, n=100, method="inclusive") if len(gaps) > 1 else gaps * 99
    latencies = sorted(tally.latencies)
    result: Result = {
        "scenario": "cluster",
        "nodes": args.nodes,
        "kills": args.kills,
        "auctions": args.auctions,
        "auction_owners": sorted(collections.Counter(owners.values()).items()),
        "failover_gap_s": {
            "p50": round(statistics.median(gaps), 3) if gaps else None,
            "p99": round(cuts[98], 3) if gaps else None,
            "max": round(max(gaps), 3) if gaps else None,
        },
        "longest_auction_without_a_bid_s": round(tally.longest_without_a_bid_s(), 3),
        "acknowledged": len(tally.acks),
        "lost": missing,
        "ack_ms": {
            "p50": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
            "p99": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
        },
        "outcomes": dict(tally.outcomes),
    }
    return result


def run(args: argparse.Namespace) -> Result:
    result = uvloop.run(run_cluster(args))
    gap = result["failover_gap_s"]
    assert isinstance(gap, dict)
    failures = []
    if result["lost"]:
        failures.append(f"{result['lost']} acknowledged bids lost")
    if gap["p99"] is not None and gap["p99"] > GAP_P99_BOUND_S:
        failures.append(f"failover gap p99 {gap['p99']} s above {GAP_P99_BOUND_S} s")
    if failures:
        raise BenchFailure("; ".join(failures))
    return result
