"""The ``ledger`` scenario: durable bids per second, write-behind against the seed's design.

One embedded PostgreSQL server (fsync on: durability is what is measured) runs
in a temporary directory for the whole run. Users and auctions are loaded once
into a template database; every mode then runs on its own fresh copy of it,
fed the same bid stream (generated before any timing):

- ``writebehind``: the Sequencer (engine/sequencer.py) with ``--in-flight``
  tasks each submitting the stream's next bid as soon as its last one is
  acknowledged, i.e. committed by the group-commit writer;
- ``baseline``: PerBidLedger (engine/per_bid_ledger.py), one transaction per bid,
  ``--workers`` tasks over a pool of as many connections, each auction's bids
  submitted in stream order (a bid waits for the auction's previous one), so
  none is lost to a race: the baseline at its best;
- ``baseline_free``: the same with no such wait: concurrent transactions on
  one auction queue on its row lock (the convoy) and take it in an order of
  their own, so a bid overtaken by a higher one is refused (below_minimum),
  as it would be in production;
- ``copy``: the rows the write-behind run accepted, prebuilt, written by one
  ``copy_records_to_table`` in one transaction: the physical limit;
- ``copy_batched``: the same rows in transactions of ``--batch-max`` rows, one
  COPY each: the group-commit writer's floor without any Python around it.

The stream is legal in order: every bid is by a bidder who is not among the
auction's last 64 bidders, at the minimum next bid or one or two increments
above, and every wallet covers every deposit, so a mode that decides the bids
in stream order accepts every one. ``--hot`` puts every bid on one auction;
otherwise each round of ``--auctions`` bids touches every auction once.

``--proxy-share S`` gives a share S of the auctions a bidder's maximum, set
before the timed run, high enough that the engine answers every later bid
there with a proxy bid: two rows a bid (the bid, then the answer, in one
transaction), and the stream's amounts follow the answered prices. The
write-behind's figures then count rows written (``writebehind_rows_per_s``,
against COPY's rows) beside acknowledged bids; the baselines (the seed's
design has no maximums) take the same bids as plain bids.

The process collects its garbage as the engine's server does (engine/gcpolicy.py:
survivors frozen every 5 s, no full collection of its own during a run), so
that a mode is not charged for walking the stream and the other modes' results.

The write-behind and the two COPY modes run ``--rounds`` times (3), one round
after another, each round on fresh copies: a mode takes about a second, and this
machine's speed moves 10-20 % from one second to the next (the host is shared), so
one pair is a noisy sample. The round whose write-behind/COPY ratio is the median
is the one reported (its modes under ``modes``); every round is listed under
``rounds``. The baselines run once (ten seconds each).

Rates count acknowledged bids only. A mode stops taking new bids after
``--seconds`` (or at the end of the stream) and its time includes waiting for
every taken bid to be answered. After each mode the ledger is checked: its
rows are exactly the acknowledged bids, and every auction's price and bid
count are its bids'. Per mode the result also gives this process's CPU share
and CPU per bid, the machine's busy share (every process: other load shows),
and for the write-behind its batches and how much of the time its writer was
busy with one.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import random
import resource
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from prometheus_client import REGISTRY

from bench.core import BenchFailure
from bench.report import Result, environment, progress
from bench.streams import NAIRA, increment_for
from engine.bids import BidAccepted, BidOutcome, DurableBid
from engine.clock import SystemClock, to_datetime
from engine.database import create_pool, dsn_for_database, embedded_server
from engine.gcpolicy import GcPolicy, running
from engine.ledger import (
    BID_COLUMNS,
    DEFAULT_BATCH_MAX,
    copy_rows,  # the rows exactly as the writer COPYs them
)
from engine.migrations import migrate
from engine.money import kobo_to_naira
from engine.per_bid_ledger import PerBidLedger
from engine.sequencer import Sequencer

HELP = "durable bids/s: the write-behind ledger against one transaction per bid and raw COPY"
TEMPLATE = "bench_ledger_template"
RECENT_BIDDERS = 64  # a bidder waits this many bids on an auction before bidding there again
SELLERS = 10
BALANCE_KOBO = 10**14  # ₦1 trillion: no bid in any stream here is refused for buying power
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bids", type=_positive, default=60_000, help="bids in the stream")
    parser.add_argument("--auctions", type=_positive, default=200)
    parser.add_argument("--bidders", type=_positive, default=2_000)
    parser.add_argument("--hot", action="store_true", help="one auction takes every bid")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="stop taking bids in a mode after this long"
    )
    parser.add_argument(
        "--in-flight", type=_positive, default=1_000, help="write-behind: concurrent submitters"
    )
    parser.add_argument(
        "--workers", type=_positive, default=32, help="baseline: concurrent transactions"
    )
    parser.add_argument(
        "--batch-max", type=_positive, default=DEFAULT_BATCH_MAX, help="write-behind batch cap"
    )
    parser.add_argument("--window-ms", type=float, default=2.0, help="write-behind batch window")
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=3,
        help="write-behind/COPY pairs, run one after another; the median pair is reported",
    )
    parser.add_argument(
        "--proxy-share",
        type=float,
        default=0.0,
        help="share of auctions whose every bid a leader's maximum answers (0..1)",
    )
    parser.add_argument("--seed", type=int, default=360)


def _positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# --- the world and the stream -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Auction:
    id: uuid.UUID
    vehicle_id: uuid.UUID
    seller: uuid.UUID
    start_price_kobo: int
    increment_kobo: int


@dataclass(frozen=True, slots=True)
class World:
    bidders: list[uuid.UUID]
    sellers: list[uuid.UUID]
    auctions: list[Auction]


@dataclass(frozen=True, slots=True)
class Stream:
    """The bids, as columns, in the order they are submitted."""

    auction: list[uuid.UUID]
    user: list[uuid.UUID]
    amount_kobo: list[int]
    client_bid_id: list[str]
    #: (auction, bidder, max): maximums set before the run, answering every bid there.
    maxes: list[tuple[uuid.UUID, uuid.UUID, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.auction)


#: A maximum no bid in a stream reaches (₦100 billion; its deposit fits every wallet).
PROXY_MAX_KOBO = 10**13


def generate(
    bids: int, auctions: int, bidders: int, hot: bool, seed: int, proxy_share: float = 0.0
) -> tuple[World, Stream]:
    """A world and a stream every bid of which is valid when placed in stream order
    (answered by a proxy on a share `proxy_share` of the auctions)."""
    rng = random.Random(seed)

    def ids(n: int) -> list[uuid.UUID]:
        return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]

    sellers = ids(SELLERS)
    world = World(bidders=ids(bidders), sellers=sellers, auctions=[])
    for auction_id, vehicle_id in zip(ids(auctions), ids(auctions), strict=True):
        price = int(1_000_000 * 20 ** rng.random()) // 50_000 * 50_000 * NAIRA  # ₦1M-₦20M
        world.auctions.append(
            Auction(auction_id, vehicle_id, rng.choice(sellers), price, increment_for(price))
        )
    recent = [
        collections.deque[int](maxlen=min(RECENT_BIDDERS, bidders // 2)) for _ in world.auctions
    ]
    lead: list[int | None] = [None] * auctions
    stream = Stream([], [], [], [])
    holders: dict[int, int] = {}  # auction -> the bidder whose maximum answers there
    for a, u in zip(
        rng.sample(range(auctions), int(proxy_share * auctions + 0.5)),
        rng.sample(range(bidders), bidders),
        strict=False,
    ):
        holders[a] = u
        lead[a] = world.auctions[a].start_price_kobo  # the maximum leads at the start price
        stream.maxes.append((world.auctions[a].id, world.bidders[u], PROXY_MAX_KOBO))
    order = list(range(auctions))
    for i in range(bids):
        if hot:
            a = 0
        else:  # every auction once per round, in a new order each round
            if i % auctions == 0:
                rng.shuffle(order)
            a = order[i % auctions]
        auction = world.auctions[a]
        u = rng.randrange(bidders)
        while u in recent[a] or u == holders.get(a):
            u = rng.randrange(bidders)
        recent[a].append(u)
        leading = lead[a]
        minimum = auction.start_price_kobo if leading is None else leading + auction.increment_kobo
        r = rng.random()
        amount = minimum + auction.increment_kobo * (0 if r < 0.7 else 1 if r < 0.95 else 2)
        # On a proxy auction the maximum answers one increment up (RULES.md).
        lead[a] = amount + auction.increment_kobo if a in holders else amount
        stream.auction.append(auction.id)
        stream.user.append(world.bidders[u])
        stream.amount_kobo.append(amount)
        stream.client_bid_id.append(f"bench-{i}")
    return world, stream


async def load(conn: asyncpg.Connection, world: World, now_ms: int) -> None:
    """The world's rows: users, vehicles, auctions live from an hour ago for a day."""
    users = [
        (user, f"bidder-{i}@bench.invalid", "user", kobo_to_naira(BALANCE_KOBO))
        for i, user in enumerate(world.bidders)
    ] + [
        (user, f"seller-{i}@bench.invalid", "dealer", kobo_to_naira(0))
        for i, user in enumerate(world.sellers)
    ]
    await conn.copy_records_to_table(
        "users",
        records=[(*user, "approved") for user in users],
        columns=("id", "email", "role", "wallet_balance", "kyc_status"),
    )
    await conn.copy_records_to_table(
        "vehicles",
        records=[
            (a.vehicle_id, f"{i:017d}", 2019, "Toyota", "Camry", a.seller, a.seller)
            for i, a in enumerate(world.auctions)
        ],
        columns=("id", "vin", "year", "make", "model", "listed_by", "owner_id"),
    )
    start, end = to_datetime(now_ms - HOUR_MS), to_datetime(now_ms + DAY_MS)
    await conn.copy_records_to_table(
        "auctions",
        records=[
            (
                a.id,
                a.vehicle_id,
                a.seller,
                "live",
                kobo_to_naira(a.start_price_kobo),
                kobo_to_naira(a.increment_kobo),
                start,
                end,
                end,
            )
            for a in world.auctions
        ],
        columns=(
            "id",
            "vehicle_id",
            "created_by",
            "status",
            "start_price",
            "bid_increment",
            "start_time",
            "end_time",
            "original_end",
        ),
    )


# --- the modes ------------------------------------------------------------------------


@dataclass(slots=True)
class Mode:
    """One mode's run: what it acknowledged, in how long."""

    name: str
    acknowledged: int = 0
    seconds: float = 0.0
    rejections: collections.Counter[str] = field(default_factory=collections.Counter)
    accepted: list[DurableBid] = field(default_factory=list)
    #: Rows written during the timed run (bids and proxy answers); None: the accepted.
    rows: list[DurableBid] | None = None
    #: Rows written before it (the maximums' first rows), in the ledger too.
    setup_rows: list[DurableBid] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)
    python_cpu_s: float = 0.0  # this process (submitters and engine), not the server
    machine_busy: float | None = None  # share of every core's time not idle (all processes)

    @property
    def rate(self) -> float:
        return self.acknowledged / self.seconds if self.seconds else 0.0

    @property
    def written(self) -> list[DurableBid]:
        return self.accepted if self.rows is None else self.rows

    @property
    def row_rate(self) -> float:
        return len(self.written) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, object]:
        decided = self.acknowledged + sum(self.rejections.values())
        return {
            "acknowledged": self.acknowledged,
            "seconds": round(self.seconds, 3),
            "per_s": round(self.rate, 1),
            "rejected": sum(self.rejections.values()),
            "rejections": dict(self.rejections),
            "python_cpu_share": round(self.python_cpu_s / self.seconds, 3) if self.seconds else 0,
            "python_cpu_us_per_bid": round(self.python_cpu_s / decided * 1e6, 1) if decided else 0,
            "machine_busy_share": self.machine_busy,
            **self.details,
        }


Place = Callable[[uuid.UUID, uuid.UUID, int, str], Awaitable[BidOutcome]]


async def submit(
    mode: Mode, place: Place, stream: Stream, tasks: int, seconds: float, *, in_order: bool
) -> None:
    """`tasks` submitters share the stream in order; each awaits its bid's outcome.

    `in_order`: a bid is submitted only once the auction's previous bid is
    answered, so no bid can overtake an earlier one on the same auction.
    """
    indexes = iter(range(len(stream)))
    deadline = time.perf_counter() + seconds
    answered: dict[uuid.UUID, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()

    async def submitter() -> None:
        for i in indexes:
            auction = stream.auction[i]
            if in_order:
                previous, answered[auction] = answered.get(auction), loop.create_future()
                mine = answered[auction]
                if previous is not None:
                    await previous
            outcome = await place(
                auction, stream.user[i], stream.amount_kobo[i], stream.client_bid_id[i]
            )
            if in_order:
                mine.set_result(None)
            if isinstance(outcome, BidAccepted):
                mode.accepted.append(outcome.bid)
            else:
                mode.rejections[outcome.code] += 1
            if time.perf_counter() >= deadline:
                return

    with timed(mode):
        await asyncio.gather(*(submitter() for _ in range(tasks)))
    mode.acknowledged = len(mode.accepted)


@contextlib.contextmanager
def timed(mode: Mode) -> Iterator[None]:
    """The block's wall time, this process's CPU time and the machine's busy share."""
    gc.collect()
    machine, cpu, started = _machine_times(), _process_cpu_s(), time.perf_counter()
    yield
    mode.seconds = time.perf_counter() - started
    mode.python_cpu_s = _process_cpu_s() - cpu
    if machine is not None and (now := _machine_times()) is not None:
        busy, total = now[0] - machine[0], now[1] - machine[1]
        mode.machine_busy = round(busy / total, 3) if total else None


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_times() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat; None elsewhere."""
    try:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _flush_seconds() -> float:
    """Seconds the ledger writer has spent on batches so far, retries included."""
    return REGISTRY.get_sample_value("auction_ledger_flush_seconds_sum") or 0.0


async def run_writebehind(dsn: str, stream: Stream, args: argparse.Namespace) -> Mode:
    mode = Mode("writebehind")
    sizes: list[int] = []
    pool = await create_pool(dsn, min_size=2, max_size=4)
    try:
        sequencer = await Sequencer.open(
            pool, clock=SystemClock(), batch_max=args.batch_max, window_ms=args.window_ms
        )
        written: list[DurableBid] = []
        sequencer.subscribe(written.extend)
        for auction, holder, maximum in stream.maxes:  # before the timed run
            outcome = await sequencer.set_max(auction, holder, maximum)
            if not outcome.accepted:
                raise BenchFailure(f"a stream's maximum was refused: {outcome}")
        mode.setup_rows, written[:] = list(written), []
        sequencer.subscribe(lambda bids: sizes.append(len(bids)))
        flushing = _flush_seconds()
        try:
            await submit(
                mode, sequencer.place_bid, stream, args.in_flight, args.seconds, in_order=False
            )
        finally:
            await sequencer.close()
        mode.rows = written
        flushing = _flush_seconds() - flushing
    finally:
        await pool.close()
    mode.details = {
        "in_flight": args.in_flight,
        "batches": len(sizes),
        "batch_mean": round(statistics.fmean(sizes), 1) if sizes else 0,
        "batch_median": statistics.median(sizes) if sizes else 0,
        "batch_max_seen": max(sizes, default=0),
        "batch_max": args.batch_max,
        "window_ms": args.window_ms,
        "rows": len(written),
        "rows_per_s": round(mode.row_rate, 1),
        # From the writer's taking a batch to its commit: near 1, the writer never waits.
        "writer_busy_share": round(flushing / mode.seconds, 3),
        "flush_ms_mean": round(flushing / len(sizes) * 1000, 2) if sizes else 0,
    }
    return mode


async def run_baseline(
    dsn: str, stream: Stream, args: argparse.Namespace, *, in_order: bool
) -> Mode:
    mode = Mode("baseline" if in_order else "baseline_free")
    pool = await create_pool(dsn, min_size=args.workers, max_size=args.workers)
    try:
        ledger = PerBidLedger(pool, clock=SystemClock())
        await submit(mode, ledger.place_bid, stream, args.workers, args.seconds, in_order=in_order)
    finally:
        await pool.close()
    mode.details = {"workers": args.workers, "connections": args.workers}
    return mode


async def run_copy(dsn: str, name: str, records: list[tuple[Any, ...]], chunk: int) -> Mode:
    """`records` into `bids` with COPY, `chunk` rows per transaction."""
    mode = Mode(name)
    conn = await asyncpg.connect(dsn)
    try:
        with timed(mode):
            for at in range(0, len(records), chunk):
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "bids", records=records[at : at + chunk], columns=BID_COLUMNS
                    )
    finally:
        await conn.close()
    mode.acknowledged = len(records)
    mode.details = {"rows_per_transaction": min(chunk, len(records))}
    return mode


# --- checks ---------------------------------------------------------------------------

_AUCTIONS_OFF = """
SELECT count(*) FROM auctions a
LEFT JOIN (SELECT auction_id, max(amount) AS top, count(*) AS n FROM bids GROUP BY auction_id) b
       ON b.auction_id = a.id
WHERE a.current_price IS DISTINCT FROM b.top OR a.bid_count <> coalesce(b.n, 0)
"""


async def verify(dsn: str, mode: Mode, *, auctions_moved: bool) -> None:
    """The ledger holds exactly the acknowledged bids (and the proxy answers written
    with them), and the auctions agree with them."""
    written = [*mode.setup_rows, *mode.written]
    expected = len(written) if mode.written else len(mode.setup_rows) + mode.acknowledged
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM bids")
        if rows != expected:
            raise BenchFailure(
                f"{mode.name}: {expected:,} rows acknowledged, {rows:,} in the ledger"
            )
        if mode.written and {row["id"] for row in await conn.fetch("SELECT id FROM bids")} != {
            bid.id for bid in written
        }:
            raise BenchFailure(f"{mode.name}: the ledger's bids are not the acknowledged ones")
        if auctions_moved and (off := await conn.fetchval(_AUCTIONS_OFF)):
            raise BenchFailure(
                f"{mode.name}: {off} auctions' current_price or bid_count differ from their bids"
            )
    finally:
        await conn.close()


# --- the run --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_server() -> AsyncIterator[str]:
    """A fresh embedded PostgreSQL with its default (durable) settings; its admin dsn."""
    data_dir = Path(tempfile.mkdtemp(prefix="d360-bench-"))  # short: a socket lives in it
    try:
        async with embedded_server(data_dir) as dsn:
            yield dsn
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _database_stats(dsn: str, mode: Mode) -> None:
    """How long PostgreSQL itself spent in the writer's batch function
    (sql/0012, `track_functions`): the database's share of the run; and the share
    of its row updates that were heap-only (no new index entries: sql/0014)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT calls, total_time FROM pg_stat_user_functions"
            " WHERE funcname = 'ledger_write_bids'"
        )
        updates = await conn.fetch(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE relname IN ('bids', 'auctions')"
        )
    finally:
        await conn.close()
    for table in updates:
        if table["n_tup_upd"]:
            share = table["n_tup_hot_upd"] / table["n_tup_upd"]
            mode.details[f"{table['relname']}_hot_update_share"] = round(share, 3)
    if row is None or not row["calls"]:
        return
    mode.details["db_function_calls"] = row["calls"]
    mode.details["db_function_ms_mean"] = round(row["total_time"] / row["calls"], 2)
    mode.details["db_function_busy_share"] = round(row["total_time"] / 1000 / mode.seconds, 3)


