"""The ``rooms`` scenario: the whole engine under real WebSockets on loopback.

The server runs as its own process (``python -m engine serve`` on a free port,
an embedded PostgreSQL in a temporary ENGINE_DATA_DIR, fresh secrets, rate
limits raised so the run is not throttled), or is given with ``--url``. The
bench makes its world through the internal API (a dealer, funded bidders,
vehicles, auctions scheduled a few seconds ahead), waits until every auction
is live, and has ``--processes`` load-generator processes (bench/loadgen.py)
open the bidders' and watchers' sockets and play the scenario:

- ``steady``: Poisson arrivals at ``--rate`` bids/s, each given to a random
  idle bidder (one with no bid in flight, not leading its room), at the room's
  minimum next bid or a step or two above; auctions end long after the run.
- ``storm``: the anti-sniping case. The auctions end ``--window-ms`` (2 min)
  after they start, so the whole run is inside their last window; every bidder
  bids, waits for the answer, pauses (about ``--think-ms``, shrinking to a
  quarter by the end) and bids again, and answers an ``outbid`` at once.

Measured in the generators on one clock (``time.monotonic_ns``): bid ack
latency (send → ``bid_result``) and fan-out latency (a bid's send → each
watcher of the room receiving its ``bid`` event, and → the room's last
watcher), accepted bids/s, rejections by code, sockets dropped (and whether
their generator was keeping up). Then the ledger is checked through the
internal API: every acknowledged bid is in ``bids`` exactly once, with its
amount, and nothing else is but bids whose answer never arrived.

``--compare`` runs the same scenario against the engine, the seed's per-bid
lock ledger (LEDGER_MODE=baseline) and the Python reference core
(bench/rooms_server.py swaps it in), plus ``bench ledger`` for the ledger-level
ratio, and reports them side by side.

``--ending seller-decision`` (steady only) ends a share of the auctions during
the bidding into their seller's decision (bench/rooms_endings.py);
``--side-by-side`` runs steady without endings first, then with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import aiohttp
import msgspec
import uvloop

from bench import plot, rooms_endings, rooms_stats
from bench.core import BenchFailure
from bench.loadgen import MAX_AMOUNT_KOBO, Config, Results
from bench.report import REPO, Result, environment, progress
from bench.rooms_world import (
    MODES,
    Acknowledged,
    Api,
    EndingTerms,
    Target,
    World,
    check_ledger,
    machine_times,
    make_world,
    parse_metrics,
    process_cpu_s,
    started_server,
    wait_live,
)

HELP = (
    "real WebSockets on loopback: bid ack and fan-out latency, accepted bids/s, "
    "sockets dropped, the ledger checked"
)
TARGETS_MS = {"ack p99": 25.0, "fan-out p99": 50.0}
RESULTS_DIR = REPO / "bench" / "results"
STORM_ZIPF = 1.0  # storm: a few auctions draw most bidders and watchers
SETTLE_S = 1.0  # between the last socket ready and the first bid
GO_LEAD_S = 0.2  # the generators hear the start this long before it
STEADY_RATE = 1_000.0  # bids/s: one a second from each of the default 1,000 bidders
COMPARE_RATE = 5_000.0  # bids/s: well past what the per-bid-lock baseline can take


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Its own dest: `scenario` is the harness's name for the subcommand.
    parser.add_argument(
        "--scenario", dest="room_scenario", choices=("steady", "storm"), default="steady"
    )
    add_load_arguments(
        parser,
        rate_help=f"steady: offered bids/s, Poisson (default {STEADY_RATE:,.0f}; "
        f"with --compare {COMPARE_RATE:,.0f}, to saturate the baseline)",
    )
    parser.add_argument("--url", help="load this running server instead of starting one")
    parser.add_argument("--internal-token", help="with --url: its INTERNAL_API_TOKEN")
    parser.add_argument("--jwt-secret", help="with --url: its JWT_SECRET")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="the engine, the per-bid-lock baseline and the reference core, side by side",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the .md and .png go")
    parser.add_argument(
        "--py-spy",
        metavar="BIN",
        help="profile the server with this py-spy during the run (raw stacks next to the report)",
    )
    parser.add_argument(
        "--ending",
        choices=rooms_endings.MODES,
        default="none",
        help="steady: seller-decision ends a share of the auctions during the bidding, below "
        "their reserve, into their seller's decision (default none: no auction ends)",
    )
    parser.add_argument(
        "--ending-share",
        type=_share,
        default=0.25,
        help="with --ending: the share of the auctions that end during the bidding",
    )
    parser.add_argument(
        "--if-bid-window-ms",
        type=_positive,
        default=10_000,
        help="with --ending: their if-bid window and counter window (expiry is swept every "
        f"{rooms_endings.SWEEP_INTERVAL_S:g}s)",
    )
    parser.add_argument(
        "--answer-share",
        type=_share,
        default=0.5,
        help="with --ending: the share of their if-bids answered through the API "
        "(accept, decline, counter); the rest expire",
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="with --ending: steady without endings first, then with them, each on a fresh "
        "server; both reported",
    )


def add_load_arguments(parser: argparse.ArgumentParser, rate_help: str) -> None:
    """The load's shape: the world, the sockets, the bids (also `bench cluster`'s)."""
    parser.add_argument("--auctions", type=_positive, default=200)
    parser.add_argument("--bidders", type=_positive, default=1_000)
    parser.add_argument("--watchers", type=_count, default=5_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="bidding time")
    parser.add_argument("--processes", type=_positive, default=2, help="load-generator processes")
    parser.add_argument("--rate", type=float, default=None, help=rate_help)
    parser.add_argument(
        "--think-ms", type=float, default=250.0, help="storm: a bidder's mean pause at first"
    )
    parser.add_argument(
        "--zipf",
        type=float,
        default=None,
        help=f"popularity of auctions (Zipf s; 0 even); default 0 steady, {STORM_ZIPF} storm",
    )
    parser.add_argument(
        "--window-ms",
        type=_positive,
        default=120_000,
        help="the auctions' anti-sniping window and extension (storm: they end this after start)",
    )
    parser.add_argument(
        "--max-share",
        type=_share,
        default=0.0,
        help="the share of bidders who also leave maximums (half their sends; 0..1)",
    )
    parser.add_argument("--seed", type=int, default=360)
    parser.add_argument("--drain-s", type=float, default=5.0, help="wait for answers after the run")


def _positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 1, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


# ---- the load generators --------------------------------------------------------------


class Generators:
    """The load-generator processes: configured, started, told when to bid, collected."""

    def __init__(self, processes: list[asyncio.subprocess.Process], paths: list[Path]) -> None:
        self._processes = processes
        self._paths = paths

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    async def _say(self, message: bytes) -> None:
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.write(message + b"\n")
            await process.stdin.drain()

    async def _hear(self, event: str, timeout_s: float) -> list[dict[str, Any]]:
        async def one(process: asyncio.subprocess.Process) -> dict[str, Any]:
            assert process.stdout is not None
            line = await process.stdout.readline()
            if not line:
                raise BenchFailure(
                    f"load generator pid {process.pid} exited (status "
                    f"{await process.wait()}) before saying {event!r}; its stderr is above"
                )
            message: dict[str, Any] = json.loads(line)
            if message.get("event") != event:
                raise BenchFailure(f"load generator pid {process.pid} said {message}")
            return message

        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.gather(*(one(p) for p in self._processes))
        except TimeoutError:
            raise BenchFailure(
                f"the load generators did not say {event!r} within {timeout_s:.0f}s"
            ) from None

    async def ready(self, timeout_s: float) -> list[dict[str, Any]]:
        return await self._hear("ready", timeout_s)

    async def go(self, start_ns: int, stop_ns: int) -> None:
        await self._say(msgspec.json.encode({"start_ns": start_ns, "stop_ns": stop_ns}))

    async def done(self, timeout_s: float) -> list[Results]:
        await self._hear("done", timeout_s)
        results = []
        for path in self._paths:
            with path.open("rb") as data:  # our own processes' files, in our temp dir
                results.append(pickle.load(data))  # noqa: S301
        return results

    async def close(self) -> None:
        """Close their stdin (they exit), then kill what is left, by pid."""
        for process in self._processes:
            if process.stdin is not None and not process.stdin.is_closing():
                process.stdin.close()
        for process in self._processes:
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), timeout=5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def generators(
    args: argparse.Namespace,
    world: World,
    target: Target,
    deadline_s: float,
    *,
    ports: Sequence[int] = (),
    reconnect: bool = False,
) -> AsyncIterator[Generators]:
    """`--processes` generators, bidders and watchers dealt round-robin among them
    (and, given several nodes' `ports` on the target's host, among those)."""
    workdir = Path(tempfile.mkdtemp(prefix="d360-rooms-gen-"))
    processes: list[asyncio.subprocess.Process] = []
    paths = [workdir / f"gen-{k}.pickle" for k in range(args.processes)]
    try:
        for k in range(args.processes):
            config = Config(
                index=k,
                host=target.host,
                port=target.port,
                auction_ids=world.auction_ids,
                bidders=[
                    (world.bidder_auction[i], world.tokens[i])
                    for i in range(k, len(world.tokens), args.processes)
                ],
                watchers=world.watcher_auction[k :: args.processes],
                scenario=args.room_scenario,
                rate=args.rate / args.processes,
                think_ms=args.think_ms,
                max_share=args.max_share,
                seed=args.seed,
                results_path=str(paths[k]),
                deadline_s=deadline_s,
                drain_s=args.drain_s,
                ports=list(ports),
                reconnect=reconnect,
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.loadgen",
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # Ctrl-C reaches the bench, which stops them
            )
            processes.append(process)
            assert process.stdin is not None
            process.stdin.write(msgspec.json.encode(config) + b"\n")
            await process.stdin.drain()
        yield Generators(processes, paths)
    finally:
        await Generators(processes, paths).close()
        shutil.rmtree(workdir, ignore_errors=True)


# ---- one run -------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    result: Result
    series: dict[str, list[float | None]]


def zipf_of(args: argparse.Namespace) -> float:
    """The popularity skew: --zipf, else the scenario's own."""
    if args.zipf is not None:
        return float(args.zipf)
    return STORM_ZIPF if args.room_scenario == "storm" else 0.0


