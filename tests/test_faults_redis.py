"""Redis stopped under load, then started again: each server process keeps serving
its own sockets, nothing crashes, and the processes find each other again.

Two real `python -m engine serve` processes on one database and one Redis
(REDIS_URL set), splitting the partitions between them (engine/leases.py): the
one holding the auction's partition is its owner, the other a watch node for it.
Bidders bid on the owner; guests watch on both. Then Redis is stopped for a few
seconds and started again on the same port:

- bids go on being acknowledged, and the owner's watchers get every event (local
  fan-out); the per-bidder WebSocket limit still holds, counted locally;
- both processes stay up and ready (`/healthz`, `/readyz`), with no error logged
  but Redis's own warnings;
- once Redis is back, the watch node's watchers get events again, and the one that
  saw a gap asks to `resume` and is answered;
- every acknowledged bid is in the ledger.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio

from bench.soak import SERVICE_TOKEN
from tests.cluster_helpers import balanced, owner_first
from tests.fault_helpers import (
    EngineServer,
    Platform,
    Record,
    Watcher,
    WsBidder,
    engine_env,
    http_status,
    ledger_problems,
    logged_problems,
    now_ms,
    running_engine,
    stop_tasks,
    token_for,
    wait_until,
)
from tests.redis_server import RedisServer

DOWN_S = 4.0
WS_BIDS_PER_S = 10  # the engine's default per-bidder limit
#: What a process rightly logs while Redis is away.
EXPECTED_IN_LOG = ("redis bus:", "rate limits counted locally")


@pytest_asyncio.fixture
async def nodes(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[EngineServer, EngineServer]]:
    env = engine_env(database_url, REDIS_URL=redis.url)
    async with (
        running_engine(env, tmp_path / "watch-node.log") as watch_node,
        running_engine(env, tmp_path / "owner.log") as owner,
    ):
        yield owner, watch_node


async def burst(http: aiohttp.ClientSession, url: str, user: uuid.UUID, bids: int) -> list[str]:
    """`bids` bids at once from one bidder: the codes of the errors it gets back."""
    ws = await http.ws_connect(url)
    try:
        await ws.receive_json(timeout=5)
        await ws.send_json({"type": "auth", "token": token_for(user)})
        await ws.receive_json(timeout=5)
        for _ in range(bids):
            await ws.send_json({"type": "bid", "amount_kobo": 1, "client_bid_id": uuid.uuid4().hex})
        codes: list[str] = []
        answered = 0
        while answered < bids:
            message = await ws.receive_json(timeout=5)
            if message["type"] in ("bid_result", "error"):
                answered += 1
                codes.append(message.get("code") or message["status"])
        return codes
    finally:
        await ws.close()


async def test_redis_down_each_node_serves_its_own_sockets_and_they_reconnect(
    nodes: tuple[EngineServer, EngineServer], redis: RedisServer, database_url: str
) -> None:
    record = Record()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await balanced(http, nodes, SERVICE_TOKEN)
        platform = Platform(http, nodes[0].base)
        seller = await platform.user("dealer")
        users = [await platform.user(balance_kobo=10**12) for _ in range(4)]
        auction = await platform.auction(
            seller, start_ms=now_ms() - 1000, end_ms=now_ms() + 3_600_000
        )
        owner, watch_node = await owner_first(http, nodes, SERVICE_TOKEN, auction)
        on_owner = Watcher(http, owner.room_url(auction))
        on_watch_node = Watcher(http, watch_node.room_url(auction))
        clients = [on_owner.run(), on_watch_node.run()]
        clients += [
            WsBidder(http, owner.room_url(auction), user, record, seed=n).run()
            for n, user in enumerate(users[:3])
        ]
        tasks = [asyncio.create_task(client) for client in clients]
        try:
            await wait_until(lambda: on_watch_node.events >= 10, 15, "events cross nodes")
            await redis.stop()
            down = time.monotonic()
            seen = (on_owner.events, on_watch_node.events, len(record.acks))
            codes = await burst(http, owner.room_url(auction), users[3], WS_BIDS_PER_S + 5)
            await asyncio.sleep(max(0.0, down + DOWN_S - time.monotonic()))
            while_down = (on_owner.events, on_watch_node.events, len(record.acks))
            statuses = [
                await http_status(http, f"{node.base}/{path}")
                for node in (owner, watch_node)
                for path in ("healthz", "readyz")
            ]
            await redis.start()
            up = time.monotonic()
            reconnected = await wait_until(
                lambda: on_watch_node.events > while_down[1], 15, "events cross nodes again"
            )
            await wait_until(
                lambda: on_watch_node.snapshots_after_gaps > 0, 5, "the gap is resumed"
            )
        finally:
            assert await stop_tasks(tasks) == []
    problems, _ = await ledger_problems(database_url, record.acks)
    alive = [node.running for node in (owner, watch_node)]
    logged = logged_problems(owner, EXPECTED_IN_LOG) + logged_problems(watch_node, EXPECTED_IN_LOG)
    print(
        f"\nRedis down {up - down:.1f}s: acknowledged {while_down[2] - seen[2]} bids meanwhile;"
        f" the owner's watcher got {while_down[0] - seen[0]} events, the watch node's"
        f" {while_down[1] - seen[1]}; a burst of {WS_BIDS_PER_S + 5} bids from one bidder:"
        f" {dict(collections.Counter(codes))}; /healthz,/readyz of both {statuses}"
        f"\nevents on the watch node again {reconnected:.2f}s after Redis was back;"
        f" seq gaps there {on_watch_node.gaps}, answered by a snapshot"
        f" {on_watch_node.snapshots_after_gaps}"
    )
    assert while_down[2] > seen[2], "no bid was acknowledged while Redis was down"
    assert while_down[0] - seen[0] >= while_down[2] - seen[2], "the owner's room missed events"
    assert on_owner.gaps == 0 and on_owner.sessions == 1
    assert codes.count("rate_limited") == 5, codes  # 10 a second, counted locally
    assert statuses == [200, 200, 200, 200]
    assert alive == [True, True]
    assert on_watch_node.sessions == 1, "the watch node dropped its watcher"
    assert problems == [] and record.violations == []
    assert logged == [], logged[:5]
