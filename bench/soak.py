"""The ``soak`` scenario: a real server process under moderate, steady load for a long time.

``python -m bench soak --minutes 60`` starts its own embedded PostgreSQL (fsync
on) in a temporary directory, runs ``python -m engine serve`` against it as a
separate process, and drives it the way production does: the remaining
platform creates users, credits wallets, lists vehicles and schedules auctions
through the internal API; bidders and guest watchers use the WebSocket rooms.

``--auctions`` auctions are live at any moment; each runs ``--auction-seconds``
(no anti-sniping, so it ends on time), is ended by the engine's own scheduler
(end processing: deposit hold, settlement offer, notifications) and is replaced
by a new one, whose room the same bidders and fresh watchers join. Bids go out
at ``--rate`` per second in total, each one increment above the last on its
auction, from the auction's bidders in turn.

Measured per ``--window-seconds`` window: the bidder's acknowledgement latency
(``bid`` sent → ``bid_result`` accepted) and the watchers' delivery latency
(``bid`` sent → the room's ``bid`` event received by a watcher), the server's
RSS and open file descriptors (``/proc/PID``). The verdict, after the first
``--warmup-windows`` windows:

- RSS flat: the last window's RSS at most ``--rss-growth-pct`` above the first
  counted window's;
- no descriptor leak: with the load stopped and every client gone, the server
  holds no client socket and at most the database pool's connections more
  descriptors than before the load (asyncpg keeps idle pool connections open);
- no drift: the last window's p99 (acknowledgement and delivery) at most
  ``--p99-factor`` times the first counted window's plus ``--p99-slack-ms``.

At the end every acknowledged bid must be in the ledger once, and every wallet
balance must equal the sum of its transactions (``WALLET_RECONCILIATION``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import uvloop

from bench.core import BenchFailure
from bench.report import Result, emit, environment, progress
from engine.database import dsn_for_database, embedded_server
from engine.tokens import mint_token

HELP = "a server process under steady load for N minutes: RSS, descriptors, latency drift"
REPO = Path(__file__).resolve().parent.parent
SECRET = "soak-jwt-secret-that-is-long-enough-for-hs256"  # noqa: S105  (a load test's)
SERVICE_TOKEN = "soak-internal-service-token"  # noqa: S105  (a load test's)
START_PRICE = 100_000_000  # ₦1,000,000
STEP = 5_000_000  # ₦50,000
BALANCE = 10**13  # ₦100 billion: buying power never refuses a soak bid
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"

#: Every wallet balance equals the sum of its completed transactions: money in
#: (deposit, refund, bid_deposit_release, commission_earned: the platform's
#: revenue, a forfeited deposit or a sale's commission) less money out (withdrawal,
#: bid_deposit_hold).
#: `auction_payment` comes from outside the wallet and leaves the balance as it is.
#: Rows are the users whose balance disagrees; a type the engine does not write
#: makes the sum NULL, so it shows up rather than counting as zero.
WALLET_RECONCILIATION = """
WITH moved AS (
  SELECT user_id,
         SUM(CASE type
               WHEN 'deposit' THEN amount
               WHEN 'refund' THEN amount
               WHEN 'bid_deposit_release' THEN amount
               WHEN 'commission_earned' THEN amount
               WHEN 'withdrawal' THEN -amount
               WHEN 'bid_deposit_hold' THEN -amount
               WHEN 'auction_payment' THEN 0
             END) AS net
  FROM transactions WHERE status = 'completed' GROUP BY user_id
)
SELECT u.id, u.wallet_balance, m.net
FROM users u LEFT JOIN moved m ON m.user_id = u.id
WHERE m.net IS DISTINCT FROM u.wallet_balance
  AND NOT (m.net IS NULL AND u.wallet_balance = 0 AND NOT EXISTS
           (SELECT 1 FROM transactions t WHERE t.user_id = u.id))
ORDER BY u.id
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the load runs")
    parser.add_argument("--auctions", type=int, default=4, help="auctions live at any moment")
    parser.add_argument("--watchers", type=int, default=25, help="guest watchers per auction")
    parser.add_argument("--bidders", type=int, default=6, help="bidders per auction")
    parser.add_argument("--rate", type=float, default=60.0, help="bids per second, in total")
    parser.add_argument("--auction-seconds", type=float, default=300.0)
    parser.add_argument("--window-seconds", type=float, default=60.0)
    parser.add_argument("--warmup-windows", type=int, default=1)
    parser.add_argument("--rss-growth-pct", type=float, default=25.0)
    parser.add_argument("--p99-factor", type=float, default=2.0)
    parser.add_argument("--p99-slack-ms", type=float, default=10.0)
    parser.add_argument(
        "--database-url", default=None, help="default: an embedded PostgreSQL of its own"
    )


@dataclass(frozen=True, slots=True)
class SoakConfig:
    minutes: float = 60.0
    auctions: int = 4
    watchers: int = 25
    bidders: int = 6
    rate: float = 60.0
    auction_seconds: float = 300.0
    window_seconds: float = 60.0
    warmup_windows: int = 1
    rss_growth_pct: float = 25.0
    p99_factor: float = 2.0
    p99_slack_ms: float = 10.0
    database_url: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SoakConfig:
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})


# ---- the server process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: The bid log's signing seed of the servers a bench or test starts (none kept on disk).
LOG_SIGNING_KEY = "5e" * 32


def engine_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a server process on `database_url`, limits opened for
    load from one loopback address."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET": SECRET,
        "INTERNAL_API_TOKEN": SERVICE_TOKEN,
        "LOG_SIGNING_KEY": LOG_SIGNING_KEY,
        "RATE_LIMIT_IP_PER_MIN": "10000000",
        "RATE_LIMIT_USER_PER_MIN": "10000000",
        "WS_FRAMES_PER_S": "10000000",
        "WS_SOCKETS_PER_IP": "10000000",
        "LOG_LEVEL": os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class EngineServer:
    """`python -m engine serve` as its own process on a fixed port, so a restart
    keeps its address. Its output goes to `log_path`."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.env = dict(env)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    def room_url(self, auction_id: uuid.UUID | str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/auctions/{auction_id}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server is not running")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout_s: float = 60.0) -> float:
        """Spawn and wait for `/readyz` 200; the seconds that took."""
        if self.running:
            raise RuntimeError("the server is already running")
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "engine",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C on the bench is not the server's
            )
        self.starts += 1
        await self.wait_ready(timeout_s)
        return time.perf_counter() - started

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if not self.running:
                    raise RuntimeError(f"the server exited:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.base}/readyz") as reply:
                        if reply.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready in {timeout_s}s:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as a crash."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (graceful: the ledger is flushed), SIGKILL after `timeout_s`."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def client_sockets(self) -> int:
        """TCP connections to the server's port that the server holds (not its listener)."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    parts = line.split()
                    local_port = int(parts[1].rsplit(":", 1)[1], 16)
                    listening = parts[3] == "0A"
                    if local_port == self.port and not listening and parts[9] in inodes:
                        count += 1
        return count

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


@contextlib.asynccontextmanager
async def own_database() -> AsyncIterator[str]:
    """A fresh embedded PostgreSQL (fsync on) in a temporary directory: a database's dsn."""
    data_dir = Path(tempfile.mkdtemp(prefix="d360-soak-"))  # short: a socket lives in it
    try:
        async with embedded_server(data_dir) as admin_dsn:
            conn = await asyncpg.connect(admin_dsn)
            try:
                await conn.execute('CREATE DATABASE "soak"')
            finally:
                await conn.close()
            yield dsn_for_database(admin_dsn, "soak")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# ---- the remaining platform: the internal API ----------------------------------------


class ApiFailure(RuntimeError):
    """The engine answered an internal API call with an unexpected status."""


class Platform:
    """What the remaining platform does through the internal API, and the tokens
    its identity service would issue."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self._auth = {"Authorization": f"Bearer {SERVICE_TOKEN}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, json=body, headers=self._auth
        ) as reply:
            return reply.status, await reply.json(content_type=None)

    async def expect(self, statuses: tuple[int, ...], method: str, path: str, body: Any) -> Any:
        status, answer = await self.call(method, path, body)
        if status not in statuses:
            raise ApiFailure(f"{method} {path}: {status} {answer}")
        return answer

    async def user(self, role: str = "user", balance_kobo: int = 0) -> uuid.UUID:
        user_id = uuid.uuid4()
        body = {
            "email": f"{user_id.hex[:16]}@soak.invalid",
            "role": role,
            "kyc_status": "approved",
            "display_name": f"Soak {role}",
        }
        await self.expect((201,), "PUT", f"/internal/users/{user_id}", body)
        if balance_kobo:
            await self.credit(user_id, balance_kobo, f"fund-{user_id}")
        return user_id

    async def credit(self, user_id: uuid.UUID, amount_kobo: int, reference: str) -> Any:
        body = {"amount_kobo": amount_kobo, "reference": reference}
        path = f"/internal/users/{user_id}/wallet/credits"
        return await self.expect((200, 201), "POST", path, body)

    async def vehicle(self, listed_by: uuid.UUID, rng: random.Random | None = None) -> uuid.UUID:
        rng = rng or random.Random()
        body = {
            "vin": "".join(rng.choice(VIN_CHARS) for _ in range(17)),
            "year": 2019,
            "make": "Toyota",
            "model": "Camry",
            "body_type": "sedan",
            "listed_by": str(listed_by),
            "price_kobo": 1_500_000_000,
        }
        answer = await self.expect((201,), "POST", "/internal/vehicles", body)
        return uuid.UUID(answer["vehicle"]["id"])

    async def auction(
        self, seller: uuid.UUID, *, start_ms: int, end_ms: int, **fields: Any
    ) -> uuid.UUID:
        """A scheduled auction of a new vehicle; the engine's scheduler opens it at `start_ms`."""
        body = {
            "vehicle_id": str(await self.vehicle(seller)),
            "created_by": str(seller),
            "status": "scheduled",
            "start_time_ms": start_ms,
            "end_time_ms": end_ms,
            "start_price_kobo": START_PRICE,
            "bid_increment_kobo": STEP,
            **fields,
        }
        answer = await self.expect((201,), "POST", "/internal/auctions", body)
        return uuid.UUID(answer["auction"]["id"])


def token_for(user_id: uuid.UUID, role: str = "user", ttl_s: int = 6 * 3600) -> str:
    return mint_token(user_id, role, SECRET, ttl_s)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---- latency figures ---------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank quantile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary_ms(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": _round(quantile(values, 0.5)),
        "p99": _round(quantile(values, 0.99)),
        "max": _round(max(values) if values else None),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class Window:
    """What one stretch of the load measured."""

    acks_ms: list[float] = field(default_factory=list)
    delivery_ms: list[float] = field(default_factory=list)
    sent: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    ended: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "accepted": len(self.acks_ms),
            "rejected": dict(self.rejected),
            "errors": dict(self.errors),
            "auctions_ended": self.ended,
            "ack_ms": summary_ms(self.acks_ms),
            "delivery_ms": summary_ms(self.delivery_ms),
        }


# ---- the load ---------------------------------------------------------------------


class Frame(msgspec.Struct):
    """The fields of a server message the load reads."""

    type: str
    seq: int = 0
    amount_kobo: int = 0
    client_bid_id: str = ""
    status: str | None = ""  # `you`: null before this bidder's first bid here
    code: str = ""
    bid: dict[str, Any] | None = None
    auction: dict[str, Any] | None = None


_decode = msgspec.json.Decoder(Frame).decode


@dataclass(frozen=True, slots=True)
class LoadShape:
    auctions: int = 4
    watchers: int = 25
    bidders: int = 6
    rate: float = 60.0
    auction_seconds: float = 300.0


class SteadyLoad:
    """`shape.auctions` rooms always live, bids at `shape.rate`/s, watchers in every room.

    Every accepted bid's id is kept (`accepted_ids`) for the ledger check; the
    running `window` collects latencies until `take_window` swaps it."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        server: EngineServer,
        platform: Platform,
        shape: LoadShape,
    ) -> None:
        self.http = http
        self.server = server
        self._platform = platform
        self.shape = shape
        self.window = Window()
        self.accepted_ids: list[str] = []
        self.unanswered = 0
        self.auctions: list[uuid.UUID] = []
        self.watching = 0  # watcher sockets open now
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()
        self._seller: uuid.UUID | None = None
        self._bidders: list[list[uuid.UUID]] = []

    async def start(self) -> None:
        self._seller = await self._platform.user("dealer")
        for _ in range(self.shape.auctions):
            self._bidders.append(
                [await self._platform.user(balance_kobo=BALANCE) for _ in range(self.shape.bidders)]
            )
        first_ready = [asyncio.get_running_loop().create_future() for _ in self._bidders]
        for slot in range(self.shape.auctions):
            # Staggered, so auctions do not all end at once.
            first_s = self.shape.auction_seconds * (slot + 1) / self.shape.auctions
            task = asyncio.create_task(self._slot(slot, first_s, first_ready[slot]))
            self._tasks.append(task)
        await asyncio.gather(*first_ready)

    def take_window(self) -> Window:
        window, self.window = self.window, Window()
        return window

    async def stop(self) -> None:
        """Stop bidding, close every room's sockets, end the slots."""
        self.stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=30)
            for task in late:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []

    async def _slot(self, slot: int, first_s: float, ready: asyncio.Future[None]) -> None:
        seconds = first_s
        while not self.stopping.is_set():
            try:
                await self._one_auction(slot, seconds, ready)
            except Exception as err:  # counted as an error of the run, and the slot goes on
                if not ready.done():
                    ready.set_exception(err)
                    return
                self.window.errors[type(err).__name__] += 1
                progress(f"slot {slot}: {err!r}; a new auction in 1 s")
                await asyncio.sleep(1)
            seconds = self.shape.auction_seconds

    async def _one_auction(self, slot: int, seconds: float, ready: asyncio.Future[None]) -> None:
        assert self._seller is not None
        start = now_ms() - 1000
        end = start + 1000 + int(seconds * 1000)
        auction = await self._platform.auction(
            self._seller, start_ms=start, end_ms=end, anti_snipe_window_ms=0
        )
        self.auctions.append(auction)
        room = Room(self, auction, self._bidders[slot])
        try:
            await room.open()
            if not ready.done():
                ready.set_result(None)
            interval = self.shape.auctions / self.shape.rate
            await room.bid_until(end - 1500, interval)
            if not self.stopping.is_set():
                await room.wait_ended(end)
        finally:
            await asyncio.shield(room.close())


