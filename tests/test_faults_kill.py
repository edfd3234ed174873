"""SIGKILL the server process at random moments of a bidding storm, again and again.

A real `python -m engine serve` on the session's PostgreSQL. Three hot auctions near
their end (every bid inside the anti-sniping window moves the end), three more that
end during the run (one below its reserve), 24 WebSocket bidders and 6 REST bidders,
wallets credited and debited through the internal API meanwhile, and guest watchers.
The process is killed at a random moment of each cycle, the ledger is checked while
it is down, then it is started again and checked once more:

- every acknowledged bid (`bid_result` accepted, 201) is in the ledger exactly once,
  as acknowledged; so is every acknowledged credit and withdrawal;
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
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest_asyncio

from tests.fault_helpers import (
    EngineServer,
    Platform,
    Record,
    RestBidder,
    Watcher,
    WsBidder,
    engine_env,
    ledger_problems,
    now_ms,
    snapshot_problems,
    stop_tasks,
    wait_until,
    wallet_problems,
    wallet_traffic,
)

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
            " AND status IN ('pending_settlement', 'unsold')",
            auctions,
        )
        return count == len(auctions)
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
    server = EngineServer(engine_env(database_url), tmp_path / "engine.log")
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


async def test_sigkill_during_a_storm_loses_nothing_acknowledged_and_clients_resume(
    engine: EngineServer, database_url: str
) -> None:
    rng = random.Random(2026)
    record = Record()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        platform = Platform(http, engine.base)
        world = await make_world(platform)
        watchers: list[Watcher] = []
        tasks: list[asyncio.Task[None]] = []
        users = iter(world.bidders)
        for index, auction in enumerate(world.hot):
            for n in range(WATCHERS_PER_HOT):
                # One comes back at once, one later (missing what happened meanwhile).
                watcher = Watcher(http, engine.room_url(auction), late_s=0.6 * n)
                watchers.append(watcher)
                tasks.append(asyncio.create_task(watcher.run()))
            for n in range(WS_BIDDERS_PER_HOT):
                # Two of each hot auction's bidders also bid on an auction that ends.
                room = world.closing[index] if n < 2 else auction
                bidder = WsBidder(http, engine.room_url(room), next(users), record, seed=n)
                tasks.append(asyncio.create_task(bidder.run()))
            for n in range(REST_BIDDERS_PER_HOT):
                rest = RestBidder(http, engine.base, auction, next(users), record, seed=100 + n)
                tasks.append(asyncio.create_task(rest.run()))
        tasks.append(asyncio.create_task(wallet_traffic(platform, world.bidders, record)))

        ready_s: list[float] = []
        acks_per_cycle: list[int] = []
        wallets = 0

        async def storm_cycles() -> None:
            nonlocal wallets
            for cycle in range(CYCLES):
                before = len(record.acks)
                await asyncio.sleep(rng.uniform(0.8, 2.5))  # the storm runs
                await engine.kill()
                acks_per_cycle.append(len(record.acks) - before)

                problems, wallets = await ledger_problems(database_url, record.acks)
                problems += await wallet_problems(database_url, record)
                assert problems == [], f"cycle {cycle}, server down: {problems[:10]}"

                ready_s.append(await engine.start())  # refuses unless core == ledger
                problems = await snapshot_problems(
                    http, engine.base, database_url, world.hot + world.closing
                )
                assert problems == [], f"cycle {cycle}, restarted: {problems[:10]}"
                async with asyncio.timeout(10):
                    for watcher in watchers:
                        await watcher.connected.wait()

        try:
            async with asyncio.timeout(240):
                await storm_cycles()
            # The auctions that end during the run have all ended (end processing too).
            await wait_until(
                lambda: ended(database_url, world.closing), 40, "the ending auctions end"
            )
        finally:
            assert await stop_tasks(tasks) == 0, "client tasks would not stop"

    problems, wallets = await ledger_problems(database_url, record.acks)
    problems += await wallet_problems(database_url, record)
    assert problems == [], problems[:10]
    violations = record.violations + [v for watcher in watchers for v in watcher.violations]
    assert violations == [], violations[:10]
    resumes = [resumed for watcher in watchers for resumed in watcher.resumes]
    replies = collections.Counter(resumed.reply for resumed in resumes)
    conn = await asyncpg.connect(database_url)
    try:
        statuses = dict(
            await conn.fetch(
                "SELECT status, count(*) FROM auctions WHERE id = ANY($1::uuid[]) GROUP BY status",
                world.closing,
            )
        )
        ledger_bids = await conn.fetchval("SELECT count(*) FROM bids")
        holds = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE type = 'bid_deposit_hold'"
        )
    finally:
        await conn.close()
    print(
        f"\n{CYCLES} SIGKILLs; acknowledged per cycle before the kill: {acks_per_cycle}"
        f"\nacknowledged bids {len({a.bid_id for a in record.acks})}"
        f" (ws {sum(a.via == 'ws' for a in record.acks)},"
        f" rest {sum(a.via == 'rest' for a in record.acks)}), ledger rows {ledger_bids},"
        f" outcomes {dict(record.outcomes)}"
        f"\nunanswered at a kill {record.unknown}; sent again after restart: "
        f"{dict(record.retried)}; acknowledged bids sent again {record.repeats} (same bid back)"
        f"\ncredits acknowledged {len(record.credits)}, withdrawals {len(record.withdrawals)};"
        f" wallets reconciled {wallets}; deposit holds {holds}; ending auctions {statuses}"
        f"\nrestart to /readyz 200: median {statistics.median(ready_s):.2f}s,"
        f" max {max(ready_s):.2f}s"
        f"\nwatcher reconnections {len(resumes)}: resume replies {dict(replies)};"
        f" in-session seq gaps {sum(w.gaps for w in watchers)}"
    )
    assert min(acks_per_cycle) > 0, "a cycle acknowledged nothing: the storm did not run"
    assert len(resumes) >= CYCLES * len(watchers) * 0.9
    assert statuses == {"pending_settlement": 2, "unsold": 1}
