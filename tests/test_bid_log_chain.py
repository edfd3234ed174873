"""The bid log's chain in the ledger: every bid stored with the hash the core gave
it, on both of the writer's paths; recovery recomputing each loaded auction's
chain and suspending one that a hand edit broke, naming the bid."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from engine import bidlog
from engine.clock import ManualClock
from engine.migrations import MIGRATIONS_DIR, load_migrations, migrate
from engine.recovery import recover
from engine.roles import PLATFORM_USER_ID
from engine.sequencer import Sequencer
from engine.tokens import mint_token
from jobs.lifecycle import Lifecycle
from tests.factories import create_auction, create_user
from tests.test_ledger import HOUR_MS, PRICE, STEP, make_world, now_ms, running
from tests.ws_helpers import SECRET, serving
from web.keys import SEQUENCER

BIDS = """
SELECT id, auction_id, user_id, amount, is_platform_bid, client_bid_id, seq, extended,
       end_time_after, created_at, is_proxy, hash
FROM bids WHERE auction_id = $1 ORDER BY seq
"""


async def hashes(pool: Any, auction_id: uuid.UUID) -> list[bytes]:
    return [row["hash"] for row in await pool.fetch(BIDS, auction_id)]


async def test_bids_alone_and_with_state_changes_are_stored_with_the_cores_hashes(
    pool: Any,
) -> None:
    world = await make_world(pool, bidders=3)
    scheduled = await create_auction(
        pool,
        seller=world.seller,
        start_ms=now_ms() + HOUR_MS,
        end_ms=now_ms() + 2 * HOUR_MS,
        status="scheduled",
    )
    live = world.auctions[0]
    async with running(pool) as engine:
        a, b, c = world.bidders
        for i, bidder in enumerate([a, b, a, c]):  # bids alone: ledger_write_bids
            assert (await engine.place_bid(live, bidder, PRICE + i * STEP, f"k{i}")).accepted
        # A maximum answered by a proxy: rows a maximum placed.
        assert (await engine.set_max(live, b, PRICE + 10 * STEP, "m1")).accepted
        assert (await engine.place_bid(live, a, PRICE + 6 * STEP, "k9")).accepted
        # Pre-bids resolved at the opening: rows written with a state change (COPY).
        assert (await engine.set_max(scheduled, a, PRICE + 3 * STEP, "p1")).accepted
        assert (await engine.set_max(scheduled, b, PRICE + 5 * STEP, "p2")).accepted
        await engine.open_auction(scheduled)
        heads = {auction: engine.held(auction).log_head for auction in (live, scheduled)}
    for auction in (live, scheduled):
        rows = await hashes(pool, auction)
        assert len(rows) >= 2 and None not in rows
        assert rows[-1] == heads[auction]
    recovered = await recover(pool)
    assert recovered.broken == {}


async def test_recovery_goes_on_from_the_stored_head(pool: Any) -> None:
    world = await make_world(pool)
    auction, (a, b, *_) = world.auctions[0], world.bidders
    async with running(pool) as engine:
        assert (await engine.place_bid(auction, a, PRICE, "1")).accepted
    async with running(pool) as engine:
        assert engine.held(auction).log_head == (await hashes(pool, auction))[-1]
        outcome = await engine.place_bid(auction, b, PRICE + STEP, "2")
        assert outcome.accepted
    first, second = await hashes(pool, auction)
    entry = bidlog.Entry(outcome.bid.seq, 2, PRICE + STEP, outcome.bid.at_ms, False, False)
    assert second == bidlog.bid_hash(auction, entry, first)


async def bid_thrice(pool: Any) -> tuple[Any, uuid.UUID, uuid.UUID]:
    """Two live auctions; three bids on the first, one on the second."""
    world = await make_world(pool, auctions=2)
    auction, other = world.auctions
    a, b = world.bidders[:2]
    async with running(pool) as engine:
        for i, bidder in enumerate([a, b, a]):
            assert (await engine.place_bid(auction, bidder, PRICE + i * STEP, f"{i}")).accepted
        assert (await engine.place_bid(other, b, PRICE, "x")).accepted
    return world, auction, other


async def seq_of(pool: Any, auction_id: uuid.UUID, index: int) -> int:
    rows = await pool.fetch(BIDS, auction_id)
    seq: int = rows[index]["seq"]
    return seq


async def test_an_amount_changed_by_hand_is_named_by_recovery(
    pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, auction, _ = await bid_thrice(pool)
    second = await seq_of(pool, auction, 1)
    await pool.execute(
        "UPDATE bids SET amount = amount + 1 WHERE auction_id = $1 AND seq = $2", auction, second
    )
    with caplog.at_level(logging.ERROR, logger="engine.recovery"):
        recovered = await recover(pool)
    assert recovered.broken == {auction: second}
    assert f"bid log of auction {auction} does not verify from bid seq {second}" in caplog.text


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            "UPDATE bids SET created_at = created_at + interval '1 ms'"
            " WHERE auction_id = $1 AND seq = $2",
            0,
        ),
        ("UPDATE bids SET is_platform_bid = true WHERE auction_id = $1 AND seq = $2", 0),
        ("DELETE FROM bids WHERE auction_id = $1 AND seq = $2", 1),  # the one after it is named
        ("UPDATE bids SET hash = NULL WHERE auction_id = $1 AND seq = $2", 0),
    ],
    ids=["time", "platform flag", "removed", "no hash"],
)
async def test_other_hand_edits_are_named_by_recovery(pool: Any, change: str, named: int) -> None:
    _, auction, _ = await bid_thrice(pool)
    rows = await pool.fetch(BIDS, auction)
    await pool.execute(change, auction, rows[1]["seq"])
    assert (await recover(pool)).broken == {auction: rows[1 + named]["seq"]}


async def test_a_suspended_auction_takes_no_bid_nor_maximum_and_others_go_on(pool: Any) -> None:
    world, auction, other = await bid_thrice(pool)
    await pool.execute("UPDATE bids SET amount = amount * 2 WHERE auction_id = $1", auction)
    a, b = world.bidders[:2]
    async with running(pool) as engine:
        assert engine.suspended(auction) and not engine.suspended(other)
        refused = await engine.place_bid(auction, b, PRICE * 10, "late")
        assert (refused.accepted, refused.code) == (False, "bid_log_broken")
        refused_max = await engine.set_max(auction, b, PRICE * 20, "late-max")
        assert (refused_max.accepted, refused_max.code) == (False, "bid_log_broken")
        assert (await engine.place_bid(other, a, PRICE + STEP, "y")).accepted
        # A retry of a bid acknowledged before is still answered as that bid.
        again = await engine.place_bid(auction, a, PRICE, "0")
        assert again.accepted


async def test_a_suspended_auction_is_neither_closed_nor_ended_at_its_end(pool: Any) -> None:
    seller = await create_user(pool, role="dealer")
    bidder = await create_user(pool, balance_kobo=10**12)
    start = now_ms() - 1_000
    auction = await create_auction(pool, seller=seller, start_ms=start, end_ms=start + 60_000)
    clock = ManualClock(start + 1_000)
    engine = await Sequencer.open(pool, clock=clock)
    try:
        assert (await engine.place_bid(auction, bidder, PRICE, "1")).accepted
    finally:
        await engine.close()
    await pool.execute("UPDATE bids SET amount = amount + 1 WHERE auction_id = $1", auction)
    engine = await Sequencer.open(pool, clock=clock)
    try:
        clock.set(start + 120_000)  # past its end
        await Lifecycle(pool, engine, clock).tick()
        await Lifecycle(pool, engine, clock).sweep_ended()
        assert await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == "live"
    finally:
        await engine.close()


async def test_a_node_with_a_suspended_auction_stays_ready_and_says_so(
    pool: Any, database_url: str
) -> None:
    world, auction, _ = await bid_thrice(pool)
    await pool.execute("UPDATE bids SET amount = amount + 1 WHERE auction_id = $1", auction)
    bidder = world.bidders[1]
    token = mint_token(bidder, "user", SECRET)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        async with session.get(f"{served.base}/readyz") as ready:
            assert ready.status == 200
            assert await ready.json() == {"status": "ready", "bid_logs_broken": 1}
        body = {"auction_id": str(auction), "amount_kobo": PRICE * 10, "client_bid_id": "z"}
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(f"{served.base}/api/bids", json=body, headers=headers) as reply:
            assert reply.status == 503
            assert (await reply.json())["error"]["code"] == "bid_log_broken"
        async with session.get(f"{served.base}/metrics") as metrics:
            assert "auction_bid_logs_broken 1.0" in await metrics.text()
        assert served.app[SEQUENCER].broken_logs == {auction: await seq_of(pool, auction, 0)}


# ---- bids written before the log existed -------------------------------------------

BEFORE_THE_LOG = [m.name for m in load_migrations() if m.version < 30]


async def test_the_migration_gives_bids_already_written_their_chain(
    blank_database_url: str, tmp_path: Path
) -> None:
    before = tmp_path / "sql"
    before.mkdir()
    for name in BEFORE_THE_LOG:
        shutil.copy(MIGRATIONS_DIR / name, before / name)
    await migrate(blank_database_url, directory=before)
    conn = await asyncpg.connect(blank_database_url)
    try:
        seller = await create_user(conn, role="dealer")
        a, b = [await create_user(conn, balance_kobo=10**12) for _ in range(2)]
        platform = PLATFORM_USER_ID
        start = now_ms() - 10_000
        auctions = [
            await create_auction(conn, seller=seller, start_ms=start, end_ms=start + HOUR_MS)
            for _ in range(2)
        ]
        # (bidder, amount kobo, platform, proxy, seq): seqs with a gap (a state change).
        rows = [
            (a, PRICE, False, False, 2),
            (platform, PRICE + STEP, True, False, 3),
            (b, PRICE + 2 * STEP, False, False, 5),
            (a, PRICE + 3 * STEP, False, True, 6),
            (b, PRICE + 4 * STEP, False, False, 7),
        ]
        for auction in auctions:
            for n, (user, amount, is_platform, is_proxy, seq) in enumerate(rows):
                await conn.execute(
                    "INSERT INTO bids (auction_id, user_id, amount, is_platform_bid, is_proxy,"
                    " seq, created_at) VALUES ($1, $2, $3, $4, $5, $6,"
                    " timestamptz 'epoch' + $7 * interval '1 ms')",
                    auction,
                    user,
                    amount / 100,
                    is_platform,
                    is_proxy,
                    seq,
                    start + 17 * n,
                )
        await migrate(blank_database_url)
        for auction in auctions:
            stored = [r["hash"] for r in await conn.fetch(BIDS, auction)]
            numbers = {a: 1, platform: 0, b: 2}
            entries = [
                bidlog.Entry(seq, numbers[user], amount, start + 17 * n, is_platform, is_proxy)
                for n, (user, amount, is_platform, is_proxy, seq) in enumerate(rows)
            ]
            assert stored == bidlog.chain(auction, entries)
    finally:
        await conn.close()
