"""A client that stops reading is dropped (1013) and does not slow the others.

Measured against a real server process: healthy watchers' delivery latency
(bid sent → its room event received) while bids stream in, first with no stuck
client, then with one that never reads a byte (its receive window kept small,
as a phone on a dead network would). The numbers are printed (`-s` shows them).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import statistics
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest_asyncio

from tests.ws_helpers import RoomClient, ServerProcess, World, make_world, process_env

START = 100_000_000
STEP = 5_000_000
BIDDERS = 4
# Sized for the test suite's time budget; larger runs by environment, e.g.
# WS_FANOUT_WATCHERS=200 WS_FANOUT_STUCK=5 pytest tests/test_ws_fanout.py -s
WATCHERS = int(os.environ.get("WS_FANOUT_WATCHERS", "20"))
STUCK = int(os.environ.get("WS_FANOUT_STUCK", "1"))
BIDS_PER_PHASE = int(os.environ.get("WS_FANOUT_BIDS", "600"))
BIDS_PER_S = int(os.environ.get("WS_FANOUT_BIDS_PER_S", "500"))
# Small on purpose, so a stuck client fills them within a phase; production's are larger.
QUEUE_BYTES = 64 * 1024
SEND_BUFFER = 16 * 1024


class Event(msgspec.Struct):
    type: str
    amount_kobo: int = 0
    seq: int = 0


_decode = msgspec.json.Decoder(Event).decode


@pytest_asyncio.fixture
async def server(pool: Any, database_url: str) -> AsyncIterator[tuple[ServerProcess, World]]:
    world = await make_world(pool, bidders=BIDDERS)
    process = await ServerProcess.start(
        # Every bidder socket sends far more than a person would, and the watchers
        # all come from one loopback address.
        process_env(
            database_url,
            WS_BIDS_PER_S="100000",
            WS_FRAMES_PER_S="100000",
            WS_SOCKETS_PER_IP="100000",
        ),
        "--queue-bytes",
        str(QUEUE_BYTES),
        "--send-buffer",
        str(SEND_BUFFER),
    )
    try:
        yield process, world
    finally:
        await process.stop()


class Watcher:
    """Reads every room event as it comes and notes when each bid's event arrived."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.arrived: dict[int, float] = {}  # amount → perf_counter
        self.seqs: list[int] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            event = _decode(message.data)
            if event.type == "bid":
                self.arrived[event.amount_kobo] = time.perf_counter()
                self.seqs.append(event.seq)


async def stream_bids(
    bidders: list[aiohttp.ClientWebSocketResponse], first: int, count: int
) -> dict[int, float]:
    """`count` rising bids at BIDS_PER_S, round-robin over the bidders; when each was sent."""
    sent: dict[int, float] = {}
    interval = 1 / BIDS_PER_S
    began = time.perf_counter()
    for i in range(count):
        amount = START + (first + i) * STEP
        ws = bidders[i % len(bidders)]
        sent[amount] = time.perf_counter()
        await ws.send_str(
            f'{{"type":"bid","amount_kobo":{amount},"client_bid_id":"{uuid.uuid4().hex}"}}'
        )
        await asyncio.sleep(max(0.0, began + (i + 1) * interval - time.perf_counter()))
    return sent


def latencies_ms(sent: dict[int, float], watchers: list[Watcher]) -> list[float]:
    return [
        (watcher.arrived[amount] - at) * 1000
        for watcher in watchers
        for amount, at in sent.items()
        if amount in watcher.arrived
    ]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[int(len(ordered) * 0.99) - 1], 2),
        "max": round(ordered[-1], 2),
    }


async def stuck_reader(port: int, auction_id: uuid.UUID) -> socket.socket:
    """A WebSocket client that completes the handshake and never reads again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/auctions/{auction_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), timeout=5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def close_code_after_draining(sock: socket.socket) -> int | None:
    """Read everything the server queued for the stuck client: the close frame's code."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(10):
        while chunk := await loop.sock_recv(sock, 1 << 16):
            data += chunk
    at = 0
    while at + 2 <= len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if size == 126:
            size, at = struct.unpack_from("!H", data, at)[0], at + 2
        elif size == 127:
            size, at = struct.unpack_from("!Q", data, at)[0], at + 8
        if opcode == 0x8:
            code: int = struct.unpack_from("!H", data, at)[0]
            return code
        at += size
    return None


async def metric(session: aiohttp.ClientSession, base: str, name: str) -> float:
    text = await (await session.get(f"{base}/metrics")).text()
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found is not None, name
    return float(found.group(1))


async def fanout_totals(session: aiohttp.ClientSession, base: str) -> tuple[float, float]:
    return (
        await metric(session, base, "auction_fanout_seconds_sum"),
        await metric(session, base, "auction_fanout_seconds_count"),
    )


def mean_ms(before: tuple[float, float], after: tuple[float, float]) -> float:
    count = after[1] - before[1]
    return round((after[0] - before[0]) / count * 1000, 3) if count else 0.0


async def test_a_stuck_client_is_dropped_and_does_not_delay_the_others(
    server: tuple[ServerProcess, World],
) -> None:
    process, world = server
    url = process.room_url(world.auction_id)
    # No connector limit: each WebSocket holds its connection for good.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        watchers = [Watcher(await session.ws_connect(url)) for _ in range(WATCHERS)]
        bidders = []
        for user in world.bidders:
            client = await RoomClient.connect(session, url, token=world.token(user))
            bidders.append(client.ws)
        readers = [asyncio.create_task(_drain(ws)) for ws in bidders]

        fanout_0 = await fanout_totals(session, process.base)
        sent = await stream_bids(bidders, 0, BIDS_PER_PHASE)
        await asyncio.sleep(0.5)
        without = latencies_ms(sent, watchers)
        fanout_1 = await fanout_totals(session, process.base)

        stuck = [await stuck_reader(process.port, world.auction_id) for _ in range(STUCK)]
        sent_stuck = await stream_bids(bidders, BIDS_PER_PHASE, BIDS_PER_PHASE)
        await asyncio.sleep(0.5)
        with_stuck = latencies_ms(sent_stuck, watchers)
        fanout_2 = await fanout_totals(session, process.base)

        dropped = await metric(session, process.base, "auction_ws_slow_clients_dropped_total")
        codes = [await close_code_after_draining(sock) for sock in stuck]
        for sock in stuck:
            sock.close()
        await asyncio.sleep(0.2)
        connections = await metric(session, process.base, "auction_ws_connections")

        base, loaded = summary(without), summary(with_stuck)
        print(
            f"\nfan-out to {WATCHERS} healthy watchers, {BIDS_PER_S} bids/s, "
            f"{BIDS_PER_PHASE} bids per phase (bid sent → event received, ms):"
            f"\n  no stuck client:    {base}\n  {STUCK} stuck client(s): {loaded}"
            "\nserver side, commit → last socket written (auction_fanout_seconds), mean ms:"
            f" {mean_ms(fanout_0, fanout_1)} without, {mean_ms(fanout_1, fanout_2)} with"
        )
        # Every event, in order, to every healthy watcher (a few bids lose the race
        # between the bidders' sockets and are rejected: no event for those).
        seqs = watchers[0].seqs
        assert len(seqs) > 1.8 * BIDS_PER_PHASE
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert all(watcher.seqs == seqs for watcher in watchers)
        assert dropped == STUCK
        assert connections == WATCHERS + BIDDERS
        assert codes == [1013] * STUCK
        assert loaded["p99"] <= 3 * base["p99"] + 20, (base, loaded)
        for task in [*readers, *(w.task for w in watchers)]:
            task.cancel()


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass
