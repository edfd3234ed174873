"""One load-generator process of ``python -m bench rooms``.

Started by bench/rooms.py as ``python -m bench.loadgen`` (several at once, so
the generator is not the bottleneck), it holds its share of the run's bidder
and watcher sockets and plays the scenario on them:

1. reads one JSON line on stdin (`Config`), opens every socket (a bidder's
   authenticates) and prints ``{"event": "ready", ...}``;
2. reads ``{"start_ns", "stop_ns"}`` (``time.monotonic_ns``, which is one clock
   for every process of the machine on Linux) and bids from start to stop;
3. waits up to ``drain_s`` for the answers still out, writes what it measured
   to ``results_path`` (a pickle of `Results`) and prints ``{"event": "done"}``.

It exits when stdin closes early (the orchestrator is gone) and is killed by
SIGALRM after ``deadline_s`` whatever happens.

The sockets are a small RFC 6455 client on asyncio.Protocol, not aiohttp's:
a watcher costs a few microseconds per frame (frames parsed in bulk from each
read, one msgspec decode each, no task or future per message), which keeps
thousands of them on one core. Client frames are masked as the RFC requires;
server pings are answered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import pickle
import random
import resource
import signal
import struct
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import uvloop

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA
#: A delivery's key: the auction's index in the high bits, the bid's amount in
#: the low ones (accepted amounts rise strictly within an auction, so the pair
#: names one bid; the bidder's `bid_result` carries the amount, not the seq).
AMOUNT_BITS = 44
MAX_AMOUNT_KOBO = (1 << AMOUNT_BITS) - 1
#: A process whose event loop fell this far behind within the last two seconds
#: did not keep up: a socket the server dropped then may have been its fault.
KEPT_UP_LAG_MS = 100.0
#: How often the lag probe wakes up.
LAG_PROBE_S = 0.01
#: A socket lost during the run (``reconnect``): how often it tries the next node
#: (a killed node's clients move to a live one), waiting as the room page does
#: (web/static/room.js): 0.5 s, 1 s, 2 s ... up to 15 s, each ±25 % at random, so
#: a node's clients do not all come back in the same instant.
RECONNECT_ATTEMPTS = 50
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 15.0


def reconnect_delay_s(attempt: int, rng: random.Random) -> float:
    """The room page's wait before reconnect `attempt` (1 first)."""
    base: float = min(RECONNECT_MAX_S, RECONNECT_FIRST_S * (1 << min(attempt - 1, 5)))
    return base * (0.75 + rng.random() / 2)


def delivery_key(auction: int, amount_kobo: int) -> int:
    return (auction << AMOUNT_BITS) | amount_kobo


# ---- what the orchestrator sends and gets back ------------------------------------


class Config(msgspec.Struct, forbid_unknown_fields=True):
    index: int
    host: str
    port: int
    auction_ids: list[str]
    bidders: list[tuple[int, str]]  # (auction index, JWT) per bidder
    watchers: list[int]  # auction index per watcher
    scenario: str  # "steady" | "storm"
    rate: float  # steady: bids/s this process offers (Poisson arrivals)
    think_ms: float  # storm: a bidder's mean pause between bids at the start
    seed: int
    results_path: str
    deadline_s: float
    #: The share of bidders who also leave maximums (`max` frames), 0..1.
    max_share: float = 0.0
    connect_concurrency: int = 64
    connect_timeout_s: float = 60.0
    drain_s: float = 5.0
    #: Several nodes: their ports on `host` (empty: `port` alone). The n-th bidder
    #: (and the n-th watcher) of process k connects to ports[(k + n) % len(ports)],
    #: so every node gets its share of every process's sockets.
    ports: list[int] = []
    #: A socket lost during the run connects again, to the next node, and carries on.
    reconnect: bool = False


class Go(msgspec.Struct, forbid_unknown_fields=True):
    start_ns: int
    stop_ns: int


#: What a record is (`Bids.kind`).
BID = 0
MAX = 1

#: Outcome codes of a bid as recorded (index into this tuple).
ACCEPTED = 0
UNANSWERED = 1
OUTCOMES: list[str] = ["accepted", "unanswered"]


@dataclass(slots=True)
class Bids:
    """Every bid this process sent, as columns."""

    client_bid_id: list[str] = field(default_factory=list)
    auction: array[int] = field(default_factory=lambda: array("q"))
    amount: array[int] = field(default_factory=lambda: array("q"))
    send_ns: array[int] = field(default_factory=lambda: array("q"))
    ack_ns: array[int] = field(default_factory=lambda: array("q"))  # 0: no answer
    outcome: array[int] = field(default_factory=lambda: array("h"))  # index into `outcomes`
    extended: array[int] = field(default_factory=lambda: array("b"))
    kind: array[int] = field(default_factory=lambda: array("b"))  # BID or MAX
    node: array[int] = field(default_factory=lambda: array("h"))  # port index it went to
    bid_id: dict[int, str] = field(default_factory=dict)  # record index → ledger id (accepted)

    def add(
        self,
        client_bid_id: str,
        auction: int,
        amount: int,
        send_ns: int,
        kind: int = BID,
        node: int = 0,
    ) -> int:
        self.client_bid_id.append(client_bid_id)
        self.kind.append(kind)
        self.node.append(node)
        self.auction.append(auction)
        self.amount.append(amount)
        self.send_ns.append(send_ns)
        self.ack_ns.append(0)
        self.outcome.append(UNANSWERED)
        self.extended.append(0)
        return len(self.send_ns) - 1


@dataclass(slots=True)
class Drop:
    kind: str  # "bidder" | "watcher"
    auction: int
    code: int | None  # the server's close code; None: the connection just ended
    at_ns: int
    kept_up: bool  # this process's loop was never KEPT_UP_LAG_MS behind in the 2 s before


@dataclass(slots=True)
class Results:
    index: int
    bids: Bids
    outcomes: list[str]
    delivery_key: array[int]  # watchers: one entry per bid event received in the run
    delivery_ns: array[int]
    #: watchers: bid events placed for a maximum (sent by no client: not in delivery_key)
    proxy_deliveries: int
    #: watchers per auction index connected from start to the end of the drain
    watchers_kept: dict[int, int]
    bidders_connected: int
    watchers_connected: int
    connect_failures: dict[str, int]
    connect_s: float
    drops: list[Drop]
    seq_gaps: int  # room events a socket never saw (its seq jumped)
    seq_repeats: int  # room events a socket saw twice or out of order
    errors: dict[str, int]  # `error` frames by code
    offered: int  # steady: arrivals scheduled; storm: bids sent
    no_idle_bidder: int  # steady arrivals with no idle bidder to send them
    lag_ms_per_s: list[float]  # the loop's worst lag in each second of the run
    cpu_s: float  # this process's CPU seconds from start to stop
    wall_s: float
    extensions: int = 0
    reconnects: int = 0  # sockets lost during the run and connected again (`reconnect`)
    reconnect_failures: int = 0  # ... and those that found no node to take them
    reconnects_unfinished: int = 0  # ... and those still trying when the run ended
    #: watchers per auction index connected when the bidding began
    watchers_at_go: dict[int, int] = field(default_factory=dict)
    #: watchers: bid events the platform placed (reserve protection; no client sent them)
    platform_deliveries: int = 0
    #: watchers: (auction index, "state:<status>" or "ended:<result>") → when a watcher of
    #: this process first received it during the run
    room_events: dict[tuple[int, str], int] = field(default_factory=dict)


# ---- frames --------------------------------------------------------------------------


def masked_frame(opcode: int, payload: bytes, mask: int) -> bytes:
    """One client frame (FIN set), masked with the 32-bit `mask` as RFC 6455 requires."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    key = mask.to_bytes(4, "big")
    if not size:
        return header + key
    stream = (key * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")
    return header + key + body


class HandshakeFailed(Exception):
    """The server answered the upgrade with something else than 101."""


class _SnapshotAuction(msgspec.Struct):
    status: str = ""
    min_next_bid_kobo: int = 0
    bid_increment_kobo: int = 0


class _You(msgspec.Struct):
    status: str | None = None
    max_kobo: int | None = None


class _AcceptedBid(msgspec.Struct):
    id: str = ""
    amount_kobo: int = 0
    extended: bool = False


class _MaxAnswer(msgspec.Struct):
    max_kobo: int = 0
    leading: bool = False


class Frame(msgspec.Struct):
    """The fields of API.md's server messages a generator reads."""

    type: str
    seq: int = 0
    amount_kobo: int = 0
    min_next_bid_kobo: int = 0
    status: str | None = ""  # `you`: null before this bidder's first bid here
    client_bid_id: str = ""
    code: str = ""
    bid: _AcceptedBid | None = None
    max: _MaxAnswer | None = None
    max_kobo: int | None = None  # `you`: this bidder's maximum (null: none)
    auction: _SnapshotAuction | None = None
    you: _You | None = None  # snapshot


