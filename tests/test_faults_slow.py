"""Slow and malicious sockets do not slow anyone else down.

A real `python -m engine serve` on a PostgreSQL of the test's own (fsync on, as in
production), under the soak's moderate load (bench/soak.py: 4 live auctions, 25
guest watchers and 6 bidders in each, 40 bids/s). The same load is measured for
PHASE_S seconds at a time, without attackers and then with each kind:

- `stuck`: sockets that complete the WebSocket handshake with a tiny receive
  buffer and never read a byte again (in the busy rooms);
- `trickle`: the same, reading one byte a second;
- `idle`: 1,000 sockets: 500 WebSockets in a quiet room that never read nor
  send, and 500 connections that sent half an HTTP request and stopped;
- `all` of them at once.

Targets for the honest clients, in every phase: acknowledgement p99 ≤ 25 ms
(`bid` sent → `bid_result` accepted) and delivery p99 ≤ 50 ms (`bid` sent → the
room's `bid` event at a watcher). After the attackers leave, the server holds no
socket of theirs. `-s` prints the table.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bench.soak import (
    LoadShape,
    SteadyLoad,
    scrape,
    server_quantiles,
)
from tests.fault_helpers import (
    EngineServer,
    Platform,
    engine_env,
    now_ms,
    own_postgres,
    running_engine,
    wait_until,
)

pytestmark = pytest.mark.slow  # long-running; still in the default run

PHASE_S = 6.0
ATTACKERS = 20  # stuck, and as many trickling
IDLE = 1_000
ACK_P99_MS = 25.0
DELIVERY_P99_MS = 50.0
SHAPE = LoadShape(auctions=4, watchers=25, bidders=6, rate=40.0, auction_seconds=3_600.0)


@pytest_asyncio.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineServer]:
    async with (
        own_postgres() as (_, dsn),
        running_engine(engine_env(dsn), tmp_path / "engine.log") as server,
    ):
        yield server


async def raw_socket(port: int, request: bytes, receive_buffer: int | None = None) -> socket.socket:
    """A connection that sends `request` and, for a WebSocket upgrade, reads the
    handshake's answer (byte by byte, nothing more)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connect, so the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, request)
    if b"Upgrade: websocket" in request:
        head = b""
        async with asyncio.timeout(10):
            while b"\r\n\r\n" not in head:
                head += await loop.sock_recv(sock, 1)
        assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def upgrade(port: int, auction: uuid.UUID) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws/auctions/{auction} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def half_request(port: int) -> bytes:
    return f"GET /api/auctions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()


async def trickle(sock: socket.socket) -> None:
    """Read one byte a second, for ever."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        while True:
            if not await loop.sock_recv(sock, 1):
                return
            await asyncio.sleep(1)


class Attack:
    """Every attacker's socket, opened and closed on demand."""

    def __init__(self, engine: EngineServer, busy: list[uuid.UUID], quiet: uuid.UUID) -> None:
        self.engine, self.busy, self.quiet = engine, busy, quiet
        self.sockets: list[socket.socket] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def stuck(self) -> None:
        port = self.engine.port
        for n in range(ATTACKERS):
            room = self.busy[n % len(self.busy)]
            self.sockets.append(await raw_socket(port, upgrade(port, room), 4096))

    async def trickle(self) -> None:
        port = self.engine.port
        for n in range(ATTACKERS):
            room = self.busy[n % len(self.busy)]
            sock = await raw_socket(port, upgrade(port, room), 4096)
            self.sockets.append(sock)
            self.tasks.append(asyncio.create_task(trickle(sock)))

    async def idle(self) -> None:
        port = self.engine.port
        for n in range(IDLE):
            request = upgrade(port, self.quiet) if n % 2 else half_request(port)
            self.sockets.append(await raw_socket(port, request))

    async def leave(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for sock in self.sockets:
            sock.close()
        self.sockets, self.tasks = [], []


async def measure(
    load: SteadyLoad, engine: EngineServer, http: aiohttp.ClientSession
) -> dict[str, Any]:
    """The load's figures over one phase, the server's too."""
    before = await scrape(http, engine.base)
    load.take_window()
    await asyncio.sleep(PHASE_S)
    window = load.take_window().summary()
    server = server_quantiles(before, await scrape(http, engine.base))
    started = time.perf_counter()
    async with http.ws_connect(engine.room_url(load.auctions[0])) as ws:
        await ws.receive(timeout=5)  # a newcomer's snapshot
    window["newcomer_ms"] = round((time.perf_counter() - started) * 1000, 1)
    window["server"] = server
    window["client_sockets_held"] = engine.client_sockets()
    return window


async def test_slow_and_idle_sockets_do_not_slow_the_other_clients(engine: EngineServer) -> None:
    phases: dict[str, dict[str, Any]] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        platform = Platform(http, engine.base)
        load = SteadyLoad(http, engine, platform, SHAPE)
        seller = await platform.user("dealer")
        quiet = await platform.auction(
            seller, start_ms=now_ms() - 1000, end_ms=now_ms() + 3_600_000
        )
        await load.start()
        attack = Attack(engine, load.auctions, quiet)
        try:
            phases["none"] = await measure(load, engine, http)
            for name, opens in (
                ("stuck", [attack.stuck]),
                ("trickle", [attack.trickle]),
                ("idle", [attack.idle]),
                ("all", [attack.stuck, attack.trickle, attack.idle]),
            ):
                for open_sockets in opens:
                    await open_sockets()
                phases[name] = await measure(load, engine, http)
                await attack.leave()
            honest = phases["none"]["client_sockets_held"]
            await wait_until(
                lambda: engine.client_sockets() <= honest + 2, 15, "the attackers' sockets close"
            )
            phases["after"] = await measure(load, engine, http)
        finally:
            await attack.leave()
            await load.stop()
    print(f"\n{SHAPE}; {PHASE_S:.0f} s a phase (client-side ms; server: bucket bounds, ms)")
    print(
        f"{'phase':<8}{'acks':>6}{'ack p50':>9}{'ack p99':>9}{'dlv p50':>9}{'dlv p99':>9}"
        f"{'srv bid p99':>13}{'srv fan-out p99':>17}{'newcomer':>10}{'sockets':>9}"
    )
    for name, phase in phases.items():
        server = phase["server"]
        print(
            f"{name:<8}{phase['accepted']:>6}{phase['ack_ms']['p50']:>9}{phase['ack_ms']['p99']:>9}"
            f"{phase['delivery_ms']['p50']:>9}{phase['delivery_ms']['p99']:>9}"
            f"{server['bid_latency']['p99_le']!s:>13}{server['fanout']['p99_le']!s:>17}"
            f"{phase['newcomer_ms']:>10}{phase['client_sockets_held']:>9}"
        )
    for name, phase in phases.items():
        assert phase["errors"] == {} and phase["rejected"] == {}, (name, phase)
        assert phase["ack_ms"]["p99"] <= ACK_P99_MS, (name, phase["ack_ms"])
        assert phase["delivery_ms"]["p99"] <= DELIVERY_P99_MS, (name, phase["delivery_ms"])
    assert phases["after"]["client_sockets_held"] <= phases["none"]["client_sockets_held"] + 2
    assert engine.running
