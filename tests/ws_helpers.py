"""Helpers for the room tests: users and an auction in the ledger, the app on a
real socket (in this process, or as its own server process), and a small
WebSocket client that reads API.md's messages.

`python -m tests.ws_helpers [--queue-bytes N] [--send-buffer N] [--heartbeat S]
[--count-queries]` serves the app (settings from the environment) on a free
loopback port and prints `ready PORT` once it takes connections; SIGTERM stops it
gracefully. With `--count-queries`, `GET /test/queries` answers with every
statement its pool has run so far, counted (`QueryCounter`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

import engine.database
from engine.config import Settings
from engine.tokens import mint_token
from server.app import create_app
from tests.factories import create_auction, create_user
from web.keys import ROOM_TUNING
from web.rooms import RoomTuning

ROOT = Path(__file__).resolve().parent.parent
SECRET = "ws-test-secret-that-is-at-least-32-bytes-long"
#: The bid log's signing seed of the apps the tests start (none kept on disk).
LOG_SIGNING_SEED = bytes(range(32))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---- the ledger -------------------------------------------------------------------


@dataclass
class World:
    seller: uuid.UUID
    auction_id: uuid.UUID
    bidders: list[uuid.UUID]
    tokens: dict[uuid.UUID, str] = field(default_factory=dict)

    def token(self, user_id: uuid.UUID) -> str:
        return self.tokens[user_id]


async def make_world(
    pool: Any, *, bidders: int = 2, balance_kobo: int = 10**12, **auction: Any
) -> World:
    """A dealer's live auction (an hour left) and bidders with tokens."""
    seller = await create_user(pool, role="dealer")
    start = now_ms() - 1_000
    auction.setdefault("start_ms", start)
    auction.setdefault("end_ms", start + 3_600_000)
    auction_id = await create_auction(pool, seller=seller, **auction)
    world = World(seller=seller, auction_id=auction_id, bidders=[])
    for _ in range(bidders):
        user = await create_user(pool, balance_kobo=balance_kobo)
        world.bidders.append(user)
        world.tokens[user] = mint_token(user, "user", SECRET)
    world.tokens[seller] = mint_token(seller, "dealer", SECRET)
    return world


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": SECRET,
        "internal_api_token": "ws-test-internal-token",
        "log_signing_key": LOG_SIGNING_SEED,
        "rate_limit_ip_per_min": 100_000,
        "rate_limit_user_per_min": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


# ---- the app's queries -------------------------------------------------------------


class QueryCounter:
    """Every statement run by the pools opened while `counting_queries` is on, as
    their connections report them (asyncpg's query loggers; a logger hears of a
    statement on the loop's next turn, so give it one before counting)."""

    def __init__(self) -> None:
        self.statements: collections.Counter[str] = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.statements.values())

    def log(self, record: Any) -> None:
        self.statements[record.query] += 1


@contextlib.contextmanager
def counting_queries() -> Iterator[QueryCounter]:
    """Count the statements of every pool engine.database makes meanwhile (the
    app's, when the app starts inside): each new connection gets a query logger."""
    counter = QueryCounter()
    register = engine.database.register_vector

    async def init(conn: Any) -> None:
        await register(conn)
        conn.add_query_logger(counter.log)

    engine.database.register_vector = init
    try:
        yield counter
    finally:
        engine.database.register_vector = register


# ---- the app on a socket ----------------------------------------------------------


@dataclass
class Served:
    app: web.Application
    base: str  # http://127.0.0.1:PORT

    def room_url(self, auction_id: uuid.UUID) -> str:
        return f"{self.base.replace('http', 'ws', 1)}/ws/auctions/{auction_id}"


@contextlib.asynccontextmanager
async def serving(
    database_url: str, *, tuning: RoomTuning | None = None, port: int = 0, **settings: Any
) -> AsyncIterator[Served]:
    """The whole app (recovery, ledger writer, rooms) on a loopback port in this
    process; without the timed jobs, so a test's auctions change only when it says."""
    app = create_app(settings_for(database_url, **settings), run_jobs=False)
    if tuning is not None:
        app[ROOM_TUNING] = tuning
    server = TestServer(app, host="127.0.0.1", port=port or None)
    await server.start_server()
    try:
        yield Served(app, str(server.make_url("")).rstrip("/"))
    finally:
        await server.close()