async def _fresh_database(admin: asyncpg.Connection, admin_dsn: str, name: str) -> str:
    # Names are the bench's own constants, never input.
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    await admin.execute("CHECKPOINT")  # no mode pays for another's dirty pages
    return dsn_for_database(admin_dsn, name)


async def _commit_latency_ms(admin: asyncpg.Connection, commits: int = 200) -> float:
    """One-row INSERT + COMMIT, one after another: what a lone durable commit costs."""
    await admin.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe (n int)")
    started = time.perf_counter()
    for n in range(commits):
        await admin.execute("INSERT INTO bench_commit_probe VALUES ($1)", n)
    return (time.perf_counter() - started) / commits * 1000


async def _run(args: argparse.Namespace) -> Result:
    started = time.perf_counter()
    main = asyncio.current_task()
    if main is not None:  # stopped by SIGTERM (say, by `timeout`), still stop the server
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    shape = "one hot auction" if args.hot else f"{args.auctions:,} auctions"
    progress(f"generating {args.bids:,} bids on {shape} from {args.bidders:,} bidders")
    auctions = 1 if args.hot else args.auctions
    world, stream = generate(
        args.bids, auctions, args.bidders, args.hot, args.seed, args.proxy_share
    )
    progress("starting an embedded PostgreSQL (fsync on) in a temporary directory")
    async with bench_server() as admin_dsn:
        admin = await asyncpg.connect(admin_dsn)
        try:
            settings = {
                name: await admin.fetchval(f"SHOW {name}")
                for name in ("fsync", "synchronous_commit", "wal_sync_method", "server_version")
            }
            if settings["fsync"] != "on" or settings["synchronous_commit"] != "on":
                raise BenchFailure(f"durability is off on the bench's server: {settings}")
            await admin.execute("ALTER SYSTEM SET track_functions = 'pl'")
            await admin.fetchval("SELECT pg_reload_conf()")
            commit_ms = await _commit_latency_ms(admin)
            progress(f"server up: {settings}; a lone durable commit takes {commit_ms:.3f} ms")
            await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
            template_dsn = dsn_for_database(admin_dsn, TEMPLATE)
            await migrate(template_dsn)
            loader = await asyncpg.connect(template_dsn)
            try:
                await load(loader, world, SystemClock().now_ms())
            finally:
                await loader.close()
            async with running(GcPolicy()):  # as `python -m engine serve` runs
                modes, rounds = await _run_modes(admin, admin_dsn, stream, args)
        finally:
            await admin.close()
    wb, base, copy, batched = (
        modes[name] for name in ("writebehind", "baseline", "copy", "copy_batched")
    )
    _table(modes, rounds)
    return {
        "scenario": "ledger",
        "writebehind_bids_per_s": wb.rate,
        "baseline_bids_per_s": base.rate,
        "copy_rows_per_s": copy.rate,
        "ratio_vs_baseline": wb.rate / base.rate if base.rate else None,
        "writebehind_rows_per_s": wb.row_rate,
        "ratio_vs_copy": wb.row_rate / copy.rate if copy.rate else None,
        "copy_batched_rows_per_s": batched.rate,
        "ratio_vs_copy_batched": wb.row_rate / batched.rate if batched.rate else None,
        "proxy_share": args.proxy_share,
        "proxy_auctions": len(stream.maxes),
        "hot": args.hot,
        "bids": len(stream),
        "auctions": auctions,
        "bidders": args.bidders,
        "seed": args.seed,
        "seconds_cap": args.seconds,
        "modes": {name: mode.summary() for name, mode in modes.items()},
        "rounds": [
            {
                "writebehind_bids_per_s": round(each["writebehind"].rate, 1),
                "copy_rows_per_s": round(each["copy"].rate, 1),
                "copy_batched_rows_per_s": round(each["copy_batched"].rate, 1),
                "ratio_vs_copy": round(_ratio_vs_copy(each), 3),
            }
            for each in rounds
        ],
        "fsync": settings["fsync"],
        "synchronous_commit": settings["synchronous_commit"],
        "wal_sync_method": settings["wal_sync_method"],
        "server_version": settings["server_version"],
        "lone_commit_ms": round(commit_ms, 3),
        "event_loop": "uvloop",
        "total_s": round(time.perf_counter() - started, 1),
        **environment(),
    }


