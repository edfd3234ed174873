"""The rate limits are one count across nodes. First two limiters (two nodes'
worth) on one real Redis: each decides at once from its own count and the
others' as last heard, and hears them when it syncs. Then two `python -m engine
serve` processes on one PostgreSQL and one Redis (REDIS_URL set), with low
limits, and requests and bids split between them, each a moment apart so the
nodes have synced between them. Counted per node instead, each node alone would
stay under every limit here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.fault_helpers import (
    EngineServer,
    Platform,
    engine_env,
    now_ms,
    running_engine,
    token_for,
)
from tests.redis_server import RedisServer
from web.ratelimit import SYNC_S, RedisRateLimiter
from web.redis_link import RedisLink

LIMIT = 10
#: Between requests to different nodes: long enough for both to have synced.
SYNCED_S = 0.25
assert SYNCED_S >= 5 * SYNC_S


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def two_limiters(redis: RedisServer) -> AsyncIterator[list[RedisRateLimiter]]:
    """Two nodes' limiters on one Redis, at the start of a minute of one clock."""
    clock = Clock(60.0 * 29_000_000)
    links = [RedisLink(redis.url), RedisLink(redis.url)]
    limiters = [RedisRateLimiter(link, clock=clock) for link in links]
    try:
        yield limiters
    finally:
        for limiter, link in zip(limiters, links, strict=True):
            await limiter.aclose()
            await link.aclose()


async def hits(limiter: RedisRateLimiter, times: int) -> list[bool]:
    """`times` hits of one key (10 a minute): whether each was let through."""
    return [await limiter.hit("ip:192.0.2.1", LIMIT, 60) is None for _ in range(times)]


async def test_two_nodes_hits_count_toward_one_limit_once_synced(redis: RedisServer) -> None:
    async with two_limiters(redis) as (a, b):
        assert await hits(a, 6) == [True] * 6
        assert await a.flush()
        # B has not heard of the key: its first hit is decided on its own count...
        assert await hits(b, 1) == [True]
        assert await b.flush()  # ... and the sync tells it A's six
        assert await hits(b, 4) == [True, True, True, False]
        await b.flush()
        # A hears B's five when it next sends: until then its own count decides.
        assert await hits(a, 1) == [True]
        assert await a.flush()
        assert await hits(a, 1) == [False]


async def test_a_node_syncs_behind_the_requests_within_sync_s(redis: RedisServer) -> None:
    async with two_limiters(redis) as (a, b):
        await hits(a, 3)
        await hits(b, 1)
        await asyncio.sleep(SYNCED_S)  # no flush called: the limiters sync themselves
        await hits(b, 1)
        await asyncio.sleep(SYNCED_S)  # B has sent again, and heard A's three
        assert await hits(b, 6) == [True] * 5 + [False]  # 3 + 2 + 5 = 10


async def test_a_hit_is_decided_while_redis_does_not_answer(redis: RedisServer) -> None:
    async with two_limiters(redis) as (a, _):
        await hits(a, 1)
        await a.flush()  # connected
        os.kill(redis.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(SYNCED_S)
            # A pipeline is waiting on the stopped server; the hits do not.
            decided = await asyncio.wait_for(hits(a, 10), timeout=1.0)
        finally:
            os.kill(redis.pid, signal.SIGCONT)
    assert decided == [True] * 9 + [False]


@contextlib.asynccontextmanager
async def two_nodes(
    database_url: str, redis: RedisServer, tmp_path: Path, **limits: int
) -> AsyncIterator[tuple[EngineServer, EngineServer]]:
    env = engine_env(
        database_url, REDIS_URL=redis.url, **{name: str(value) for name, value in limits.items()}
    )
    async with (
        running_engine(env, tmp_path / "a.log") as a,
        running_engine(env, tmp_path / "b.log") as b,
    ):
        yield a, b


async def statuses(
    http: aiohttp.ClientSession, url: str, times: int, token: str | None = None
) -> list[tuple[int, str | None]]:
    """`times` GETs of `url`, SYNCED_S apart: each answer's status and Retry-After."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answers = []
    for _ in range(times):
        await asyncio.sleep(SYNCED_S)
        async with http.get(url, headers=headers) as reply:
            answers.append((reply.status, reply.headers.get("Retry-After")))
    return answers


async def at_a_new_second() -> None:
    """Just after a second starts on the wall clock: the per-second windows' edge."""
    await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)


async def answers(ws: aiohttp.ClientWebSocketResponse, bids: int) -> list[str | None]:
    """The codes of the next `bids` answers to bids (None for an accepted one)."""
    codes = []
    while len(codes) < bids:
        message = await ws.receive_json(timeout=5)
        if message["type"] in ("bid_result", "error"):
            codes.append(message.get("code"))
    return codes


async def test_an_ips_requests_are_counted_once_across_nodes(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    async with (
        two_nodes(database_url, redis, tmp_path, RATE_LIMIT_IP_PER_MIN=LIMIT) as (a, b),
        aiohttp.ClientSession() as http,
    ):
        on_a = await statuses(http, f"{a.base}/api/auctions", 6)
        on_b = await statuses(http, f"{b.base}/api/auctions", 5)
    assert [status for status, _ in on_a] == [200] * 6
    assert [status for status, _ in on_b] == [200] * 4 + [429]
    retry_after = on_b[-1][1]
    assert retry_after is not None and 1 <= int(retry_after) <= 60


async def test_a_users_requests_are_counted_once_across_nodes(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    async with (
        two_nodes(
            database_url,
            redis,
            tmp_path,
            RATE_LIMIT_USER_PER_MIN=LIMIT,
            RATE_LIMIT_IP_PER_MIN=1_000,
        ) as (a, b),
        aiohttp.ClientSession() as http,
    ):
        platform = Platform(http, a.base)
        user, other = await platform.user(), await platform.user()
        on_a = await statuses(http, f"{a.base}/api/auctions", 6, token_for(user))
        on_b = await statuses(http, f"{b.base}/api/auctions", 5, token_for(user))
        other_on_b = await statuses(http, f"{b.base}/api/auctions", 1, token_for(other))
    assert [status for status, _ in on_a] == [200] * 6
    assert [status for status, _ in on_b] == [200] * 4 + [429]
    retry_after = on_b[-1][1]
    assert retry_after is not None and 1 <= int(retry_after) <= 60
    assert other_on_b == [(200, None)]  # the user's count, not the address's


async def test_a_bidders_bids_a_second_are_counted_once_across_nodes(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    async with (
        two_nodes(database_url, redis, tmp_path, WS_BIDS_PER_S=2) as (a, b),
        aiohttp.ClientSession() as http,
    ):
        platform = Platform(http, a.base)
        seller, bidder = await platform.user("dealer"), await platform.user()
        auction = await platform.auction(
            seller, start_ms=now_ms() - 1_000, end_ms=now_ms() + 3_600_000
        )
        on_a, on_b = await bids_split_over(http, (a, b), auction, token_for(bidder))
    # Answered by the engine (below_minimum; unavailable while a partition moves
    # between the two fresh nodes), or by the limit.
    assert "rate_limited" not in on_a
    assert on_b[0] != "rate_limited" and on_b[1:] == ["rate_limited"] * 2, on_b


async def bids_split_over(
    http: aiohttp.ClientSession,
    nodes: tuple[EngineServer, EngineServer],
    auction: uuid.UUID,
    token: str,
) -> tuple[list[str | None], list[str | None]]:
    """Within one second (the windows start on the wall clock's seconds): two bids
    on the first node; a moment later one, then two more, on the second. Below
    the minimum, so the ledger is not what answers them. The answers' codes."""
    sockets = []
    for node in nodes:
        ws = await http.ws_connect(node.room_url(auction))
        await ws.receive_json(timeout=5)  # the snapshot
        await ws.send_json({"type": "auth", "token": token})
        # The auction may go live meanwhile: its `state` event can come first.
        while (await ws.receive_json(timeout=5))["type"] != "snapshot":
            pass
        sockets.append(ws)
    first, second = sockets
    await at_a_new_second()
    await bid_below_minimum(first, 2)
    await asyncio.sleep(SYNCED_S)
    await bid_below_minimum(second, 1)  # not heard of the first two yet: its own count
    await asyncio.sleep(SYNCED_S)
    await bid_below_minimum(second, 2)
    codes = await answers(first, 2), await answers(second, 3)
    for ws in sockets:
        await ws.close()
    return codes


async def bid_below_minimum(ws: aiohttp.ClientWebSocketResponse, times: int) -> None:
    for _ in range(times):
        await ws.send_json({"type": "bid", "amount_kobo": 1, "client_bid_id": uuid.uuid4().hex})