class ServerProcess:
    """The app as its own process (uvloop, as in production)."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def room_url(self, auction_id: uuid.UUID) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/auctions/{auction_id}"

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> ServerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.ws_helpers",
            *args,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if not line.startswith(b"ready "):
            process.kill()
            await process.wait()
            raise RuntimeError(f"the server did not start: {line!r}")
        return cls(process, int(line.split()[1]))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def process_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "JWT_SECRET": SECRET,
        "INTERNAL_API_TOKEN": "ws-test-internal-token",
        "LOG_SIGNING_KEY": LOG_SIGNING_SEED.hex(),
        "RATE_LIMIT_IP_PER_MIN": "100000",
        "RATE_LIMIT_USER_PER_MIN": "100000",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


# ---- a client -------------------------------------------------------------------------


class RoomClient:
    """One socket to a room: send API.md messages, read them back as dicts."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []  # messages skipped by `expect`

    @classmethod
    async def connect(
        cls, session: aiohttp.ClientSession, url: str, *, token: str | None = None
    ) -> RoomClient:
        """Connected, its first message (the snapshot) read into `snapshot`;
        with `token`, authenticated too (and the bidder's snapshot read)."""
        client = cls(await session.ws_connect(url, heartbeat=None, autoping=True))
        client.snapshot = await client.expect("snapshot")
        if token is not None:
            await client.send(type="auth", token=token)
            client.snapshot = await client.expect("snapshot")
            client.you = await client.expect("you")  # answers `auth` (API.md)
        return client

    snapshot: dict[str, Any]
    you: dict[str, Any] | None = None

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def bid(self, amount_kobo: int, client_bid_id: str | None = None) -> dict[str, Any]:
        client_bid_id = client_bid_id or uuid.uuid4().hex
        await self.send(type="bid", amount_kobo=amount_kobo, client_bid_id=client_bid_id)
        return await self.expect("bid_result", client_bid_id=client_bid_id)

    async def next(self, wait_s: float = 5) -> dict[str, Any]:
        message = await self.ws.receive(timeout=wait_s)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {message.type!r} {message.data!r}")
        decoded: dict[str, Any] = json.loads(message.data)
        return decoded

    async def expect(self, kind: str, wait_s: float = 5, **fields: Any) -> dict[str, Any]:
        """The first message of type `kind` (with `fields`), among those skipped so far
        (`seen`) or else arriving next; others are kept in `seen`."""
        for i, message in enumerate(self.seen):
            if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                return self.seen.pop(i)
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {kind} {fields} within {wait_s}s; saw {self.seen}")
            message = await self.next(left)
            if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                return message
            self.seen.append(message)

    async def silence(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within `seconds`."""
        got: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    got.append(await self.next(seconds))
        return got

    async def close(self) -> None:
        await self.ws.close()


# ---- the server process's entry point ----------------------------------------------


async def _serve(tuning: RoomTuning, count_queries: bool) -> None:
    with counting_queries() if count_queries else contextlib.nullcontext() as counter:
        await _serve_app(tuning, counter)


async def _serve_app(tuning: RoomTuning, counter: QueryCounter | None) -> None:
    settings = Settings.from_env()
    app = create_app(settings)
    app[ROOM_TUNING] = tuning
    if counter is not None:

        async def queries(request: web.Request) -> web.Response:
            return web.json_response({"statements": dict(counter.statements)})

        app.router.add_get("/test/queries", queries)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"ready {port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    import logging

    import uvloop

    defaults = RoomTuning()
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue-bytes", type=int, default=defaults.send_queue_bytes)
    parser.add_argument("--send-buffer", type=int, default=defaults.socket_send_buffer)
    parser.add_argument("--heartbeat", type=float, default=defaults.heartbeat_s)
    parser.add_argument("--count-queries", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tuning = RoomTuning(
        send_queue_bytes=args.queue_bytes,
        socket_send_buffer=args.send_buffer,
        heartbeat_s=args.heartbeat,
    )
    uvloop.run(_serve(tuning, args.count_queries))


if __name__ == "__main__":
    main()