class Room:
    """One auction's watchers and bidders, for the auction's life."""

    def __init__(self, load: SteadyLoad, auction: uuid.UUID, bidders: list[uuid.UUID]) -> None:
        self.load = load
        self.auction = auction
        self.bidder_ids = bidders
        self.sent_at: dict[int, float] = {}  # amount → perf_counter when sent
        self.pending: dict[str, float] = {}  # client_bid_id → perf_counter when sent
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.bidder_sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: list[asyncio.Task[None]] = []
        self.live = asyncio.Event()
        self.ended = asyncio.Event()

    async def open(self) -> None:
        http, server = self.load.http, self.load.server
        url = server.room_url(self.auction)
        for _ in range(self.load.shape.watchers):
            ws = await http.ws_connect(url, autoping=True, heartbeat=None)
            self._read(ws, watcher=True)
            self.load.watching += 1
        for user in self.bidder_ids:
            ws = await http.ws_connect(url, autoping=True, heartbeat=None)
            first = _decode(await ws.receive_str(timeout=10))
            if first.type != "snapshot":
                raise ApiFailure(f"expected a snapshot, got {first.type}")
            await ws.send_str(
                msgspec.json.encode({"type": "auth", "token": token_for(user)}).decode()
            )
            self._read(ws, watcher=False)
            self.bidder_sockets.append(ws)
        async with asyncio.timeout(15):
            await self.live.wait()

    def _read(self, ws: aiohttp.ClientWebSocketResponse, *, watcher: bool) -> None:
        self.sockets.append(ws)
        self.readers.append(asyncio.create_task(self._reader(ws, watcher)))

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse, watcher: bool) -> None:
        load = self.load
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                frame = _decode(message.data)
                arrived = time.perf_counter()
                kind = frame.type
                if kind == "bid" and watcher:
                    sent = self.sent_at.get(frame.amount_kobo)
                    if sent is not None:
                        load.window.delivery_ms.append((arrived - sent) * 1000)
                elif kind == "bid_result":
                    sent = self.pending.pop(frame.client_bid_id, None)
                    if sent is None:
                        continue
                    if frame.status == "accepted" and frame.bid is not None:
                        load.window.acks_ms.append((arrived - sent) * 1000)
                        load.accepted_ids.append(frame.bid["id"])
                    else:
                        load.window.rejected[frame.code] += 1
                elif kind == "snapshot" and frame.auction is not None:
                    if frame.auction.get("status") == "live":
                        self.live.set()
                elif kind == "state" and frame.status == "live":
                    self.live.set()
                elif kind == "ended" and watcher and not self.ended.is_set():
                    self.ended.set()
                    load.window.ended += 1
                elif kind == "error":
                    load.window.errors[f"ws:{frame.code}"] += 1
        finally:
            if watcher:
                load.watching -= 1

    async def bid_until(self, stop_ms: int, interval_s: float) -> None:
        amount = START_PRICE
        turn = 0
        began = time.perf_counter()
        while now_ms() < stop_ms and not self.load.stopping.is_set():
            ws = self.bidder_sockets[turn % len(self.bidder_sockets)]
            client_bid_id = uuid.uuid4().hex
            sent = time.perf_counter()
            self.sent_at[amount] = sent
            self.pending[client_bid_id] = sent
            await ws.send_str(
                f'{{"type":"bid","amount_kobo":{amount},"client_bid_id":"{client_bid_id}"}}'
            )
            self.load.window.sent += 1
            amount += STEP
            turn += 1
            await asyncio.sleep(max(0.0, began + turn * interval_s - time.perf_counter()))

    async def wait_ended(self, end_ms: int) -> None:
        timeout = max(0.0, (end_ms - now_ms()) / 1000) + 15
        try:
            async with asyncio.timeout(timeout):
                await self.ended.wait()
        except TimeoutError:
            self.load.window.errors["no_ended_event"] += 1

    async def close(self) -> None:
        await asyncio.sleep(0.2)  # the last answers
        self.load.unanswered += len(self.pending)
        for ws in self.sockets:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await ws.close()
        for task in self.readers:
            task.cancel()
        for task in self.readers:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task


# ---- the server's own view: its histograms ----------------------------------------

#: Server-side histograms worth a quantile per window (seconds).
SERVER_HISTOGRAMS = {
    "bid_latency": "auction_bid_latency_seconds",  # arrival → acknowledgement
    "ledger_flush": "auction_ledger_flush_seconds",  # one batch's commit
    "fanout": "auction_fanout_seconds",  # commit → last socket of the room written
}
Buckets = dict[str, dict[float, float]]


async def scrape(http: aiohttp.ClientSession, base: str) -> Buckets:
    """Every histogram's cumulative buckets (le → count) from `/metrics`."""
    async with http.get(f"{base}/metrics") as reply:
        text = await reply.text()
    found: Buckets = {}
    for line in text.splitlines():
        if "_bucket{" not in line or line.startswith("#"):
            continue
        name, rest = line.split("_bucket{", 1)
        labels, value = rest.rsplit("} ", 1)
        le = next(
            (
                part.split("=", 1)[1].strip('"')
                for part in labels.split(",")
                if part.startswith("le=")
            ),
            None,
        )
        if le is not None:
            found.setdefault(name, {})[float(le)] = float(value)
    return found


def bucket_quantile_ms(before: Buckets, after: Buckets, name: str, q: float) -> float | None:
    """The upper bound (ms) of the bucket holding quantile `q` of what was observed
    between two scrapes: a bound, as coarse as the buckets."""
    now, then = after.get(name, {}), before.get(name, {})
    total = now.get(math.inf, 0.0) - then.get(math.inf, 0.0)
    if total <= 0:
        return None
    for le in sorted(now):
        if now[le] - then.get(le, 0.0) >= q * total:
            return None if le == math.inf else le * 1000
    return None


