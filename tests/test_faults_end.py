"""Auctions that end while the server process is down end once, correctly, when it
comes back — and so do auctions whose end processing a SIGKILL interrupts.

A real `python -m engine serve` on the session's PostgreSQL, killed with SIGKILL.
"Once, correctly" means: sold to the top real bidder with exactly one deposit hold
(and the winner's balance lower by exactly that deposit), or unsold (reserve not
met, no bid) with none; the vehicle's status follows; the notifications outbox has
each notice once (winner: email, SMS, in-app; every other bidder: email, in-app);
a second restart changes nothing; every wallet still reconciles.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest_asyncio

import bidcore
from tests.fault_helpers import (
    EngineServer,
    Platform,
    end_processing_problems,
    engine_env,
    kobo,
    now_ms,
    running_engine,
    token_for,
    unreconciled_wallets,
    wait_until,
)

FUNDS = 10**12
PRICE = 100_000_000
STEP = 5_000_000
FINAL = ("pending_settlement", "unsold", "seller_decision")


@pytest_asyncio.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[EngineServer]:
    # These auctions end while the engine is down and must end, not move: the outage
    # rule (RULES.md, tested in test_membership.py and test_cluster.py) is set
    # beyond the few seconds the engine is away here.
    env = engine_env(database_url, OUTAGE_MIN_MS="600000")
    async with running_engine(env, tmp_path / "engine.log") as server:
        yield server


async def bid(
    http: aiohttp.ClientSession, base: str, user: uuid.UUID, auction: uuid.UUID, amount: int
) -> tuple[int, Any]:
    body = {"auction_id": str(auction), "amount_kobo": amount, "client_bid_id": uuid.uuid4().hex}
    headers = {"Authorization": f"Bearer {token_for(user)}"}
    async with http.post(f"{base}/api/bids", json=body, headers=headers) as reply:
        return reply.status, await reply.json()


async def place(
    http: aiohttp.ClientSession,
    base: str,
    auction: uuid.UUID,
    bids: list[tuple[uuid.UUID, int]],
) -> None:
    for user, amount in bids:
        status, answer = await bid(http, base, user, auction, amount)
        assert status == 201, answer


async def outcome(conn: asyncpg.Connection, auction: uuid.UUID) -> dict[str, Any]:
    """What the end processing left for one auction."""
    row = await conn.fetchrow(
        "SELECT a.status, a.winner_id, v.status AS vehicle FROM auctions a"
        " JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1",
        auction,
    )
    holds = await conn.fetch(
        "SELECT user_id, amount FROM transactions WHERE reference_id = $1"
        " AND type = 'bid_deposit_hold'",
        auction,
    )
    notices = await conn.fetch(
        "SELECT user_id, kind, channel FROM notifications WHERE payload->>'auction_id' = $1",
        str(auction),
    )
    return {
        "status": row["status"],
        "winner": row["winner_id"],
        "vehicle": row["vehicle"],
        "holds": [(h["user_id"], kobo(h["amount"])) for h in holds],
        "notices": sorted((n["user_id"], n["kind"], n["channel"]) for n in notices),
    }


def notices_for(winner: uuid.UUID | None, bidders: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    """RULES.md: the winner by email, SMS and in-app; every other bidder by email and in-app."""
    expected = []
    if winner is not None:
        expected += [(winner, "auction_won", c) for c in ("email", "sms", "in_app")]
    for user in set(bidders) - {winner}:
        expected += [(user, "auction_lost", c) for c in ("email", "in_app")]
    return sorted(expected)


async def balances(conn: asyncpg.Connection, users: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = await conn.fetch(
        "SELECT id, wallet_balance FROM users WHERE id = ANY($1::uuid[])", users
    )
    return {row["id"]: kobo(row["wallet_balance"]) for row in rows}


async def all_final(dsn: str, auctions: list[uuid.UUID]) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        done = await conn.fetchval(
            "SELECT count(*) FROM auctions WHERE id = ANY($1::uuid[]) AND status = ANY($2)",
            auctions,
            list(FINAL),
        )
        return bool(done == len(auctions))
    finally:
        await conn.close()


async def test_auctions_ending_while_the_engine_is_down_end_once_when_it_is_back(
    engine: EngineServer, database_url: str
) -> None:
    async with aiohttp.ClientSession() as http:
        platform = Platform(http, engine.base)
        seller = await platform.user("dealer")
        ada, bola, chidi = [await platform.user(balance_kobo=FUNDS) for _ in range(3)]
        end = now_ms() + 5_000
        terms: dict[str, Any] = {"start_ms": now_ms() - 1000, "end_ms": end}
        terms["anti_snipe_window_ms"] = 0
        sold = await platform.auction(seller, **terms)
        below = await platform.auction(
            seller, **terms, auction_type="reserve", reserve_price_kobo=500_000_000
        )
        met = await platform.auction(
            seller, **terms, auction_type="reserve", reserve_price_kobo=110_000_000
        )
        silent = await platform.auction(seller, **terms)
        # Closed by the engine just before a crash, its end processing not yet run.
        closed = await platform.auction(seller, start_ms=terms["start_ms"], end_ms=end + 3_600_000)
        opening = [sold, below, met, silent, closed]

        async def all_live() -> bool:  # the lifecycle tick may open them in different ticks
            return all([await live(http, engine.base, auction) for auction in opening])

        await wait_until(all_live, 5, "the auctions open")
        await place(
            http, engine.base, sold, [(ada, PRICE), (bola, PRICE + STEP), (ada, PRICE + 3 * STEP)]
        )
        await place(http, engine.base, below, [(bola, PRICE), (chidi, PRICE + STEP)])
        await place(
            http, engine.base, met, [(chidi, PRICE), (ada, PRICE + STEP), (bola, PRICE + 4 * STEP)]
        )
        await place(http, engine.base, closed, [(chidi, PRICE), (bola, PRICE + STEP)])

        await engine.kill()
        conn = await asyncpg.connect(database_url)
        try:
            # What a SIGKILL between the close's commit and the end processing leaves.
            await conn.execute(
                "UPDATE auctions SET status = 'ended', end_time = now(), ended_at = now(),"
                " last_seq = last_seq + 1 WHERE id = $1",
                closed,
            )
            before = await balances(conn, [ada, bola, chidi])
            await asyncio.sleep(max(0.0, (end - now_ms()) / 1000 + 1.0))  # it ends meanwhile
            statuses = await conn.fetchval(
                "SELECT array_agg(DISTINCT status) FROM auctions WHERE id = ANY($1::uuid[])",
                [sold, below, met, silent],
            )
            assert statuses == ["live"], "nothing ends while the engine is down"

            await engine.start()
            took = await wait_until(
                lambda: all_final(database_url, [sold, below, met, silent, closed]),
                10,
                "end processing",
            )
            late_bid = await bid(http, engine.base, chidi, sold, PRICE * 5)
            first = {a: await outcome(conn, a) for a in (sold, below, met, silent, closed)}

            await engine.kill()  # and once more: nothing may happen twice
            await engine.start()
            await asyncio.sleep(0.5)
            second = {a: await outcome(conn, a) for a in (sold, below, met, silent, closed)}
            after = await balances(conn, [ada, bola, chidi])
            wallets = await unreconciled_wallets(conn)
            problems = await end_processing_problems(conn)
        finally:
            await conn.close()

    deposit_sold = bidcore.deposit(PRICE + 3 * STEP, 2000)
    deposit_met = bidcore.deposit(PRICE + 4 * STEP, 2000)
    assert first[sold] == {
        "status": "pending_settlement",
        "winner": ada,
        "vehicle": "pending_settlement",
        "holds": [(ada, deposit_sold)],
        "notices": notices_for(ada, [ada, bola]),
    }
    assert first[met]["status"] == "pending_settlement" and first[met]["winner"] == bola
    assert first[met]["holds"] == [(bola, deposit_met)]
    assert first[met]["notices"] == notices_for(bola, [chidi, ada, bola])
    # Below the reserve: the seller decides on chidi's top bid (RULES.md, if-bid).
    assert first[below] == {
        "status": "seller_decision",
        "winner": None,
        "vehicle": "in_auction",
        "holds": [],
        "notices": sorted(
            [(bola, "auction_lost", c) for c in ("email", "in_app")]
            + [(chidi, "if_bid_pending", c) for c in ("email", "in_app")]
            + [(seller, "if_bid_received", c) for c in ("email", "sms", "in_app")]
        ),
    }
    assert first[silent] == {
        "status": "unsold",
        "winner": None,
        "vehicle": "available",
        "holds": [],
        "notices": notices_for(None, []),
    }
    deposit_closed = bidcore.deposit(PRICE + STEP, 2000)
    assert first[closed]["status"] == "pending_settlement" and first[closed]["winner"] == bola
    assert first[closed]["holds"] == [(bola, deposit_closed)]
    assert first[closed]["notices"] == notices_for(bola, [chidi, bola])
    assert second == first, "a restart after the end processing changed it"
    assert after == {
        ada: before[ada] - deposit_sold,
        bola: before[bola] - deposit_met - deposit_closed,
        chidi: before[chidi],
    }
    assert late_bid[0] == 409 and late_bid[1]["error"]["code"] in (
        "auction_ended",
        "unknown_auction",
    )
    assert wallets == [] and problems == []
    print(
        f"\nfour auctions ended while the engine was down, one was closed without its end"
        f" processing: all end-processed {took:.2f}s after /readyz, once"
    )


async def live(http: aiohttp.ClientSession, base: str, auction: uuid.UUID) -> bool:
    async with http.get(f"{base}/api/auctions/{auction}") as reply:
        return bool((await reply.json())["auction"]["status"] == "live")


async def closed_unprocessed(dsn: str, auctions: list[uuid.UUID]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM auctions WHERE id = ANY($1::uuid[]) AND status = 'ended'",
            auctions,
        )
        return count
    finally:
        await conn.close()


async def test_sigkills_around_a_burst_of_endings_leave_each_ended_once(
    engine: EngineServer, database_url: str
) -> None:
    rng = random.Random(11)
    async with aiohttp.ClientSession() as http:
        platform = Platform(http, engine.base)
        seller = await platform.user("dealer")
        bidders = [await platform.user(balance_kobo=FUNDS) for _ in range(3)]
        first_end = now_ms() + 4_000
        auctions = [
            await platform.auction(
                seller,
                start_ms=now_ms() - 1000,
                end_ms=first_end + 250 * i,
                anti_snipe_window_ms=0,
            )
            for i in range(8)
        ]
        await wait_until(lambda: live(http, engine.base, auctions[-1]), 5, "the auctions open")
        expected: dict[uuid.UUID, tuple[uuid.UUID, list[uuid.UUID]]] = {}
        for auction in auctions:
            one, two = rng.sample(bidders, 2)
            await place(http, engine.base, auction, [(one, PRICE), (two, PRICE + STEP)])
            expected[auction] = (two, [one, two])
        await asyncio.sleep(max(0.0, (first_end - now_ms()) / 1000 - 0.3))
        kills = caught = 0
        while not await all_final(database_url, auctions) and kills < 6:
            await asyncio.sleep(rng.uniform(0.05, 0.4))  # inside the burst of endings
            await engine.kill()
            kills += 1
            caught += await closed_unprocessed(database_url, auctions)
            await engine.start()
        await wait_until(lambda: all_final(database_url, auctions), 10, "end processing")

    conn = await asyncpg.connect(database_url)
    try:
        results = {a: await outcome(conn, a) for a in auctions}
        problems = await end_processing_problems(conn)
        wallets = await unreconciled_wallets(conn)
    finally:
        await conn.close()
    for auction, (winner, both) in expected.items():
        result = results[auction]
        assert (result["status"], result["winner"]) == ("pending_settlement", winner)
        assert result["holds"] == [(winner, bidcore.deposit(PRICE + STEP, 2000))]
        assert result["notices"] == notices_for(winner, both)
    assert problems == [] and wallets == []
    print(
        f"\n{len(auctions)} auctions ending 250 ms apart, {kills} SIGKILLs among them"
        f" ({caught} found closed but not end-processed at a kill): each ended once"
    )
