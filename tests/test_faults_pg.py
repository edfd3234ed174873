"""PostgreSQL stopped for 30 s under load, then started: the server acknowledges
nothing it cannot make durable, says so, and loses nothing it acknowledged.

The test runs a PostgreSQL of its own (never the session's shared one) and a real
`python -m engine serve` on it, with WebSocket and REST bidders, guest watchers and
the platform's wallet calls. Then `pg_ctl stop -m fast`, 30 s, `pg_ctl start`:

- no bid is acknowledged while PostgreSQL is down; once the ledger writer gives up
  on its batch (its 3-s bound) every bid answer is `unavailable` (a WebSocket
  `bid_result`, a REST 503), and REST bids, which need the ledger to authenticate,
  are refused with 503 `unavailable` from the start;
- `/readyz` turns 503; the room's snapshot and a new room socket are refused (503);
- nothing acknowledged before is lost; every acknowledged credit and withdrawal is
  in the ledger, every wallet reconciles; watchers' sockets stay open;
- no request gets a 500 and nothing is logged at ERROR but the outage itself;
- once PostgreSQL is back the same process serves again, without a restart:
  `/readyz` 200, bids acknowledged, watchers receive them.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.fault_helpers import (
    EngineServer,
    OwnPostgres,
    Platform,
    Record,
    RestBidder,
    Watcher,
    WsBidder,
    engine_env,
    http_status,
    ledger_problems,
    now_ms,
    own_postgres,
    running_engine,
    stop_tasks,
    wallet_problems,
    wallet_traffic,
)

pytestmark = pytest.mark.slow  # long-running; still in the default run

OUTAGE_S = 30.0
AUCTIONS = 2
WS_BIDDERS = 3  # per auction, and one REST bidder
FUNDS = 10**12
RECOVERY_WAIT_S = 10.0  # how long the run watches for the server to come back


@dataclass
class Readiness:
    """`/readyz` every 100 ms: (time.monotonic(), status or None)."""

    samples: list[tuple[float, int | None]] = field(default_factory=list)

    async def watch(self, http: aiohttp.ClientSession, base: str) -> None:
        while True:
            self.samples.append((time.monotonic(), await http_status(http, f"{base}/readyz")))
            await asyncio.sleep(0.1)

    def first(self, status: int, after: float) -> float | None:
        return next((t for t, s in self.samples if t >= after and s == status), None)


@dataclass
class Outage:
    """What one outage looked like from outside (times: time.monotonic())."""

    record: Record
    readiness: Readiness
    watchers: list[Watcher]
    auctions: list[uuid.UUID]
    pid: int
    stopping: float = 0.0  # pg_ctl stop called
    stopped: float = 0.0  # … and returned
    starting: float = 0.0  # pg_ctl start called
    started: float = 0.0  # … and returned
    acks_before: int = 0
    room_page: int | None = None  # GET /api/auctions/{id} while down
    room_socket: int | None = None  # a new room socket while down
    events_at_start: list[int] = field(default_factory=list)

    def answers_while_down(self) -> list[tuple[float, str, str]]:
        return [a for a in self.record.timeline if self.stopped <= a[0] < self.starting]

    def first_refusal(self) -> float | None:
        """The writer gives up its batch (the core stops deciding) after its bound:
        the first `unavailable` on a socket."""
        return min(
            (t for t, via, o in self.answers_while_down() if via == "ws" and o == "unavailable"),
            default=None,
        )

    def back(self) -> float | None:
        """Seconds from PostgreSQL up to `/readyz` 200 (None: not within the run)."""
        ready = self.readiness.first(200, self.started)
        return None if ready is None else ready - self.started

    def summary(self) -> str:
        during = self.answers_while_down()
        refused = self.first_refusal()
        went_503 = self.readiness.first(503, self.stopping)
        acks = self.record.acks
        early = collections.Counter((v, o) for t, v, o in during if t < (refused or 0))
        back = self.back()
        return (
            f"PostgreSQL down {self.starting - self.stopped:.1f}s;"
            f" acknowledged before {self.acks_before},"
            f" while down {sum(self.stopped <= a.at < self.starting for a in acks)},"
            f" after {sum(a.at >= self.started for a in acks)}"
            f"\nanswers while down {dict(collections.Counter((v, o) for _, v, o in during))};"
            f" before the first `unavailable` on a socket {dict(early)}"
            f"\nfirst `unavailable` on a socket"
            f" {'-' if refused is None else f'{refused - self.stopped:.2f}s'} after the stop;"
            f" slowest answer {self.record.slowest_answer_s:.2f}s;"
            f" /readyz 503 {'-' if went_503 is None else f'{went_503 - self.stopping:.2f}s'}"
            f" after the stop began, 200 again"
            f" {'never (in the run)' if back is None else f'{back:.2f}s'} after PostgreSQL was up"
            f"\nwhile down: room snapshot {self.room_page}, new room socket {self.room_socket},"
            f" REST snapshots {dict(self.record.snapshot_refusals)}, 500s"
            f" {len(self.record.server_errors)}, wallet calls {dict(self.record.wallet_statuses)}"
            f"\nwatchers: events when PostgreSQL was back {self.events_at_start}, at the end"
            f" {[w.events for w in self.watchers]}, sockets {[w.sessions for w in self.watchers]}"
        )


async def run_outage(
    postgres: OwnPostgres, engine: EngineServer, http: aiohttp.ClientSession
) -> Outage:
    """Load, stop PostgreSQL for OUTAGE_S, start it, watch RECOVERY_WAIT_S more."""
    platform = Platform(http, engine.base)
    seller = await platform.user("dealer")
    auctions = [
        await platform.auction(seller, start_ms=now_ms() - 1000, end_ms=now_ms() + 3_600_000)
        for _ in range(AUCTIONS)
    ]
    users = [await platform.user(balance_kobo=FUNDS) for _ in range(AUCTIONS * (WS_BIDDERS + 1))]
    outage = Outage(Record(), Readiness(), [], auctions, engine.pid)
    record = outage.record
    clients = []
    for index, auction in enumerate(auctions):
        watcher = Watcher(http, engine.room_url(auction))
        outage.watchers.append(watcher)
        mine = users[index * (WS_BIDDERS + 1) : (index + 1) * (WS_BIDDERS + 1)]
        clients += [watcher.run(), RestBidder(http, engine.base, auction, mine[0], record, 9).run()]
        clients += [
            WsBidder(http, engine.room_url(auction), user, record, seed=n).run()
            for n, user in enumerate(mine[1:])
        ]
    clients += [wallet_traffic(platform, users, record), outage.readiness.watch(http, engine.base)]
    tasks = [asyncio.create_task(client) for client in clients]
    try:
        await asyncio.sleep(3)
        outage.acks_before = len(record.acks)
        outage.stopping = time.monotonic()
        await postgres.stop()
        outage.stopped = time.monotonic()
        await asyncio.sleep(OUTAGE_S / 2)
        outage.room_page = await http_status(http, f"{engine.base}/api/auctions/{auctions[0]}")
        outage.room_socket = await socket_refusal(http, engine.room_url(auctions[0]))
        await asyncio.sleep(max(0.0, outage.stopped + OUTAGE_S - time.monotonic()))
        outage.starting = time.monotonic()
        await postgres.start()
        outage.started = time.monotonic()
        outage.events_at_start = [watcher.events for watcher in outage.watchers]
        await asyncio.sleep(RECOVERY_WAIT_S)
    finally:
        assert await stop_tasks(tasks) == []
    return outage


async def socket_refusal(http: aiohttp.ClientSession, url: str) -> int | None:
    """The status a new room socket is refused with (None if it was accepted)."""
    try:
        ws = await http.ws_connect(url)
    except aiohttp.WSServerHandshakeError as err:
        return err.status
    await ws.close()
    return None


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[OwnPostgres, str, EngineServer]]:
    async with (
        own_postgres() as (postgres, dsn),
        running_engine(engine_env(dsn), tmp_path / "engine.log") as engine,
    ):
        yield postgres, dsn, engine


async def test_postgresql_down_30s_acknowledges_nothing_refuses_clearly_loses_nothing(
    stack: tuple[OwnPostgres, str, EngineServer],
) -> None:
    postgres, dsn, engine = stack
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        outage = await run_outage(postgres, engine, http)
    problems, wallets = await ledger_problems(dsn, outage.record.acks)
    problems += await wallet_problems(dsn, outage.record)
    print(f"\n{outage.summary()}\nwallets reconciled {wallets}")

    during = outage.answers_while_down()
    assert [a for a in outage.record.acks if outage.stopped <= a.at < outage.starting] == []
    refused = outage.first_refusal()
    assert refused is not None and refused - outage.stopped < 5, "no `unavailable` in time"
    later = {o for t, via, o in during if t >= refused or via == "rest"}
    assert later == {"unavailable"}, later
    assert "accepted" not in {o for _, _, o in during}
    went_503 = outage.readiness.first(503, outage.stopping)
    assert went_503 is not None and went_503 < outage.starting, "/readyz never said 503"
    assert (outage.room_page, outage.room_socket) == (503, 503)
    assert set(outage.record.wallet_statuses) <= {200, 201, 409, 503}
    assert outage.record.server_errors == [], outage.record.server_errors[:5]
    assert outage.record.violations == [], outage.record.violations[:5]
    assert problems == [], problems[:10]
    assert [watcher.sessions for watcher in outage.watchers] == [1] * AUCTIONS
    # Served again by the same process: ready, bids acknowledged, watchers fed.
    assert engine.pid == outage.pid
    back = outage.back()
    assert back is not None and back < RECOVERY_WAIT_S, "/readyz never 200 again"
    assert any(a.at >= outage.started for a in outage.record.acks), "no bid acknowledged after"
    assert all(
        end > start
        for end, start in zip(
            [w.events for w in outage.watchers], outage.events_at_start, strict=True
        )
    ), "a watcher got nothing once PostgreSQL was back"
    assert unexpected_errors(engine.log_path) == []


#: What the engine logs at ERROR for the outage itself (once each).
_OUTAGE_ERRORS = (
    "ERROR engine.ledger: ledger unreachable for ",
    "ERROR engine.sequencer: ledger unavailable: bids are refused",
    # no renewal came back: the node stops deciding before its leases could move
    "ERROR engine.membership: leases on partitions ",
)


def unexpected_errors(log_path: Path) -> list[str]:
    """Lines logged at ERROR or CRITICAL that are not the outage's own report (a dead
    writer, a 500, a failed rebuild would show here)."""
    lines = log_path.read_text(errors="replace").splitlines()
    return [
        line
        for line in lines
        if re.match(r"^\S+ \S+ (ERROR|CRITICAL) ", line)
        and not any(expected in line for expected in _OUTAGE_ERRORS)
    ]