class WatchFrame(msgspec.Struct):
    """A watcher needs less: what happened and where in the room's order."""

    type: str
    seq: int = 0
    amount_kobo: int = 0
    is_proxy: bool = False
    is_platform_bid: bool = False
    status: str = ""  # `state`
    result: str = ""  # `ended`


_decode_frame = msgspec.json.Decoder(Frame).decode
_decode_watch = msgspec.json.Decoder(WatchFrame).decode


# ---- one socket ------------------------------------------------------------------------


class Socket(asyncio.Protocol):
    """A WebSocket client to one room; subclasses say what a text frame does."""

    kind = "socket"

    def __init__(self, gen: Generator, auction: int, node: int = 0) -> None:
        self.gen = gen
        self.auction = auction
        self.node = node  # index into the generator's ports
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._key = base64.b64encode(os.urandom(16))
        self._upgraded = False
        self.opened: asyncio.Future[None] = _future(gen.loop)
        self.first_snapshot: asyncio.Future[None] = _future(gen.loop)
        self.has_snapshot = False
        self.last_seq = -1
        self.close_code: int | None = None
        self.ended = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        path = f"/ws/auctions/{self.gen.config.auction_ids[self.auction]}"
        host = f"{self.gen.config.host}:{self.gen.ports[self.node]}"
        transport.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {self._key.decode()}\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buffer = self._buffer
        buffer += data
        if not self._upgraded and not self._upgrade(buffer):
            return
        size_all = len(buffer)
        at = 0
        while size_all - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            size = second & 0x7F
            start = at + 2
            if size == 126:
                if size_all - start < 2:
                    break
                size = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif size == 127:
                if size_all - start < 8:
                    break
                size = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if size_all - start < size:
                break
            payload = bytes(buffer[start : start + size])
            at = start + size
            opcode = first & 0x0F
            if opcode == _TEXT:
                self.on_text(payload, now)
            elif opcode == _PING:
                self.send(_PONG, payload)
            elif opcode == _CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                self.send(_CLOSE, payload[:2])
                if self.transport is not None:
                    self.transport.close()
            elif opcode != _PONG:
                self.gen.errors["unexpected_opcode"] += 1
        if at:
            del buffer[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc!r}"))
        if not self.first_snapshot.done():
            self.first_snapshot.set_exception(ConnectionError(f"closed before a snapshot: {exc!r}"))
        self.gen.socket_lost(self)

    # the upgrade

    def _upgrade(self, buffer: bytearray) -> bool:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(buffer[:end]).decode("latin-1")
        del buffer[: end + 4]
        status = head.split("\r\n", 1)[0]
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()  # noqa: S324
        accept = next(
            (
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")[1:]
                if line.lower().startswith("sec-websocket-accept:")
            ),
            None,
        )
        if not status.startswith("HTTP/1.1 101") or accept != expected:
            if not self.opened.done():
                reason = status if not status.startswith("HTTP/1.1 101") else "bad accept key"
                self.opened.set_exception(HandshakeFailed(reason))
            if self.transport is not None:
                self.transport.close()
            return False
        self._upgraded = True
        if not self.opened.done():
            self.opened.set_result(None)
        return True

    # frames out

    def send(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(masked_frame(opcode, payload, self.gen.rng.getrandbits(32)))

    def send_text(self, payload: bytes) -> None:
        self.send(_TEXT, payload)

    def close(self) -> None:
        """Say goodbye (1000) and let the server close."""
        self.send(_CLOSE, (1000).to_bytes(2, "big"))
        if self.transport is not None:
            self.gen.loop.call_later(2.0, self.transport.abort)

    def again(self, node: int) -> Socket:
        """A fresh socket to the same room through `node`, in this one's place."""
        raise NotImplementedError

    # frames in

    def on_text(self, payload: bytes, now_ns: int) -> None:
        raise NotImplementedError

    def follow(self, seq: int) -> None:
        """Check a room event's place in the room's order."""
        if seq == self.last_seq + 1 or self.last_seq < 0:
            self.last_seq = seq
        elif seq > self.last_seq:
            self.gen.seq_gaps += seq - self.last_seq - 1
            self.last_seq = seq
        else:
            self.gen.seq_repeats += 1

    def took_snapshot(self, seq: int) -> None:
        self.last_seq = seq
        if not self.has_snapshot:
            self.has_snapshot = True
            self.first_snapshot.set_result(None)


class Watcher(Socket):
    """A guest in a room: notes when each bid event arrives."""

    kind = "watcher"

    def again(self, node: int) -> Watcher:
        return Watcher(self.gen, self.auction, node)

    def on_text(self, payload: bytes, now_ns: int) -> None:
        event = _decode_watch(payload)
        kind = event.type
        if kind == "bid":
            self.follow(event.seq)
            gen = self.gen
            if gen.recording and event.is_proxy:
                gen.proxy_deliveries += 1
            elif gen.recording and event.is_platform_bid:
                gen.platform_deliveries += 1
            elif gen.recording:
                gen.delivery_key.append((self.auction << AMOUNT_BITS) | event.amount_kobo)
                gen.delivery_ns.append(now_ns)
        elif kind in ("state", "ended"):
            self.follow(event.seq)
            if self.gen.recording:
                label = f"state:{event.status}" if kind == "state" else f"ended:{event.result}"
                self.gen.room_events.setdefault((self.auction, label), now_ns)
        elif kind == "snapshot":
            self.took_snapshot(event.seq)
        elif kind == "error":
            self.gen.errors["watcher_error"] += 1


class Bidder(Socket):
    """A signed-in bidder in one room: tracks the minimum next bid and bids on cue."""

    kind = "bidder"

    def __init__(
        self,
        gen: Generator,
        auction: int,
        number: int,
        token: str,
        *,
        sets_maxes: bool = False,
        node: int = 0,
    ) -> None:
        super().__init__(gen, auction, node)
        self.number = number
        self.token = token
        self.sets_maxes = sets_maxes
        self.max_kobo = 0  # this bidder's maximum here (0: none)
        self.min_next = 0
        self.increment = 0
        self.live = False
        self.leading = False
        self.pending: int | None = None  # the record index of the bid awaiting its answer
        self.sent = 0
        self.authenticated: asyncio.Future[None] = _future(gen.loop)

    def again(self, node: int) -> Bidder:
        fresh = Bidder(
            self.gen, self.auction, self.number, self.token, sets_maxes=self.sets_maxes, node=node
        )
        fresh.sent = self.sent  # its client_bid_ids go on from here, never repeat
        fresh.max_kobo = self.max_kobo
        return fresh

    @property
    def idle(self) -> bool:
        return self.pending is None and self.live and not self.leading and not self.ended

    def on_text(self, payload: bytes, now_ns: int) -> None:
        frame = _decode_frame(payload)
        kind = frame.type
        if kind == "bid":
            self.follow(frame.seq)
            self.min_next = frame.min_next_bid_kobo
        elif kind == "bid_result":
            self._answered(frame, now_ns)
        elif kind == "you":
            self.leading = frame.status == "winning"
            self.max_kobo = max(self.max_kobo, frame.max_kobo or 0)
            if not self.leading:
                self.gen.outbid(self)
        elif kind == "state":
            self.follow(frame.seq)
            self.live = frame.status == "live"
        elif kind == "ended":
            self.follow(frame.seq)
            self.live = False
        elif kind == "snapshot":
            self._snapshot(frame)
        elif kind == "error":
            self._error(frame, now_ns)

    def _snapshot(self, frame: Frame) -> None:
        auction = frame.auction
        if auction is not None:
            self.min_next = auction.min_next_bid_kobo
            self.increment = auction.bid_increment_kobo
            self.live = auction.status == "live"
        if frame.you is not None:
            self.max_kobo = max(self.max_kobo, frame.you.max_kobo or 0)
        if self.has_snapshot and not self.authenticated.done():
            self.authenticated.set_result(None)  # the second snapshot answers `auth`
        self.took_snapshot(frame.seq)

    def bid(self, now_ns: int, steps: int) -> None:
        """Send a bid `steps` increments above the minimum this bidder last saw; a
        bidder who leaves maximums sends, half the time, a maximum instead: 2 to 6
        increments above that bid, and above its own last maximum."""
        self.sent += 1
        amount = self.min_next + steps * self.increment
        client_bid_id = f"g{self.gen.config.index}-b{self.number}-{self.sent}"
        gen = self.gen
        if self.sets_maxes and gen.rng.random() < 0.5:
            above = max(amount, self.max_kobo)
            amount = above + gen.rng.randint(2, 6) * self.increment
            self.pending = gen.bids.add(client_bid_id, self.auction, amount, now_ns, MAX, self.node)
            self.send_text(
                b'{"type":"max","max_kobo":%d,"client_bid_id":"%s"}'
                % (amount, client_bid_id.encode())
            )
            return
        self.pending = gen.bids.add(client_bid_id, self.auction, amount, now_ns, BID, self.node)
        self.send_text(
            b'{"type":"bid","amount_kobo":%d,"client_bid_id":"%s"}'
            % (amount, client_bid_id.encode())
        )

    def _answered(self, frame: Frame, now_ns: int) -> None:
        index = self.pending
        bids = self.gen.bids
        if index is None or bids.client_bid_id[index] != frame.client_bid_id:
            self.gen.errors["unexpected_bid_result"] += 1
            return
        self.pending = None
        bids.ack_ns[index] = now_ns
        if frame.status == "accepted" and frame.max is not None:
            bids.outcome[index] = ACCEPTED
            self.max_kobo = max(self.max_kobo, frame.max.max_kobo)
            self.leading = frame.max.leading
        elif frame.status == "accepted" and frame.bid is not None:
            bids.outcome[index] = ACCEPTED
            bids.bid_id[index] = frame.bid.id
            if frame.bid.extended:
                bids.extended[index] = 1
        else:
            bids.outcome[index] = self.gen.outcome_code(frame.code or "rejected")
        self.gen.answered(self)

    def _error(self, frame: Frame, now_ns: int) -> None:
        self.gen.errors[frame.code or "error"] += 1
        if frame.code == "unauthenticated" and not self.authenticated.done():
            self.authenticated.set_exception(HandshakeFailed("auth refused: unauthenticated"))
            return
        index = self.pending
        if index is not None and frame.code in ("rate_limited", "internal", "unavailable"):
            # These answer the bid in flight: it was not placed (or its outcome is unknown).
            self.pending = None
            self.gen.bids.ack_ns[index] = now_ns
            self.gen.bids.outcome[index] = self.gen.outcome_code(f"error:{frame.code}")
            self.gen.answered(self)


# ---- the process ------------------------------------------------------------------------


class Generator:
    """This process's sockets, the scenario's clock and what it measured."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.ports = config.ports or [config.port]
        self.rng = random.Random(config.seed * 1000 + config.index)
        self.bids = Bids()
        self.outcomes = list(OUTCOMES)
        self._outcome_index = {name: i for i, name in enumerate(self.outcomes)}
        self.delivery_key: array[int] = array("q")
        self.delivery_ns: array[int] = array("q")
        self.proxy_deliveries = 0
        self.platform_deliveries = 0
        self.room_events: dict[tuple[int, str], int] = {}
        self.recording = False
        self.stopping = False
        self.bidders: list[Bidder] = []
        self.watchers: list[Watcher] = []
        self.drops: list[Drop] = []
        self.errors: Counter[str] = Counter()
        self.connect_failures: Counter[str] = Counter()
        self.seq_gaps = 0
        self.seq_repeats = 0
        self.offered = 0
        self.no_idle_bidder = 0
        self.lag_ms_per_s: list[float] = []
        self._lag_recent: list[tuple[int, float]] = []  # (ns, lag ms) above 1 ms, last seconds
        self._start_ns = 0
        self._stop_ns = 0
        self._storm_mean_s = config.think_ms / 1000
        self._answers_left: asyncio.Event = asyncio.Event()
        self.reconnects = 0
        self.reconnect_failures = 0
        self._spread = random.Random(config.seed * 31 + config.index)  # apart from the bids'

        self.watchers_at_go: Counter[int] = Counter()
        self._reconnecting: set[asyncio.Task[None]] = set()

    # outcomes

    def outcome_code(self, name: str) -> int:
        code = self._outcome_index.get(name)
        if code is None:
            code = self._outcome_index[name] = len(self.outcomes)
            self.outcomes.append(name)
        return code

    # connecting

    def _node(self, n: int) -> int:
        """The port index of this process's n-th bidder (or watcher): round-robin."""
        return (self.config.index + n) % len(self.ports)

    async def connect_all(self) -> float:
        started = time.perf_counter()
        gate = asyncio.Semaphore(self.config.connect_concurrency)
        jobs = [
            self._connect(Watcher(self, auction, self._node(n)), gate)
            for n, auction in enumerate(self.config.watchers)
        ]
        maxes = random.Random(self.config.seed * 7 + self.config.index)
        jobs += [
            self._connect(
                Bidder(
                    self,
                    auction,
                    self.config.index * 1_000_000 + n,
                    token,
                    sets_maxes=maxes.random() < self.config.max_share,
                    node=self._node(n),
                ),
                gate,
            )
            for n, (auction, token) in enumerate(self.config.bidders)
        ]
        await asyncio.gather(*jobs)
        return time.perf_counter() - started

    async def _connect(self, sock: Socket, gate: asyncio.Semaphore) -> None:
        async with gate:
            failure = await self._open(sock)
        if failure is not None:
            self.connect_failures[failure] += 1
        elif isinstance(sock, Bidder):
            self.bidders.append(sock)
        else:
            assert isinstance(sock, Watcher)
            self.watchers.append(sock)

    async def _open(self, sock: Socket) -> str | None:
        """Connect `sock`, take its snapshot, sign a bidder in; why not, or None."""
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                await self.loop.create_connection(
                    lambda: sock, self.config.host, self.ports[sock.node]
                )
                await sock.opened
                await sock.first_snapshot
                if isinstance(sock, Bidder):
                    sock.send_text(msgspec.json.encode({"type": "auth", "token": sock.token}))
                    await sock.authenticated
        except (OSError, HandshakeFailed, ConnectionError, TimeoutError) as err:
            if sock.transport is not None:
                sock.transport.abort()
            return str(err) if isinstance(err, HandshakeFailed) else type(err).__name__
        return None

    async def _reconnect(self, lost: Socket) -> None:
        """`lost` again through another node, picked at random (a dead node's sockets
        spread over the others, as behind a load balancer), then the next, until one
        takes it; the new socket takes its place (a bidder keeps its count of bids)."""
        count = len(self.ports)
        node = (lost.node + self._spread.randrange(count - 1)) % count if count > 1 else 0
        for attempt in range(1, RECONNECT_ATTEMPTS + 1):
            await asyncio.sleep(reconnect_delay_s(attempt, self._spread))
            if self.stopping:
                break
            node = (node + 1) % count
            fresh = lost.again(node)
            if await self._open(fresh) is None:
                self._crowd(fresh)[self._crowd(lost).index(lost)] = fresh
                self.reconnects += 1
                return
        self.reconnect_failures += 1

    def _crowd(self, sock: Socket) -> list[Any]:
        """The list `sock`'s kind is kept in (bidders or watchers)."""
        return self.bidders if isinstance(sock, Bidder) else self.watchers

    def socket_lost(self, sock: Socket) -> None:
        if self.stopping or not sock.opened.done() or sock.opened.exception() is not None:
            return
        if isinstance(sock, Bidder) and sock.pending is not None:
            sock.pending = None  # stays "unanswered"
            self.answered(sock)
        if not sock.has_snapshot:
            return  # a failure while connecting, counted there
        now = time.monotonic_ns()
        kept_up = all(
            lag < KEPT_UP_LAG_MS for at, lag in self._lag_recent if now - at < 2_000_000_000
        )
        self.drops.append(Drop(sock.kind, sock.auction, sock.close_code, now, kept_up))
        if self.config.reconnect and self.recording and sock in self._crowd(sock):
            task = self.loop.create_task(self._reconnect(sock))
            self._reconnecting.add(task)
            task.add_done_callback(self._reconnecting.discard)

    # the scenario

    async def play(self, go: Go) -> None:
        self._start_ns, self._stop_ns = go.start_ns, go.stop_ns
        self.watchers_at_go = Counter(w.auction for w in self.watchers if not w.ended)
        self.recording = True
        await asyncio.sleep(max(0.0, (go.start_ns - time.monotonic_ns()) / 1e9))
        if self.config.scenario == "storm":
            await self._storm()
        else:
            await self._steady()

    async def _steady(self) -> None:
        """Poisson arrivals at `rate`; each goes to a random idle bidder, if any."""
        rate = self.config.rate
        if rate <= 0 or not self.bidders:
            await self._sleep_until(self._stop_ns)
            return
        rng = self.rng
        at = self._start_ns
        while True:
            at += int(rng.expovariate(rate) * 1e9)
            if at >= self._stop_ns:
                break
            wait = (at - time.monotonic_ns()) / 1e9
            if wait > 0.001:
                await asyncio.sleep(wait)
            self.offered += 1
            bidder = self._idle_bidder()
            if bidder is None:
                self.no_idle_bidder += 1
                continue
            bidder.bid(time.monotonic_ns(), _steps(rng, (0.7, 0.95)))
        await self._sleep_until(self._stop_ns)

    def _idle_bidder(self) -> Bidder | None:
        bidders, rng = self.bidders, self.rng
        for _ in range(16):
            bidder = bidders[rng.randrange(len(bidders))]
            if bidder.idle:
                return bidder
        return None

    async def _storm(self) -> None:
        """Every bidder bids, waits for the answer, pauses, bids again; outbid, it
        answers fast. The pauses shrink to a quarter by the end: the frenzy grows."""
        for bidder in self.bidders:
            self._later(bidder, self.rng.uniform(0, 2 * self._storm_mean_s))
        await self._sleep_until(self._stop_ns)

    def _storm_pause(self) -> float:
        span = max(1, self._stop_ns - self._start_ns)
        done = min(1.0, max(0.0, (time.monotonic_ns() - self._start_ns) / span))
        return self.rng.uniform(0, 2 * self._storm_mean_s * (1 - 0.75 * done))

    def _later(self, bidder: Bidder, delay_s: float) -> None:
        self.loop.call_later(delay_s, self._storm_bid, bidder)

    def _storm_bid(self, bidder: Bidder) -> None:
        now = time.monotonic_ns()
        if now >= self._stop_ns or bidder.ended or bidder.pending is not None:
            return
        if bidder.leading:
            return  # `outbid` brings it back
        if not bidder.live:
            self._later(bidder, 0.05)
            return
        self.offered += 1
        bidder.bid(now, _steps(self.rng, (0.9, 1.0)))

    def answered(self, bidder: Bidder) -> None:
        if self.config.scenario == "storm" and not self.stopping:
            self._later(bidder, self._storm_pause())
        if self._pending() == 0:
            self._answers_left.set()

    def outbid(self, bidder: Bidder) -> None:
        if self.config.scenario == "storm" and not self.stopping and bidder.pending is None:
            self._later(bidder, self._storm_pause() / 2)

    def _pending(self) -> int:
        return sum(1 for bidder in self.bidders if bidder.pending is not None)

    async def _sleep_until(self, ns: int) -> None:
        await asyncio.sleep(max(0.0, (ns - time.monotonic_ns()) / 1e9))

    async def drain(self) -> None:
        """Wait for the answers still out (up to drain_s) and the events behind them."""
        deadline = time.monotonic() + self.config.drain_s
        while self._pending() and time.monotonic() < deadline:
            self._answers_left.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._answers_left.wait()
        await asyncio.sleep(min(1.0, self.config.drain_s))  # the room events of the last acks

    # the loop's health

    async def probe_lag(self) -> None:
        """The loop's lateness in waking up, the worst of each second of the run."""
        worst = 0.0
        second = 0
        while True:
            before = time.monotonic_ns()
            await asyncio.sleep(LAG_PROBE_S)
            now = time.monotonic_ns()
            lag = max(0.0, (now - before) / 1e6 - LAG_PROBE_S * 1000)
            if lag > 1.0:
                self._lag_recent.append((now, lag))
                if len(self._lag_recent) > 1000:
                    del self._lag_recent[:500]
            if self.recording and self._start_ns and now >= self._start_ns:
                current = (now - self._start_ns) // 1_000_000_000
                if current != second:
                    self.lag_ms_per_s.extend([worst] + [0.0] * max(0, current - second - 1))
                    worst, second = 0.0, current
                worst = max(worst, lag)

    # results

    def results(self, connect_s: float, cpu_s: float) -> Results:
        kept: Counter[int] = Counter(w.auction for w in self.watchers if not w.ended)
        return Results(
            index=self.config.index,
            bids=self.bids,
            outcomes=self.outcomes,
            delivery_key=self.delivery_key,
            delivery_ns=self.delivery_ns,
            proxy_deliveries=self.proxy_deliveries,
            watchers_kept=dict(kept),
            bidders_connected=len(self.bidders),
            watchers_connected=len(self.watchers),
            connect_failures=dict(self.connect_failures),
            connect_s=connect_s,
            drops=self.drops,
            seq_gaps=self.seq_gaps,
            seq_repeats=self.seq_repeats,
            errors=dict(self.errors),
            offered=self.offered,
            no_idle_bidder=self.no_idle_bidder,
            lag_ms_per_s=self.lag_ms_per_s,
            cpu_s=cpu_s,
            wall_s=(self._stop_ns - self._start_ns) / 1e9,
            extensions=sum(self.bids.extended),
            reconnects=self.reconnects,
            reconnect_failures=self.reconnect_failures,
            reconnects_unfinished=len(self._reconnecting),
            watchers_at_go=dict(self.watchers_at_go),
            platform_deliveries=self.platform_deliveries,
            room_events=self.room_events,
        )


def _steps(rng: random.Random, cumulative: tuple[float, float]) -> int:
    """0, 1 or 2 increments above the minimum, by the cumulative shares given."""
    r = rng.random()
    return 0 if r < cumulative[0] else 1 if r < cumulative[1] else 2


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _say(**message: Any) -> None:
    sys.stdout.write(msgspec.json.encode(message).decode() + "\n")
    sys.stdout.flush()


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 28)  # the config carries every bidder's token
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _line(reader: asyncio.StreamReader, kind: type[Any]) -> Any:
    line = await reader.readline()
    if not line:
        raise SystemExit("bench.loadgen: stdin closed (the orchestrator is gone)")
    return msgspec.json.decode(line, type=kind)


