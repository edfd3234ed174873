"""The `rooms` scenario's server side: the engine as a separate process, the
world made through its internal API, and the ledger check after the run.

Everything here talks to the server as the remaining platform would (HTTP on
loopback with the service token), so it works the same against a server the
bench started and against one given with ``--url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench.core import BenchFailure
from bench.report import REPO, progress
from bench.streams import NAIRA, increment_for
from engine.tokens import mint_token

T = TypeVar("T")

#: Every bidder's wallet: far above any price a run reaches, so no bid is
#: refused for buying power and the amounts stay below loadgen.MAX_AMOUNT_KOBO.
FUNDS_KOBO = 10**13  # ₦100 billion
#: How the server is started for each of --compare's variants.
MODES = ("engine", "baseline", "reference")
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_HTTP_CONCURRENCY = 16


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---- the server process ------------------------------------------------------------


@dataclass(slots=True)
class Target:
    """A server to load: its address, its secrets, and (if the bench started it) its pid."""

    base: str  # http://127.0.0.1:PORT
    internal_token: str
    jwt_secret: str
    pid: int | None = None
    mode: str = "engine"

    @property
    def host(self) -> str:
        return self.base.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1].split("/", 1)[0])


def server_env(
    data_dir: Path, jwt_secret: str, internal_token: str, mode: str = "engine"
) -> dict[str, str]:
    """The server's environment: embedded database in `data_dir`, limits out of the
    way; `mode` baseline sets LEDGER_MODE=baseline (the seed's per-bid transaction)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "LEDGER_MODE")
    }
    env.update(
        ENGINE_DATA_DIR=str(data_dir),
        JWT_SECRET=jwt_secret,
        INTERNAL_API_TOKEN=internal_token,
        # One loopback address opens every socket of the run: the per-IP limit
        # (100/min by default) would refuse all but the first hundred.
        RATE_LIMIT_IP_PER_MIN="1000000000",
        RATE_LIMIT_USER_PER_MIN="1000000000",
        WS_BIDS_PER_S="1000000",
        WS_FRAMES_PER_S="1000000",
        WS_SOCKETS_PER_IP="1000000",
        LEDGER_MODE="baseline" if mode == "baseline" else "writebehind",
        LOG_LEVEL=os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING"),
        PYTHONUNBUFFERED="1",
    )
    return env


def server_command(mode: str, port: int) -> list[str]:
    """`python -m engine serve` (the baseline too: LEDGER_MODE); the reference core
    through the bench's launcher (bench/rooms_server.py): the engine cannot pick
    its core class."""
    command = ["-m", "bench.rooms_server"] if mode == "reference" else ["-m", "engine", "serve"]
    return [sys.executable, *command, "--host", "127.0.0.1", "--port", str(port)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def started_server(mode: str, start_timeout_s: float = 180.0) -> AsyncIterator[Target]:
    """A server of `mode` on a free loopback port, with a fresh embedded database in a
    temporary directory; stopped (SIGTERM, then SIGKILL) and removed on exit."""
    data_dir = Path(tempfile.mkdtemp(prefix="d360-rooms-"))  # short: a socket lives in it
    secret, token = f"bench-jwt-{uuid.uuid4().hex}", f"bench-internal-{uuid.uuid4().hex}"
    port = free_port()
    log_path = data_dir / "server.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        *server_command(mode, port),
        cwd=REPO,
        env=server_env(data_dir, secret, token, mode),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # Ctrl-C reaches the bench, which stops it in order
    )
    target = Target(f"http://127.0.0.1:{port}", token, secret, process.pid, mode)
    try:
        progress(f"server ({mode}) pid {process.pid} on port {port}, data in {data_dir}")
        await _wait_ready(target, process, log_path, start_timeout_s)
        if mode != "engine":
            _require_wiring(log_path, mode)
        yield target
    finally:
        await _stop(process)
        log.close()
        _stop_orphaned_postgres(data_dir / "pg")
        if os.environ.get("BENCH_KEEP_SERVER_DIR"):
            progress(f"kept {data_dir} (BENCH_KEEP_SERVER_DIR)")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