def server_quantiles(before: Buckets, after: Buckets) -> dict[str, dict[str, float | None]]:
    return {
        label: {
            "p50_le": bucket_quantile_ms(before, after, name, 0.5),
            "p99_le": bucket_quantile_ms(before, after, name, 0.99),
        }
        for label, name in SERVER_HISTOGRAMS.items()
    }


# ---- the ledger afterwards ----------------------------------------------------------


async def unreconciled_wallets(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Users whose balance is not the sum of their transactions (none, if all is well)."""
    return list(await conn.fetch(WALLET_RECONCILIATION))


async def missing_bids(conn: asyncpg.Connection, bid_ids: Sequence[str]) -> int:
    """How many of these acknowledged bids the ledger does not hold."""
    found = 0
    for at in range(0, len(bid_ids), 10_000):
        chunk = [uuid.UUID(bid) for bid in bid_ids[at : at + 10_000]]
        found += await conn.fetchval("SELECT count(*) FROM bids WHERE id = ANY($1::uuid[])", chunk)
    return len(set(bid_ids)) - found


# ---- the run ---------------------------------------------------------------------------


async def soak(config: SoakConfig, log_dir: Path | None = None) -> Result:
    """Run the soak; the figures and, under `failures`, every bound that broke."""
    started = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        if config.database_url is None:
            progress("starting an embedded PostgreSQL (fsync on) in a temporary directory")
            database_url = await stack.enter_async_context(own_database())
        else:
            database_url = config.database_url
        log_dir = log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = EngineServer(engine_env(database_url), log_dir / "engine.log")
        ready_s = await server.start()
        stack.push_async_callback(server.stop)
        progress(f"server pid {server.pid} ready in {ready_s:.1f}s on port {server.port}")
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        platform = Platform(http, server.base)
        await asyncio.sleep(0.5)
        idle_fds_before = server.fd_count()
        shape = LoadShape(
            config.auctions, config.watchers, config.bidders, config.rate, config.auction_seconds
        )
        load = SteadyLoad(http, server, platform, shape)
        await load.start()
        stack.push_async_callback(load.stop)
        windows = await _windows(config, server, load)
        await load.stop()
        await http.close()  # its idle keep-alive connections too
        await asyncio.sleep(2.0)  # sockets closed, end processing of the last auctions done
        idle_fds_after = server.fd_count()
        held_clients = server.client_sockets()
        conn = await asyncpg.connect(database_url)
        try:
            missing = await missing_bids(conn, load.accepted_ids)
            unreconciled = await unreconciled_wallets(conn)
            users = await conn.fetchval("SELECT count(*) FROM users")
        finally:
            await conn.close()
        status = await server.stop()
    result: Result = {
        "scenario": "soak",
        "config": {
            name: getattr(config, name)
            for name in config.__dataclass_fields__
            if name != "database_url"
        },
        "server_ready_s": round(ready_s, 2),
        "windows": windows,
        "accepted_bids": len(load.accepted_ids),
        "unanswered_bids": load.unanswered,
        "acknowledged_missing_from_ledger": missing,
        "wallets_checked": users,
        "wallets_unreconciled": len(unreconciled),
        "fds": {
            "idle_before": idle_fds_before,
            "idle_after": idle_fds_after,
            "client_sockets_held_after": held_clients,
        },
        "server_exit_status": status,
        "total_s": round(time.perf_counter() - started, 1),
        **environment(),
    }
    result.update(verdict(config, result))
    return result


async def _windows(
    config: SoakConfig, server: EngineServer, load: SteadyLoad
) -> list[dict[str, Any]]:
    windows: list[dict[str, Any]] = []
    count = max(1, round(config.minutes * 60 / config.window_seconds))
    load.take_window()  # what came before the first full window is warm-up of the set-up
    scraped = await scrape(load.http, server.base)
    began = time.perf_counter()
    for index in range(count):
        await asyncio.sleep(
            max(0.0, began + (index + 1) * config.window_seconds - time.perf_counter())
        )
        window = load.take_window().summary()
        scraped, before = await scrape(load.http, server.base), scraped
        window.update(
            index=index,
            at_s=round(time.perf_counter() - began, 1),
            rss_kb=server.rss_kb(),
            fds=server.fd_count(),
            watchers_open=load.watching,
            server_ms=server_quantiles(before, scraped),
        )
        windows.append(window)
        progress(
            f"window {index + 1}/{count}: {window['accepted']} acks "
            f"p50/p99 {window['ack_ms']['p50']}/{window['ack_ms']['p99']} ms, delivery "
            f"p50/p99 {window['delivery_ms']['p50']}/{window['delivery_ms']['p99']} ms, "
            f"server (bucket bounds) bid p50/p99 ≤ {_bounds(window, 'bid_latency')}, "
            f"flush ≤ {_bounds(window, 'ledger_flush')}, fan-out ≤ {_bounds(window, 'fanout')}, "
            f"rss {window['rss_kb'] / 1024:.1f} MiB, fds {window['fds']}, "
            f"rejected {window['rejected'] or 0}, errors {window['errors'] or 0}"
        )
    return windows


def _bounds(window: Mapping[str, Any], name: str) -> str:
    figures = window["server_ms"][name]
    return f"{figures['p50_le']}/{figures['p99_le']} ms"


def verdict(config: SoakConfig, result: Mapping[str, Any]) -> dict[str, Any]:
    """The bounds, and which of them broke."""
    windows: list[dict[str, Any]] = result["windows"]
    counted = windows[min(config.warmup_windows, len(windows) - 1) :]
    first, last = counted[0], counted[-1]
    failures: list[str] = []
    rss_growth = (last["rss_kb"] - first["rss_kb"]) / first["rss_kb"] * 100
    if rss_growth > config.rss_growth_pct:
        failures.append(
            f"RSS grew {rss_growth:.1f} % ({first['rss_kb']} → {last['rss_kb']} kB), "
            f"more than {config.rss_growth_pct} %"
        )
    drift: dict[str, Any] = {}
    for name in ("ack_ms", "delivery_ms"):
        before, after = first[name]["p99"], last[name]["p99"]
        if before is None or after is None:
            failures.append(f"{name}: a window without samples")
            continue
        bound = before * config.p99_factor + config.p99_slack_ms
        drift[name] = {"first_p99": before, "last_p99": after, "bound": round(bound, 2)}
        if after > bound:
            failures.append(f"{name} p99 drifted: {before} → {after} ms (bound {bound:.1f})")
    fds = result["fds"]
    pool_max = 20  # server/app.py: the pool's max_size; idle connections stay open
    if fds["client_sockets_held_after"]:
        failures.append(f"{fds['client_sockets_held_after']} client sockets held after the load")
    if fds["idle_after"] > fds["idle_before"] + pool_max:
        failures.append(f"descriptors: {fds['idle_before']} before, {fds['idle_after']} after")
    if result["acknowledged_missing_from_ledger"]:
        failures.append(f"{result['acknowledged_missing_from_ledger']} acknowledged bids lost")
    if result["wallets_unreconciled"]:
        failures.append(f"{result['wallets_unreconciled']} wallets do not reconcile")
    if result["unanswered_bids"]:
        failures.append(f"{result['unanswered_bids']} bids got no answer")
    errors = sum(sum(window["errors"].values()) for window in windows)
    if errors:
        failures.append(f"{errors} client errors")
    return {
        "rss_kb": {
            "first_counted": first["rss_kb"],
            "last": last["rss_kb"],
            "growth_pct": round(rss_growth, 1),
        },
        "drift": drift,
        "failures": failures,
    }


def run(args: argparse.Namespace) -> Result:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = uvloop.run(soak(SoakConfig.from_args(args)))
    finally:
        signal.signal(signal.SIGTERM, previous)
    failures = result["failures"]
    if isinstance(failures, list) and failures:
        emit(result, args.json)  # the figures, before the verdict
        raise BenchFailure("; ".join(str(failure) for failure in failures))
    return result


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
