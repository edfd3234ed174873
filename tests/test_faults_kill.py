"""SIGKILL the server process at random moments of a bidding storm, again and again.

A real `python -m engine serve` on the session's PostgreSQL. Three hot auctions near
their end (every bid inside the anti-sniping window moves the end), three more that
end during the run (one below its reserve: its seller decides), 24 WebSocket bidders
and 6 REST bidders, wallets credited and debited through the internal API meanwhile,
and guest watchers.
Two of each hot auction's WebSocket bidders leave and raise maximums as well, so
the engine's proxy bids answer the others inside the storm.
The process is killed at a random moment of each cycle, the ledger is checked while
it is down, then it is started again and checked once more:

- every acknowledged bid (`bid_result` accepted, 201) is in the ledger exactly once,
  as acknowledged; so is every acknowledged maximum, credit and withdrawal; no
  proxy bid is above its owner's maximum;
- the server refuses to start unless its rebuilt core equals the ledger: `/readyz`
  turns 200, and the served snapshots then equal the ledger's bids;
- every wallet balance equals the sum of its transactions (WALLET_RECONCILIATION);
- every auction row equals its bids, and every ended auction was end-processed once;
- watchers reconnect to a snapshot at or after what they had seen, and `resume` from
  their last seq answers with the missed events or a snapshot; bidders reconnect and
  send an unanswered bid again with the same client_bid_id (one bid at most), and an
  acknowledged one again to get the same bid back.

`-s` prints the figures.
"""

from __future__ import annotations

import asyncio
import collections
import random
import statistics
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from tests.fault_helpers import (
    EngineServer,
    Platform,
    Record,
    RestBidder,
    Resumed,
    Watcher,
    WsBidder,
    engine_env,
    ledger_problems,
    now_ms,
    running_engine,
    snapshot_problems,
    stop_tasks,
    wait_until,
    wallet_problems,
    wallet_traffic,
)

pytestmark = pytest.mark.slow  # long-running; still in the default run

CYCLES = 10
HOT = 3
WS_BIDDERS_PER_HOT = 8
REST_BIDDERS_PER_HOT = 2
WATCHERS_PER_HOT = 2
RICH = 10**12
TIGHT = 300_000_000  # ₦3,000,000: buying power refuses some of this bidder's bids


async def ended(dsn: str, auctions: list[uuid.UUID]) -> bool:
    """Every one of `auctions` has ended and been end-processed."""
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM auctions WHERE id = ANY($1::uuid[])"
            " AND status IN ('pending_settlement', 'unsold', 'seller_decision')",
            auctions,
        )
        return count == len(auctions)
    finally:
        await conn.close()


async def proxy_bids(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM bids WHERE is_proxy")
        return count
    finally:
        await conn.close()


@dataclass
class World:
    hot: list[uuid.UUID]
    closing: list[uuid.UUID]
    bidders: list[uuid.UUID]


async def make_world(platform: Platform) -> World:
    seller = await platform.user("dealer")
    start = now_ms() - 1000
    hot = [
        await platform.auction(
            seller,
            start_ms=start,
            end_ms=start + 26_000,
            anti_snipe_window_ms=30_000,
            anti_snipe_extension_ms=2_000,
        )
        for _ in range(HOT)
    ]
    closing = [
        await platform.auction(
            seller,
            start_ms=start,
            end_ms=start + 1000 + 8_000 * (i + 1),
            anti_snipe_window_ms=0,
            **({"auction_type": "reserve", "reserve_price_kobo": 10**11} if i == 1 else {}),
        )
        for i in range(3)
    ]
    count = HOT * (WS_BIDDERS_PER_HOT + REST_BIDDERS_PER_HOT)
    bidders = [
        await platform.user(balance_kobo=TIGHT if i % 5 == 4 else RICH) for i in range(count)
    ]
    return World(hot, closing, bidders)


@pytest_asyncio.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[EngineServer]:
    async with running_engine(engine_env(database_url), tmp_path / "engine.log") as server:
        yield server


@dataclass
class Storm:
    """The storm's clients around one server process, and what each cycle measured."""

    engine: EngineServer
    dsn: str
    world: World
    http: aiohttp.ClientSession
    record: Record = field(default_factory=Record)
    watchers: list[Watcher] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)
    acks_per_cycle: list[int] = field(default_factory=list)

    def start(self, platform: Platform) -> None:
        engine, world, record = self.engine, self.world, self.record
        users = iter(world.bidders)
        clients = []
        for index, auction in enumerate(world.hot):
            for n in range(WATCHERS_PER_HOT):
                # One comes back at once, one later (missing what happened meanwhile).
                self.watchers.append(Watcher(self.http, engine.room_url(auction), late_s=0.6 * n))
            for n in range(WS_BIDDERS_PER_HOT):
                # Two of each hot auction's bidders bid on an auction that ends instead.
                room = engine.room_url(world.closing[index] if n < 2 else auction)
                # Two more leave maximums too, which answer the others' bids.
                bidder = WsBidder(self.http, room, next(users), record, seed=n, maxes=n in (2, 3))
                clients.append(bidder.run())
            for n in range(REST_BIDDERS_PER_HOT):
                user = next(users)
                clients.append(
                    RestBidder(self.http, engine.base, auction, user, record, 100 + n).run()
                )
        clients += [watcher.run() for watcher in self.watchers]
        clients.append(wallet_traffic(platform, world.bidders, record))
        self.tasks = [asyncio.create_task(client) for client in clients]

    async def cycle(self, number: int, storm_s: float) -> None:
        """The storm runs, SIGKILL, the ledger is checked, restart, checked again."""
        before = len(self.record.acks)
        await asyncio.sleep(storm_s)
        await self.engine.kill()
        self.acks_per_cycle.append(len(self.record.acks) - before)
        problems, _ = await ledger_problems(
            self.dsn, self.record.acks, server_down=True, maxes=self.record.max_acks
        )
        problems += await wallet_problems(self.dsn, self.record)
        assert problems == [], f"cycle {number}, server down: {problems[:10]}"

        self.ready_s.append(await self.engine.start())  # refuses unless core == ledger
        auctions = self.world.hot + self.world.closing
        problems = await snapshot_problems(self.http, self.engine.base, self.dsn, auctions)
        assert problems == [], f"cycle {number}, restarted: {problems[:10]}"
        async with asyncio.timeout(10):
            for watcher in self.watchers:
                await watcher.connected.wait()

    async def stop(self) -> None:
        assert await stop_tasks(self.tasks) == []

    def violations(self) -> list[str]:
        return self.record.violations + [v for w in self.watchers for v in w.violations]

    def resumes(self) -> list[Resumed]:
        return [resumed for watcher in self.watchers for resumed in watcher.resumes]