async def _wait_ready(
    target: Target, process: asyncio.subprocess.Process, log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise BenchFailure(
                    f"the server exited with status {process.returncode} while starting:\n"
                    + _tail(log)
                )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{target.base}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.25)
    raise BenchFailure(f"the server was not ready within {timeout_s:.0f}s:\n" + _tail(log))


#: What the server's log says when a variant is in place: no line, no comparison.
_WIRING = {
    "baseline": "LEDGER_MODE=baseline: one locked transaction per bid",
    "reference": "bench.rooms_server wired: core bench.reference_model.ReferenceCore",
}


def _require_wiring(log: Path, mode: str) -> None:
    expected = _WIRING[mode]
    found = [line for line in _tail(log, 200).splitlines() if expected in line]
    if not found:
        raise BenchFailure(f"the {mode} server's log does not say {expected!r}:\n" + _tail(log))
    progress(f"server ({mode}): {expected}")


def _tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the server flushes its ledger and stops its database), then SIGKILL."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), timeout=30)
        except TimeoutError:
            progress(f"the server (pid {process.pid}) did not stop within 30s: killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _stop_orphaned_postgres(pgdata: Path) -> None:
    """A server killed before it could stop its embedded PostgreSQL leaves it running:
    stop that one (its pid from postmaster.pid, checked to serve `pgdata`)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if str(pgdata).encode() not in cmdline:
        return
    progress(f"stopping the embedded PostgreSQL (pid {pid}) the server left behind")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)  # fast shutdown
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) of process `pid` so far, from /proc; None elsewhere."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_times() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every core since boot; None without /proc."""
    try:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


# ---- the world ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndingTerms:
    """Auctions that end during the bidding (bench/rooms_endings.py): when, and on
    what terms, so that end processing sends them to their seller's decision."""

    after_go_ms: Mapping[int, int]  # auction index → its end, ms after the bidding starts
    go_after_start_ms: int  # the bidding's planned start, ms after the auctions open
    reserve_kobo: int
    if_bid_window_ms: int  # and the counter window


@dataclass(slots=True)
class World:
    auction_ids: list[str]
    bidder_ids: list[uuid.UUID]
    tokens: list[str]
    bidder_auction: list[int]  # the auction index each bidder bids on
    watcher_auction: list[int]  # the auction index each watcher watches
    start_ms: int
    end_ms: int
    seconds: dict[str, float] = field(default_factory=dict)
    dealer_id: uuid.UUID | None = None  # every auction's seller
    #: With EndingTerms: a manager (who may move an end), the bidding's planned
    #: start and each ending auction's end (epoch ms).
    manager_id: uuid.UUID | None = None
    planned_go_ms: int | None = None
    ends_ms: dict[int, int] = field(default_factory=dict)


def apportion(total: int, slots: int, zipf_s: float, rng: random.Random) -> list[int]:
    """`total` items over `slots` by Zipf(s) popularity (ranks shuffled; s=0: even),
    at least one each when there are enough; largest remainders get the rest."""
    weights = [1 / (rank + 1) ** zipf_s for rank in range(slots)]
    rng.shuffle(weights)
    floor = 1 if total >= slots else 0
    spare = total - floor * slots
    share = [spare * w / sum(weights) for w in weights]
    counts = [floor + int(s) for s in share]
    order = sorted(range(slots), key=lambda i: share[i] - int(share[i]), reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def assignment(counts: Sequence[int], rng: random.Random) -> list[int]:
    """One auction index per item (so many of each as `counts` says), shuffled."""
    items = [auction for auction, n in enumerate(counts) for _ in range(n)]
    rng.shuffle(items)
    return items


class Api:
    """The internal HTTP API, with the service token on every call (so the
    per-IP limit, which the platform is exempt from, never applies); or, made
    by `as_user`, the public API as one user."""

    def __init__(
        self, session: aiohttp.ClientSession, target: Target, token: str | None = None
    ) -> None:
        self._session = session
        self._target = target
        self._base = target.base
        self._headers = {"Authorization": f"Bearer {token or target.internal_token}"}

    def as_user(self, token: str) -> Api:
        """The same server, called with a user's JWT instead of the service token."""
        return Api(self._session, self._target, token)

    async def call(self, method: str, path: str, body: Any = None, ok: int = 200) -> Any:
        status, data = await self.request(method, path, body)
        if status not in (ok, 200, 201):
            raise BenchFailure(f"{method} {path} answered {status}: {data}")
        return data

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The status and the JSON body, whatever the status (a 503 is tried again twice)."""
        for attempt in range(3):
            async with self._session.request(
                method, self._base + path, json=body, headers=self._headers
            ) as response:
                data = await response.json(content_type=None)
                if response.status == 503 and attempt < 2:
                    await asyncio.sleep(0.5)
                    continue
                return response.status, data
        raise AssertionError("unreachable")

    async def metrics(self) -> str:
        async with self._session.get(self._base + "/metrics") as response:
            return await response.text()


async def bounded(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run `jobs` with at most `limit` at a time; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


async def make_world(
    api: Api,
    target: Target,
    *,
    auctions: int,
    bidders: int,
    watchers: int,
    zipf_s: float,
    scenario: str,
    seconds: float,
    window_ms: int,
    setup_s: float,
    seed: int,
    endings: EndingTerms | None = None,
) -> World:
    """A dealer, funded bidders with tokens, vehicles and scheduled auctions.

    steady: the auctions end long after the run, so no bid is in an
    anti-sniping window. storm: they end `window_ms` after they start, so the
    whole run is inside their last window and every bid that lands extends.
    With `endings`, those auctions instead carry its reserve and if-bid window
    and end at their time during the bidding (no anti-sniping: they end when
    planned), and a manager is made besides the dealer.
    """
    rng = random.Random(seed)
    run_tag = uuid.uuid4().hex[:8]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    dealer = uuid.uuid4()
    await api.call(
        "PUT",
        f"/internal/users/{dealer}",
        {"email": f"dealer-{run_tag}@bench.invalid", "role": "dealer", "kyc_status": "approved"},
    )
    manager = None
    if endings is not None:
        manager = uuid.uuid4()
        await api.call(
            "PUT",
            f"/internal/users/{manager}",
            {
                "email": f"manager-{run_tag}@bench.invalid",
                "role": "manager",
                "kyc_status": "approved",
            },
        )
    bidder_ids = [uuid.uuid4() for _ in range(bidders)]

    def user_job(i: int, user: uuid.UUID) -> Callable[[], Awaitable[Any]]:
        async def job() -> Any:
            await api.call(
                "PUT",
                f"/internal/users/{user}",
                {
                    "email": f"bidder-{i}-{run_tag}@bench.invalid",
                    "role": "user",
                    "kyc_status": "approved",
                    "display_name": f"Bench bidder {i}",
                },
            )
            return await api.call(
                "POST",
                f"/internal/users/{user}/wallet/credits",
                {"amount_kobo": FUNDS_KOBO, "reference": f"bench-{run_tag}-{i}"},
                ok=201,
            )

        return job

    await bounded([user_job(i, u) for i, u in enumerate(bidder_ids)], _HTTP_CONCURRENCY)
    timings["users_s"] = time.perf_counter() - started
    progress(f"{bidders:,} bidders upserted and funded in {timings['users_s']:.1f}s")

    def vehicle_job(i: int) -> Callable[[], Awaitable[Any]]:
        async def job() -> Any:
            body = await api.call(
                "POST",
                "/internal/vehicles",
                {
                    "vin": "".join(rng.choice(_VIN_CHARS) for _ in range(17)),
                    "year": 2015 + i % 9,
                    "make": ("Toyota", "Honda", "Lexus", "Hyundai", "Kia")[i % 5],
                    "model": ("Camry", "Accord", "RX 350", "Elantra", "Sorento")[i % 5],
                    "body_type": "sedan",
                    "listed_by": str(dealer),
                    "location": "Lagos",
                },
                ok=201,
            )
            return body["vehicle"]["id"]

        return job

    vehicles: list[str] = await bounded([vehicle_job(i) for i in range(auctions)], 8)
    start_ms = now_ms() + int(max(3.0, auctions * 0.01) * 1000)
    if scenario == "storm":
        end_ms = start_ms + window_ms
    else:
        end_ms = start_ms + int((setup_s + seconds + 600) * 1000)
    prices = [int(1_000_000 * 20 ** rng.random()) // 50_000 * 50_000 * NAIRA for _ in vehicles]
    planned_go_ms = start_ms + endings.go_after_start_ms if endings is not None else None
    ends_ms: dict[int, int] = {}
    if endings is not None and planned_go_ms is not None:
        ends_ms = {i: planned_go_ms + after for i, after in endings.after_go_ms.items()}

    def auction_job(index: int, vehicle: str, price: int) -> Callable[[], Awaitable[Any]]:
        async def job() -> Any:
            spec = {
                "vehicle_id": vehicle,
                "created_by": str(dealer),
                "status": "scheduled",
                "auction_type": "timed",
                "start_time_ms": start_ms,
                "end_time_ms": end_ms,
                "start_price_kobo": price,
                "bid_increment_kobo": increment_for(price),
                "anti_snipe_window_ms": window_ms,
                "anti_snipe_extension_ms": window_ms,
            }
            if endings is not None and index in ends_ms:
                spec.update(
                    end_time_ms=ends_ms[index],
                    auction_type="reserve",
                    reserve_price_kobo=endings.reserve_kobo,
                    anti_snipe_window_ms=0,
                    anti_snipe_extension_ms=0,
                    if_bid_window_ms=endings.if_bid_window_ms,
                    counter_window_ms=endings.if_bid_window_ms,
                )
            body = await api.call("POST", "/internal/auctions", spec, ok=201)
            return body["auction"]["id"]

        return job

    auction_ids: list[str] = await bounded(
        [auction_job(i, v, p) for i, (v, p) in enumerate(zip(vehicles, prices, strict=True))], 8
    )
    timings["auctions_s"] = time.perf_counter() - started - timings["users_s"]
    progress(
        f"{auctions:,} vehicles and auctions made in {timings['auctions_s']:.1f}s; "
        f"live in {(start_ms - now_ms()) / 1000:.1f}s, ending in "
        f"{(end_ms - now_ms()) / 1000:.0f}s"
    )
    tokens = [mint_token(user, "user", target.jwt_secret, ttl_s=6 * 3600) for user in bidder_ids]
    return World(
        auction_ids=auction_ids,
        bidder_ids=bidder_ids,
        tokens=tokens,
        bidder_auction=assignment(apportion(bidders, auctions, zipf_s, rng), rng),
        watcher_auction=assignment(apportion(watchers, auctions, zipf_s, rng), rng),
        start_ms=start_ms,
        end_ms=end_ms,
        seconds=timings,
        dealer_id=dealer,
        manager_id=manager,
        planned_go_ms=planned_go_ms,
        ends_ms=ends_ms,
    )


async def wait_live(api: Api, auction_ids: Sequence[str], timeout_s: float) -> None:
    """Until GET /api/auctions/{id} says `live` for every auction."""
    deadline = time.monotonic() + timeout_s
    waiting = list(auction_ids)
    while waiting:
        if time.monotonic() > deadline:
            raise BenchFailure(f"{len(waiting)} auctions were not live within {timeout_s:.0f}s")
        states = await bounded(
            [_status_job(api, auction) for auction in waiting], _HTTP_CONCURRENCY
        )
        waiting = [a for a, status in zip(waiting, states, strict=True) if status != "live"]
        if waiting:
            await asyncio.sleep(0.5)


def _status_job(api: Api, auction: str) -> Callable[[], Awaitable[str]]:
    async def job() -> str:
        body = await api.call("GET", f"/api/auctions/{auction}")
        return str(body["auction"]["status"])

    return job


# ---- after the run --------------------------------------------------------------------


@dataclass(slots=True)
class Acknowledged:
    """What the bidders were told, to hold the ledger to."""

    accepted: dict[str, tuple[int, int]]  # ledger id → (auction index, amount)
    rejected: set[str]  # client_bid_ids answered `rejected` (never placed)
    unknown: set[str]  # client_bid_ids with no answer, or an answer that does not say


async def check_ledger(
    api: Api, auction_ids: Sequence[str], acknowledged: Acknowledged
) -> dict[str, Any]:
    """Every acknowledged bid in the ledger exactly once, with its amount, and nothing
    else there but bids whose answer never arrived and bids placed for maximums;
    every auction's price and count agree with its bids."""
    histories = await bounded(
        [_history_job(api, auction) for auction in auction_ids], _HTTP_CONCURRENCY
    )
    rooms = await bounded([_room_job(api, auction) for auction in auction_ids], _HTTP_CONCURRENCY)
    seen: dict[str, int] = {}
    stray: list[str] = []
    wrong: list[str] = []
    late = 0
    platform = 0
    proxy = 0
    auctions_off = 0
    for index, (history, room) in enumerate(zip(histories, rooms, strict=True)):
        amounts = []
        for bid in history:
            amounts.append(bid["amount_kobo"])  # a reserve-protection bid sets the price too
            if bid["is_platform_bid"]:
                platform += 1
                continue
            if bid["is_proxy"]:  # placed for a maximum: no client sent it
                proxy += 1
                continue
            told = acknowledged.accepted.get(bid["id"])
            if told is not None:
                seen[bid["id"]] = seen.get(bid["id"], 0) + 1
                if told != (index, bid["amount_kobo"]):
                    wrong.append(bid["id"])
            elif bid["client_bid_id"] in acknowledged.unknown:
                late += 1
            else:
                stray.append(str(bid["client_bid_id"]))
        price = max(amounts, default=None)
        if room["current_price_kobo"] != price or room["bid_count"] != len(history):
            auctions_off += 1
    missing = [bid_id for bid_id in acknowledged.accepted if bid_id not in seen]
    twice = [bid_id for bid_id, n in seen.items() if n > 1]
    stray_rejected = sum(1 for cid in stray if cid in acknowledged.rejected)
    consistent = not (missing or twice or stray or wrong or auctions_off)
    return {
        "ledger_consistent": consistent,
        "acknowledged_accepted": len(acknowledged.accepted),
        "found_once": sum(1 for n in seen.values() if n == 1),
        "missing": len(missing),
        "more_than_once": len(twice),
        "wrong_amount_or_auction": len(wrong),
        "not_acknowledged": len(stray),
        "acknowledged_rejected_but_present": stray_rejected,
        "unanswered_but_present": late,
        "platform_bids": platform,
        "proxy_bids": proxy,
        "auctions_disagreeing_with_their_bids": auctions_off,
        "examples": {"missing": missing[:3], "not_acknowledged": stray[:3]},
    }


def _history_job(api: Api, auction: str) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    async def job() -> list[dict[str, Any]]:
        body = await api.call("GET", f"/internal/auctions/{auction}/bids")
        bids: list[dict[str, Any]] = body["bids"]
        return bids

    return job


def _room_job(api: Api, auction: str) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def job() -> dict[str, Any]:
        body = await api.call("GET", f"/api/auctions/{auction}")
        room: dict[str, Any] = body["auction"]
        return room

    return job


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN|[+-]Inf)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {name{labels}: value} (counters, gauges, histogram series)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is not None:
            samples[found.group(1) + (found.group(2) or "")] = float(found.group(3))
    return samples
