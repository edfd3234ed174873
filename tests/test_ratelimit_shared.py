"""The rate limits are one count across nodes: two `python -m engine serve`
processes on one PostgreSQL and one Redis (REDIS_URL set), with low limits, and
requests and bids split between them. Counted per node instead, each node alone
would stay under every limit here."""

from __future__ import annotations

import contextlib
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

LIMIT = 10


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
    """`times` GETs of `url` one after another: each answer's status and Retry-After."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answers = []
    for _ in range(times):
        async with http.get(url, headers=headers) as reply:
            answers.append((reply.status, reply.headers.get("Retry-After")))
    return answers


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
        sockets = []
        for node in (a, b):
            ws = await http.ws_connect(node.room_url(auction))
            await ws.receive_json(timeout=5)  # the snapshot
            await ws.send_json({"type": "auth", "token": token_for(bidder)})
            # The auction may go live meanwhile: its `state` event can come first.
            while (await ws.receive_json(timeout=5))["type"] != "snapshot":
                pass
            sockets.append(ws)
        # Two bids on each node, within one second (the limit's window starts at the
        # first): below the minimum, so the ledger is not what answers them.
        for ws in sockets:
            for _ in range(2):
                await ws.send_json(
                    {"type": "bid", "amount_kobo": 1, "client_bid_id": uuid.uuid4().hex}
                )
        codes = [code for ws in sockets for code in await answers(ws, 2)]
        for ws in sockets:
            await ws.close()
    assert codes.count("rate_limited") == 2, codes