def setup_seconds(args: argparse.Namespace) -> float:
    """What making the world and connecting may take."""
    sockets: int = args.bidders + args.watchers
    return 10 + sockets / 300


def generator_deadline_s(args: argparse.Namespace, bidding_s: float) -> float:
    """The generators' hard cap (they kill themselves after it, whatever happens)."""
    drain_s: float = args.drain_s
    return setup_seconds(args) * 3 + bidding_s + drain_s + 120


async def world_for(
    api: Api,
    target: Target,
    args: argparse.Namespace,
    bidding_s: float,
    endings: EndingTerms | None = None,
) -> World:
    """The scenario's world, its auctions open for `bidding_s` of bidding and more
    (but `endings`')."""
    return await make_world(
        api,
        target,
        auctions=args.auctions,
        bidders=args.bidders,
        watchers=args.watchers,
        zipf_s=zipf_of(args),
        scenario=args.room_scenario,
        seconds=bidding_s,
        window_ms=args.window_ms,
        setup_s=setup_seconds(args),
        seed=args.seed,
        endings=endings,
    )


@dataclass(slots=True)
class Connected:
    """The generators, once every socket that could open has, and every auction is live."""

    gens: Generators
    sockets: int
    failures: Counter[str]
    seconds: float


async def connected(
    stack: contextlib.AsyncExitStack,
    args: argparse.Namespace,
    api: Api,
    world: World,
    target: Target,
    bidding_s: float,
    *,
    ports: Sequence[int] = (),
    reconnect: bool = False,
) -> Connected:
    """Start the generators (stopped when `stack` closes), wait until they are ready
    and every auction is live; fails if no socket could connect."""
    setup_s = setup_seconds(args)
    progress(f"{args.processes} load generators opening {args.bidders + args.watchers:,} sockets")
    started = time.perf_counter()
    gens = await stack.enter_async_context(
        generators(
            args,
            world,
            target,
            generator_deadline_s(args, bidding_s),
            ports=ports,
            reconnect=reconnect,
        )
    )
    ready, _ = await asyncio.gather(
        gens.ready(timeout_s=setup_s * 3 + 60),
        wait_live(api, world.auction_ids, timeout_s=setup_s * 3 + 60),
    )
    seconds = time.perf_counter() - started
    failures: Counter[str] = Counter()
    for message in ready:
        failures.update(message["failures"])
    sockets = sum(m["bidders"] + m["watchers"] for m in ready)
    progress(
        f"{sockets:,} sockets open and every auction live after {seconds:.1f}s"
        + (f"; {sum(failures.values()):,} failed: {dict(failures)}" if failures else "")
    )
    if not sockets:
        raise BenchFailure(f"no socket could connect: {dict(failures)}")
    return Connected(gens, sockets, failures, seconds)


def checked_figures(
    results: Sequence[Results], start_ns: int, stop_ns: int, *, phase: bool = False
) -> rooms_stats.Figures:
    """The run's figures (or a `phase`'s: rooms_stats.figures); fails if an amount
    does not fit the delivery keys."""
    figures = rooms_stats.figures(results, start_ns, stop_ns, phase=phase)
    if figures.max_amount > MAX_AMOUNT_KOBO:
        raise BenchFailure(
            f"a bid of {figures.max_amount} kobo does not fit the delivery keys "
            f"(at most {MAX_AMOUNT_KOBO}); fewer bids per auction, or lower prices"
        )
    return figures


def acknowledged(*phases: rooms_stats.Figures) -> Acknowledged:
    """What the bidders were told over one or more phases of a run."""
    told = Acknowledged({}, set(), set())
    for figures in phases:
        told.accepted.update(figures.accepted_ids)
        told.rejected.update(figures.rejected_ids)
        told.unknown.update(figures.unknown_ids)
    return told


def ending_plan(args: argparse.Namespace) -> rooms_endings.EndingPlan | None:
    """`--ending`'s plan; None without it."""
    if args.ending == "none":
        return None
    return rooms_endings.plan(
        args.auctions,
        args.ending_share,
        args.answer_share,
        args.seconds,
        args.if_bid_window_ms,
        args.seed,
    )