async def _run_modes(
    admin: asyncpg.Connection, admin_dsn: str, stream: Stream, args: argparse.Namespace
) -> tuple[dict[str, Mode], list[dict[str, Mode]]]:
    """The modes of the median round (by write-behind / COPY) with the baselines, and
    every round. A round is the write-behind then COPY of the rows it accepted, back
    to back: a mode takes a second or so, and this machine's speed moves by 10-20 %
    from one second to the next, so one pair is a noisy sample of the ratio."""
    rounds = [await _round(admin, admin_dsn, stream, args, n) for n in range(1, args.rounds + 1)]
    middle = sorted(rounds, key=_ratio_vs_copy)[len(rounds) // 2]
    modes = {"writebehind": middle["writebehind"]}
    for in_order in (True, False):
        name = "baseline" if in_order else "baseline_free"
        dsn = await _fresh_database(admin, admin_dsn, f"bench_{name}")
        progress(f"{name}: {args.workers} workers, one transaction per bid")
        modes[name] = await run_baseline(dsn, stream, args, in_order=in_order)
        await verify(dsn, modes[name], auctions_moved=True)
        _report(modes[name])
    return modes | {"copy": middle["copy"], "copy_batched": middle["copy_batched"]}, rounds


async def _round(
    admin: asyncpg.Connection,
    admin_dsn: str,
    stream: Stream,
    args: argparse.Namespace,
    number: int,
) -> dict[str, Mode]:
    modes: dict[str, Mode] = {}
    dsn = await _fresh_database(admin, admin_dsn, f"bench_writebehind_{number}")
    progress(
        f"round {number}/{args.rounds}: writebehind, {args.in_flight:,} submitters, "
        f"batches of up to {args.batch_max}"
    )
    modes["writebehind"] = await run_writebehind(dsn, stream, args)
    await verify(dsn, modes["writebehind"], auctions_moved=True)
    await _database_stats(dsn, modes["writebehind"])
    _report(modes["writebehind"])

    records = copy_rows(modes["writebehind"].written, 1)  # in commit order
    for name, chunk in (("copy", len(records)), ("copy_batched", args.batch_max)):
        dsn = await _fresh_database(admin, admin_dsn, f"bench_{name}_{number}")
        progress(f"{name}: {len(records):,} prebuilt rows, {min(chunk, len(records)):,} per COPY")
        modes[name] = await run_copy(dsn, name, records, chunk)
        await verify(dsn, modes[name], auctions_moved=False)
        _report(modes[name])
    return modes


def _ratio_vs_copy(modes: dict[str, Mode]) -> float:
    """Rows written per second against COPY's: with proxy answers a bid writes two."""
    copy = modes["copy"].rate
    return modes["writebehind"].row_rate / copy if copy else 0.0


def _report(mode: Mode) -> None:
    progress(
        f"{mode.name}: {mode.acknowledged:,} acknowledged in {mode.seconds:.2f}s = "
        f"{mode.rate:,.0f}/s; rejected {dict(mode.rejections) or 0}; ledger checked"
    )


def _table(modes: dict[str, Mode], rounds: list[dict[str, Mode]]) -> None:
    for number, each in enumerate(rounds, 1):
        progress(
            f"round {number}: writebehind {each['writebehind'].rate:,.0f}/s, "
            f"copy {each['copy'].rate:,.0f}/s, ratio {_ratio_vs_copy(each):.3f}"
        )
    progress(f"the median round, and the baselines ({len(rounds)} rounds):")
    progress(f"{'mode':<14}{'acknowledged':>14}{'seconds':>10}{'per s':>12}{'rejected':>10}")
    for mode in modes.values():
        progress(
            f"{mode.name:<14}{mode.acknowledged:>14,}{mode.seconds:>10.2f}"
            f"{mode.rate:>12,.0f}{sum(mode.rejections.values()):>10,}"
        )
    wb, rows = modes["writebehind"].rate, modes["writebehind"].row_rate
    if modes["baseline"].rate:
        progress(f"writebehind / baseline (bids): {wb / modes['baseline'].rate:.2f}")
    for name in ("copy", "copy_batched"):
        if modes[name].rate:
            progress(f"writebehind / {name} (rows): {rows / modes[name].rate:.2f}")


def run(args: argparse.Namespace) -> Result:
    return uvloop.run(_run(args))