async def main() -> None:
    reader = await _stdin()
    config: Config = await _line(reader, Config)
    signal.alarm(max(1, int(config.deadline_s)))  # the hard cap: SIGALRM ends the process
    gen = Generator(config, asyncio.get_running_loop())
    connect_s = await gen.connect_all()
    _say(
        event="ready",
        index=config.index,
        bidders=len(gen.bidders),
        watchers=len(gen.watchers),
        failures=dict(gen.connect_failures),
        connect_s=round(connect_s, 2),
    )
    go: Go = await _line(reader, Go)
    # stdin closing from now on means the orchestrator is gone: stop at once.
    gone = asyncio.ensure_future(reader.read())
    probe = asyncio.ensure_future(gen.probe_lag())
    cpu = _cpu_s()
    player = asyncio.ensure_future(gen.play(go))
    await asyncio.wait({player, gone}, return_when=asyncio.FIRST_COMPLETED)
    if gone.done() and not player.done():
        raise SystemExit("bench.loadgen: stdin closed during the run")
    player.result()
    cpu = _cpu_s() - cpu
    await gen.drain()
    gen.recording = False
    gen.stopping = True
    probe.cancel()
    results = gen.results(connect_s, cpu)
    await asyncio.to_thread(_dump, results, config.results_path)
    for sock in [*gen.bidders, *gen.watchers]:
        sock.close()
    await asyncio.sleep(0.2)
    _say(event="done", index=config.index)
    gone.cancel()


def _dump(results: Results, path: str) -> None:
    with open(path, "wb") as out:
        pickle.dump(results, out, protocol=pickle.HIGHEST_PROTOCOL)


def _future(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    """A future whose failure nobody may await (a socket lost while nobody waits)
    without asyncio logging "exception was never retrieved"."""
    future: asyncio.Future[None] = loop.create_future()
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


if __name__ == "__main__":
    # Through the module, so the results pickle as bench.loadgen.*, not __main__.*.
    from bench import loadgen

    uvloop.run(loadgen.main())