async def run_once(args: argparse.Namespace, mode: str) -> Run:
    """One scenario against one server: set up, bid, collect, check the ledger."""
    zipf = zipf_of(args)
    plan = ending_plan(args)
    seller: rooms_endings.Seller | None = None
    endings: dict[str, Any] | None = None
    async with contextlib.AsyncExitStack() as stack:
        if args.url:
            target = Target(args.url.rstrip("/"), args.internal_token, args.jwt_secret)
            progress(f"loading the server at {target.base}")
        else:
            target = await stack.enter_async_context(started_server(mode))
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        )
        api = Api(session, target)
        terms = None
        if plan is not None:
            terms = plan.terms(rooms_endings.go_after_start_ms(args.bidders + args.watchers))
        world = await world_for(api, target, args, args.seconds, terms)
        load = await connected(stack, args, api, world, target, args.seconds)
        gens, failures, connect_s = load.gens, load.failures, load.seconds
        if plan is None:
            await asyncio.sleep(SETTLE_S)
        else:  # the ending auctions' ends are planned from the bidding's start
            await rooms_endings.start_bidding(api, world, target.jwt_secret, SETTLE_S, GO_LEAD_S)
            seller = rooms_endings.Seller(api, world, plan, target.jwt_secret, args.seed)
        before = Probe.take(target, parse_metrics(await api.metrics()))
        start_ns = time.monotonic_ns() + int(GO_LEAD_S * 1e9)
        if world.planned_go_ms is not None:  # the ending auctions' ends count from it
            start_ns = rooms_endings.monotonic_ns_at(world.planned_go_ms)
        stop_ns = start_ns + int(args.seconds * 1e9)
        clock = rooms_endings.Clock.of(start_ns, stop_ns)
        ends_in_s = (world.end_ms - time.time_ns() // 1_000_000) / 1000
        if args.room_scenario == "storm" and ends_in_s < args.seconds:
            progress(
                f"note: the auctions' first end is {ends_in_s:.0f}s away, inside the run: "
                "the extensions the first bids earn keep them open"
            )
        profiler = await _start_profiler(args, target, mode)
        await gens.go(start_ns, stop_ns)
        if seller is not None:
            seller.start()
        progress(f"{args.room_scenario}: bidding for {args.seconds:g}s")
        results = await _watch(gens, api, args)
        if seller is not None:
            await seller.stop()
        after = Probe.take(target, parse_metrics(await api.metrics()))
        profile = await _finish_profiler(profiler)
        figures = checked_figures(results, start_ns, stop_ns)
        progress(f"checking the ledger of {len(world.auction_ids)} auctions")
        ledger = await check_ledger(api, world.auction_ids, acknowledged(figures))
        if plan is not None and seller is not None:
            endings = await rooms_endings.check(
                api, world, plan, seller, results, clock, figures.rejections
            )
    result = _result(args, mode, zipf, world, results, figures, ledger, before, after, connect_s)
    if endings is not None:
        _with_endings(result, endings, args)
    result["sockets_failed"] = sum(failures.values())
    result["sockets_failed_reasons"] = dict(failures)
    if profile is not None:
        result["server_profile"] = profile
    progress(_summary(result))
    return Run(result, rooms_stats.series(figures.seconds))


def _with_endings(result: Result, endings: dict[str, Any], args: argparse.Namespace) -> None:
    """The endings' figures in the result: refusals of bids sent after an auction's
    end counted apart from the others, and the ledger consistent only if every
    ended auction agrees with its if-bid too."""
    rejections = result["rejections"]
    assert isinstance(rejections, dict)
    result["rejections"] = {k: v for k, v in rejections.items() if k != "auction_ended"}
    ledger = result["ledger"]
    assert isinstance(ledger, dict)
    ledger["endings_consistent"] = endings["consistent"]
    result["ledger_consistent"] = bool(result["ledger_consistent"]) and endings["consistent"]
    result["endings"] = endings
    config = result["config"]
    assert isinstance(config, dict)
    config.update(
        ending=args.ending,
        ending_share=args.ending_share,
        if_bid_window_ms=args.if_bid_window_ms,
        answer_share=args.answer_share,
    )


async def _watch(gens: Generators, api: Api, args: argparse.Namespace) -> list[Results]:
    """Wait for the generators, saying every 10 s what the server has accepted."""
    collecting = asyncio.ensure_future(gens.done(timeout_s=args.seconds + args.drain_s + 120))
    started = time.monotonic()
    last = _accepted(parse_metrics(await api.metrics()))
    try:
        while not collecting.done():
            await asyncio.wait({collecting}, timeout=10)
            if collecting.done() or time.monotonic() - started > args.seconds + 1:
                break
            now = _accepted(parse_metrics(await api.metrics()))
            progress(
                f"  {time.monotonic() - started:4.0f}s: {now - last:,.0f} bids accepted in "
                f"the last 10 s ({(now - last) / 10:,.0f}/s)"
            )
            last = now
        return await collecting
    finally:
        collecting.cancel()


def _accepted(samples: dict[str, float]) -> float:
    return sum(
        v
        for k, v in samples.items()
        if k.startswith("auction_bids_total{") and 'result="accepted"' in k
    )


@dataclass(slots=True)
class Probe:
    """The server's counters, its process's CPU and the machine's, at one moment."""

    at: float
    metrics: dict[str, float]
    server_cpu_s: float | None
    machine: tuple[int, int] | None

    @classmethod
    def take(cls, target: Target, metrics: dict[str, float]) -> Probe:
        return cls(time.monotonic(), metrics, process_cpu_s(target.pid), machine_times())


def _delta(before: Probe, after: Probe, name: str) -> float:
    return after.metrics.get(name, 0.0) - before.metrics.get(name, 0.0)


def server_side(before: Probe, after: Probe) -> dict[str, Any]:
    wall = after.at - before.at
    fanouts = _delta(before, after, "auction_fanout_seconds_count")
    acks = _delta(before, after, "auction_bid_latency_seconds_count")
    batches = _delta(before, after, "auction_ledger_batch_size_count")
    cpu = None
    if before.server_cpu_s is not None and after.server_cpu_s is not None:
        cpu = round((after.server_cpu_s - before.server_cpu_s) / wall, 3)
    return {
        "cpu_share": cpu,  # of one core: the engine is one Python process
        "fanout_commit_to_last_write_mean_ms": round(
            _delta(before, after, "auction_fanout_seconds_sum") / fanouts * 1000, 3
        )
        if fanouts
        else None,
        "accepted_arrival_to_ack_mean_ms": round(
            _delta(before, after, "auction_bid_latency_seconds_sum") / acks * 1000, 3
        )
        if acks
        else None,
        "ledger_batches": int(batches),
        "ledger_batch_mean": round(
            _delta(before, after, "auction_ledger_batch_size_sum") / batches, 1
        )
        if batches
        else None,
        "ledger_flush_mean_ms": round(
            _delta(before, after, "auction_ledger_flush_seconds_sum") / batches * 1000, 3
        )
        if batches
        else None,
        # Bucket bounds (upper), from the server's own histograms.
        "accepted_arrival_to_ack_p99_le_ms": _ms(
            histogram_quantile(before, after, "auction_bid_latency_seconds", 0.99)
        ),
        "fanout_commit_to_last_write_p99_le_ms": _ms(
            histogram_quantile(before, after, "auction_fanout_seconds", 0.99)
        ),
        "slow_clients_dropped": int(_delta(before, after, "auction_ws_slow_clients_dropped_total")),
        "messages_sent": int(_delta(before, after, "auction_ws_messages_sent_total")),
        "messages_sent_per_s": round(
            _delta(before, after, "auction_ws_messages_sent_total") / wall, 1
        ),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def histogram_quantile(before: Probe, after: Probe, name: str, q: float) -> float | None:
    """Prometheus-style: the upper bound of the bucket holding the q-quantile of the
    observations between the two probes (seconds), or None without any."""
    buckets = []
    for key, value in after.metrics.items():
        if key.startswith(f"{name}_bucket{{") and 'le="' in key:
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), value - before.metrics.get(key, 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    return next(bound for bound, count in buckets if count >= rank)


def machine_busy(before: Probe, after: Probe) -> float | None:
    if before.machine is None or after.machine is None:
        return None
    busy, total = after.machine[0] - before.machine[0], after.machine[1] - before.machine[1]
    return round(busy / total, 3) if total else None


def _result(
    args: argparse.Namespace,
    mode: str,
    zipf: float,
    world: World,
    results: Sequence[Results],
    figures: rooms_stats.Figures,
    ledger: dict[str, Any],
    before: Probe,
    after: Probe,
    connect_s: float,
) -> Result:
    seconds = args.seconds
    result: Result = {
        "scenario": "rooms",
        "rooms_scenario": args.room_scenario,
        "server_mode": mode if not args.url else "external",
    }
    quantiles = {
        prefix: rooms_stats.percentiles(values)
        for prefix, values in (
            ("ack", figures.ack_ms),
            ("ack_accepted", figures.ack_accepted_ms),
            ("ack_max", figures.ack_max_ms),
            ("fanout", figures.fanout_ms),
            ("fanout_last", figures.fanout_last_ms),
        )
    }
    for prefix, values in quantiles.items():
        for name, value in values.items():
            result[f"{prefix}_{name.replace('.', '')}_ms"] = value
    drops = [drop for r in results for drop in r.drops]
    offered = sum(r.offered for r in results)
    no_idle = sum(r.no_idle_bidder for r in results)
    gen_processes = [
        {
            "index": r.index,
            "bidders": r.bidders_connected,
            "watchers": r.watchers_connected,
            "cpu_share": round(r.cpu_s / r.wall_s, 3) if r.wall_s else None,
            "lag_max_ms": max(r.lag_ms_per_s, default=0.0),
            "seconds_lagging_over_100ms": sum(1 for lag in r.lag_ms_per_s if lag > 100),
            "connect_s": round(r.connect_s, 2),
        }
        for r in results
    ]
    ack_p99, fan_p99 = quantiles["ack"]["p99"], quantiles["fanout"]["p99"]
    result.update(
        {
            "accepted_bids_per_s": round(figures.accepted / seconds, 1),
            "sent_bids_per_s": round(figures.sent / seconds, 1),
            "offered_bids_per_s": round(offered / seconds, 1),
            "processes": args.processes,
            "ledger_consistent": ledger["ledger_consistent"],
            "sent": figures.sent,
            "accepted": figures.accepted,
            "answered": figures.answered,
            "unanswered": figures.unanswered,
            "rejections": figures.rejections,
            "maxes": {
                "sent": figures.maxes_sent,
                "accepted": figures.maxes_accepted,
                "rejections": figures.max_rejections,
                "proxy_bids_in_ledger": ledger["proxy_bids"],
                "proxy_deliveries": figures.proxy_deliveries,
            },
            "no_idle_bidder": no_idle,
            "saturated": args.room_scenario == "storm"
            or (offered > 0 and no_idle / offered >= 0.05),
            "extensions": figures.extensions,
            "sockets_connected": sum(r.bidders_connected + r.watchers_connected for r in results),
            "sockets_dropped": len(drops),
            "sockets_dropped_kept_up": sum(1 for drop in drops if drop.kept_up),
            "sockets_dropped_by_code": dict(Counter(str(drop.code) for drop in drops)),
            "seq_gaps": sum(r.seq_gaps for r in results),
            "seq_repeats": sum(r.seq_repeats for r in results),
            "frame_errors": dict(sum((Counter(r.errors) for r in results), Counter())),
            "deliveries": {
                "expected": figures.deliveries_expected,
                "measured": len(figures.fanout_ms),
                "unmatched": figures.deliveries_unmatched,
            },
            "targets": {
                "ack_p99_ms": TARGETS_MS["ack p99"],
                "fanout_p99_ms": TARGETS_MS["fan-out p99"],
                "ack_p99_met": ack_p99 is not None and ack_p99 <= TARGETS_MS["ack p99"],
                "fanout_p99_met": fan_p99 is not None and fan_p99 <= TARGETS_MS["fan-out p99"],
                "no_drop_that_kept_up": not any(drop.kept_up for drop in drops),
            },
            "ledger": ledger,
            "generator": {
                "processes": gen_processes,
                "kept_up": all(
                    p["seconds_lagging_over_100ms"] == 0 and (p["cpu_share"] or 0) < 0.9
                    for p in gen_processes
                ),
            },
            "server": server_side(before, after),
            "machine_busy_share": machine_busy(before, after),
            "config": {
                "scenario": args.room_scenario,
                "auctions": args.auctions,
                "bidders": args.bidders,
                "watchers": args.watchers,
                "seconds": seconds,
                "processes": args.processes,
                "rate": args.rate,
                "think_ms": args.think_ms,
                "max_share": args.max_share,
                "zipf": zipf,
                "window_ms": args.window_ms,
                "seed": args.seed,
                "busiest_room": {
                    "bidders": max(Counter(world.bidder_auction).values(), default=0),
                    "watchers": max(Counter(world.watcher_auction).values(), default=0),
                },
            },
            "setup_s": {
                **{k: round(v, 1) for k, v in world.seconds.items()},
                "connect_s": round(connect_s, 1),
            },
            **environment(),
        }
    )
    return result


def _summary(result: Result) -> str:
    endings = result.get("endings")
    return (
        f"{result['rooms_scenario']} on {result['server_mode']}: "
        f"{result['accepted_bids_per_s']:,.0f} accepted bids/s "
        f"(sent {result['sent_bids_per_s']:,.0f}/s); ack p50/p99/p99.9 "
        f"{result['ack_p50_ms']}/{result['ack_p99_ms']}/{result['ack_p999_ms']} ms; fan-out "
        f"p50/p99/p99.9 {result['fanout_p50_ms']}/{result['fanout_p99_ms']}/"
        f"{result['fanout_p999_ms']} ms; dropped {result['sockets_dropped']}; "
        f"ledger consistent: {result['ledger_consistent']}"
        + (f"; {rooms_endings.summary(endings)}" if isinstance(endings, dict) else "")
    )


# ---- profiling the server (optional) ------------------------------------------------------


async def _start_profiler(
    args: argparse.Namespace, target: Target, mode: str
) -> tuple[asyncio.subprocess.Process, Path] | None:
    if not args.py_spy or target.pid is None:
        return None
    out = args.out / f"{_stem(args)}-{mode}-pyspy.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        args.py_spy,
        "record",
        "--pid",
        str(target.pid),
        "--duration",
        str(int(args.seconds)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    progress(f"py-spy (pid {process.pid}) sampling the server into {out}")
    return process, out


async def _finish_profiler(
    profiler: tuple[asyncio.subprocess.Process, Path] | None,
) -> dict[str, Any] | None:
    if profiler is None:
        return None
    process, out = profiler
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), timeout=30)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    return summarise_profile(out)


def summarise_profile(path: Path, top: int = 12) -> dict[str, Any] | None:
    """py-spy's raw (collapsed) stacks: the share of samples per leaf function and
    per function anywhere on the stack."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return None

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(n / total, 3)) for name, n in counter.most_common(top)]

    return {
        "file": str(path),
        "samples": total,
        "self": shares(leaf),
        "inclusive": shares(inclusive),
    }


# ---- the reports --------------------------------------------------------------------------


def _write_reports(args: argparse.Namespace, run: Run, stem: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{stem}.png"
    md = args.out / f"{stem}.md"
    result = run.result
    config = result["config"]
    assert isinstance(config, dict)
    skipped = plot.unavailable()
    if skipped is not None:
        result["files"] = {"md": str(md), "png": None}
        result["plot_skipped"] = skipped
        md.write_text(rooms_stats.markdown(result, None))
        progress(f"wrote {md}; the plot was skipped: {skipped}")
        return
    plot.latency_over_time(
        png,
        run.series,
        title=(
            f"rooms {config['scenario']} on {result['server_mode']}: {config['auctions']} "
            f"auctions, {config['bidders']} bidders, {config['watchers']} watchers, "
            f"{config['processes']} generators; {result['accepted_bids_per_s']:,.0f} "
            "accepted bids/s"
        ),
        targets_ms=TARGETS_MS,
    )
    result["files"] = {"md": str(md), "png": str(png)}
    md.write_text(rooms_stats.markdown(result, png.name))
    progress(f"wrote {md} and {png}")


def _fail_if_inconsistent(result: Result) -> None:
    if not result["ledger_consistent"]:
        endings = result.get("endings")
        problems = endings.get("problems") if isinstance(endings, dict) else None
        raise BenchFailure(
            f"the ledger does not hold exactly the acknowledged bids ({result['server_mode']}): "
            f"{result['ledger']}" + (f"; endings: {problems}" if problems else "")
        )


def _stem(args: argparse.Namespace) -> str:
    ending = "" if args.ending == "none" else f"-{args.ending}"
    return f"rooms-{args.room_scenario}{ending}"


async def _single(args: argparse.Namespace) -> Result:
    run = await run_once(args, "engine")
    _write_reports(args, run, _stem(args))
    _fail_if_inconsistent(run.result)
    return run.result


#: What `--side-by-side` sets beside each other, and subtracts (with endings − without).
SIDE_BY_SIDE = (
    "accepted_bids_per_s",
    "sent_bids_per_s",
    "ack_p50_ms",
    "ack_p99_ms",
    "ack_p999_ms",
    "fanout_p50_ms",
    "fanout_p99_ms",
    "fanout_p999_ms",
    "unanswered",
    "sockets_dropped",
    "seq_gaps",
    "ledger_consistent",
    "machine_busy_share",
)


async def _side_by_side(args: argparse.Namespace) -> Result:
    """Steady as it is, then steady with the endings, each on a fresh server."""
    plain_args = argparse.Namespace(**{**vars(args), "ending": "none"})
    progress("--side-by-side: steady without endings")
    plain = await run_once(plain_args, "engine")
    _write_reports(plain_args, plain, _stem(plain_args))
    progress(f"--side-by-side: steady with --ending {args.ending}")
    ending = await run_once(args, "engine")
    _write_reports(args, ending, _stem(args))
    runs = {"without": plain.result, "with": ending.result}
    difference = {
        key: round(after - before, 3)
        for key in SIDE_BY_SIDE
        if _number(before := plain.result.get(key)) and _number(after := ending.result.get(key))
    }
    md = args.out / f"rooms-{args.room_scenario}-side-by-side.md"
    md.write_text(rooms_stats.side_by_side_markdown(runs, SIDE_BY_SIDE, args.ending))
    progress(f"wrote {md}")
    for result in runs.values():
        _fail_if_inconsistent(result)
    return {
        **ending.result,
        "side_by_side": {
            "without": {key: plain.result.get(key) for key in (*SIDE_BY_SIDE, "git_commit")},
            "with": {key: ending.result.get(key) for key in (*SIDE_BY_SIDE, "git_commit")},
            "difference": difference,
            "md": str(md),
        },
    }


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def _compare(args: argparse.Namespace) -> Result:
    runs: dict[str, Run] = {}
    for mode in MODES:
        progress(f"--compare: {mode}")
        runs[mode] = await run_once(args, mode)
        _write_reports(args, runs[mode], f"rooms-compare-{args.room_scenario}-{mode}")
    ledger_level = await _ledger_level()
    by_mode = {mode: run.result for mode, run in runs.items()}
    engine = by_mode["engine"]
    ratios: dict[str, float | None] = {}
    for mode in MODES[1:]:
        other = by_mode[mode]["accepted_bids_per_s"]
        assert isinstance(other, float) and isinstance(engine["accepted_bids_per_s"], float)
        ratios[f"engine_vs_{mode}"] = (
            round(engine["accepted_bids_per_s"] / other, 2) if other else None
        )
    notes = _compare_notes(by_mode)
    stem = f"rooms-compare-{args.room_scenario}"
    md = args.out / f"{stem}.md"
    png = args.out / f"{stem}.png"
    text = rooms_stats.compare_markdown(by_mode, ledger_level, notes)
    skipped = plot.unavailable()
    if skipped is None:
        plot.compare_bars(
            png,
            {m: float(r["accepted_bids_per_s"]) for m, r in by_mode.items()},  # type: ignore[arg-type]
            {m: r["ack_p99_ms"] for m, r in by_mode.items()},  # type: ignore[misc]
            title=(
                f"rooms {args.room_scenario}: the engine, the per-bid-lock baseline, the reference"
            ),
        )
        text += f"\n![compare]({png.name})\n"
    md.write_text(text)
    progress(f"wrote {md}" + (f" and {png}" if skipped is None else f"; plot skipped: {skipped}"))
    for result in by_mode.values():
        _fail_if_inconsistent(result)
    keep = (
        "accepted_bids_per_s",
        "sent_bids_per_s",
        "ack_p50_ms",
        "ack_p99_ms",
        "ack_p999_ms",
        "fanout_p50_ms",
        "fanout_p99_ms",
        "fanout_p999_ms",
        "ledger_consistent",
        "sockets_dropped",
        "unanswered",
        "saturated",
        "rejections",
        "server",
        "generator",
    )
    return {
        **engine,
        "compare": {mode: {k: r.get(k) for k in keep} for mode, r in by_mode.items()},
        "ratios": ratios,
        "ledger_level": ledger_level,
        "compare_notes": notes,
        "files": {"md": str(md), "png": str(png) if skipped is None else None},
        **({"plot_skipped": skipped} if skipped is not None else {}),
    }


def _compare_notes(by_mode: dict[str, Result]) -> list[str]:
    notes = [
        "baseline: `python -m engine serve` with LEDGER_MODE=baseline; reference: "
        "bench/rooms_server.py (the engine cannot pick its core class).",
    ]
    baseline = by_mode["baseline"]
    if not baseline["saturated"]:
        notes.append(
            "the baseline was NOT saturated (fewer than 5 % of arrivals found every "
            "bidder waiting): raise --rate for a ratio at its saturation point"
        )
    engine_rate = by_mode["engine"]["accepted_bids_per_s"]
    base_rate = baseline["accepted_bids_per_s"]
    assert isinstance(engine_rate, float) and isinstance(base_rate, float)
    if base_rate and engine_rate / base_rate < 10:
        notes.append(f"engine / baseline = {engine_rate / base_rate:.1f}, below the 10x target")
    return notes


async def _ledger_level() -> dict[str, Any] | None:
    """`python -m bench ledger --json` (a short run) in its own process: the two
    ledgers without sockets, for the ratio where the baseline's cost is all there is."""
    progress("--compare: the ledger level (python -m bench ledger --json --seconds 10)")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench",
        "ledger",
        "--json",
        "--seconds",
        "10",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )

    async def relay() -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            progress("  bench ledger: " + line.decode(errors="replace").rstrip().split("] ", 1)[-1])

    try:
        async with asyncio.timeout(600):
            out, _ = await asyncio.gather(_read_all(process), relay())
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    await process.wait()
    if process.returncode != 0 or not out.strip():
        progress(f"warning: bench ledger failed (status {process.returncode}); no ledger level")
        return None
    full: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    keys = (
        "writebehind_bids_per_s",
        "baseline_bids_per_s",
        "ratio_vs_baseline",
        "bids",
        "auctions",
        "seconds_cap",
    )
    return {key: full.get(key) for key in keys}