async def test_sigkill_during_a_storm_loses_nothing_acknowledged_and_clients_resume(
    engine: EngineServer, database_url: str
) -> None:
    rng = random.Random(2026)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        platform = Platform(http, engine.base)
        storm = Storm(engine, database_url, await make_world(platform), http)
        storm.start(platform)
        try:
            async with asyncio.timeout(240):
                for number in range(CYCLES):
                    await storm.cycle(number, storm_s=rng.uniform(0.8, 2.5))
            closing = storm.world.closing
            await wait_until(lambda: ended(database_url, closing), 40, "the ending auctions end")
        finally:
            await storm.stop()

    problems, wallets = await ledger_problems(
        database_url, storm.record.acks, maxes=storm.record.max_acks
    )
    problems += await wallet_problems(database_url, storm.record)
    assert problems == [], problems[:10]
    assert storm.violations() == [], storm.violations()[:10]
    print(await report(storm, database_url, wallets))
    assert min(storm.acks_per_cycle) > 0, "a cycle acknowledged nothing: the storm did not run"
    assert storm.record.outcomes["max accepted"] > 0, "no maximum was acknowledged"
    assert await proxy_bids(database_url) > 0, "no maximum answered a bid"
    assert len(storm.resumes()) == CYCLES * len(storm.watchers)
    assert sum(watcher.gaps for watcher in storm.watchers) == 0


async def report(storm: Storm, dsn: str, wallets: int) -> str:
    record, acks = storm.record, storm.record.acks
    conn = await asyncpg.connect(dsn)
    try:
        statuses = dict(
            await conn.fetch(
                "SELECT status, count(*) FROM auctions WHERE id = ANY($1::uuid[]) GROUP BY status",
                storm.world.closing,
            )
        )
        below_bid = await conn.fetchval(  # the one below its reserve: the seller decides on it
            "SELECT EXISTS (SELECT 1 FROM bids WHERE auction_id = $1 AND NOT is_platform_bid)",
            storm.world.closing[1],
        )
        ledger_bids = await conn.fetchval("SELECT count(*) FROM bids")
        ledger_maxes = await conn.fetchval("SELECT count(*) FROM max_bids")
        holds = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE type = 'bid_deposit_hold'"
        )
    finally:
        await conn.close()
    assert statuses == {"pending_settlement": 2, "seller_decision" if below_bid else "unsold": 1}
    replies = collections.Counter(resumed.reply for resumed in storm.resumes())
    return (
        f"\n{CYCLES} SIGKILLs; acknowledged per cycle before the kill: {storm.acks_per_cycle}"
        f"\nacknowledged bids {len({a.bid_id for a in acks})}"
        f" (ws {sum(a.via == 'ws' for a in acks)}, rest {sum(a.via == 'rest' for a in acks)}),"
        f" ledger rows {ledger_bids}, outcomes {dict(record.outcomes)}"
        f"\nacknowledged maximums {len(set(record.max_acks))}, ledger maximums {ledger_maxes},"
        f" proxy bids {await proxy_bids(dsn)}"
        f"\nunanswered at a kill {record.unknown}; sent again after the restart:"
        f" {dict(record.retried)}; acknowledged bids sent again {record.repeats} (same bid back)"
        f"\ncredits acknowledged {len(record.credits)}, withdrawals {len(record.withdrawals)};"
        f" wallets reconciled {wallets}; deposit holds {holds}; ending auctions {statuses}"
        f"\nrestart to /readyz 200: median {statistics.median(storm.ready_s):.2f}s,"
        f" max {max(storm.ready_s):.2f}s"
        f"\nwatcher reconnections {len(storm.resumes())}: resume replies {dict(replies)};"
        f" in-session seq gaps {sum(w.gaps for w in storm.watchers)}"
    )