async def _read_all(process: asyncio.subprocess.Process) -> bytes:
    assert process.stdout is not None
    return await process.stdout.read()


# ---- entry --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Result:
    if args.url and not (args.internal_token and args.jwt_secret):
        raise BenchFailure("--url needs --internal-token and --jwt-secret (the server's own)")
    if args.url and args.compare:
        raise BenchFailure("--compare starts its own servers: it does not take --url")
    if args.seconds <= 0:
        raise BenchFailure("--seconds must be above 0")
    if args.ending != "none" and (args.room_scenario != "steady" or args.compare):
        raise BenchFailure("--ending is an option of the steady scenario alone, without --compare")
    if args.side_by_side and args.ending == "none":
        raise BenchFailure("--side-by-side needs --ending (it runs steady without it, then with)")
    if args.rate is None:
        args.rate = COMPARE_RATE if args.compare else STEADY_RATE
    try:
        return uvloop.run(_main(args))
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise BenchFailure("interrupted; every process the run started is stopped") from None


async def _main(args: argparse.Namespace) -> Result:
    # SIGTERM (say, from `timeout`) cancels the run like Ctrl-C: every process it
    # started is stopped on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.compare:
        return await _compare(args)
    if args.side_by_side:
        return await _side_by_side(args)
    return await _single(args)
