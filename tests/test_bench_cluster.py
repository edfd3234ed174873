"""The `cluster` bench scenario: its ledger checks bite (a bid lost, a bid twice),
and a tiny run end to end (one node, then two, one kill) prints the result line
with nothing lost or duplicated and every room agreeing with the ledger. Speed —
latencies, the failover gap, CPU per frame — is the bench's to show, never
asserted here."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.cluster import duplicated, lost
from bench.loadgen import reconnect_delay_s
from tests.factories import create_auction, create_user

REPO = Path(__file__).resolve().parent.parent
TARGETS = (
    "ack_p99_ms",
    "fanout_p99_ms",
    "failover_gap_p99_ms",
    "cpu_per_frame_ratio",
    "lost",
    "duplicated",
    "ledger_consistent",
)
_BID = (
    "INSERT INTO bids (auction_id, user_id, amount, seq, client_bid_id)"
    " VALUES ($1, $2, $3, $4, $5) RETURNING id"
)


async def _auction_and_bidder(pool: Any) -> tuple[uuid.UUID, uuid.UUID]:
    seller = await create_user(pool, role="dealer")
    bidder = await create_user(pool, balance_kobo=10**12)
    return await create_auction(pool, seller=seller, start_ms=0, end_ms=10**13), bidder


async def test_the_ledger_check_counts_acknowledged_bids_the_ledger_lacks(pool: Any) -> None:
    auction, bidder = await _auction_and_bidder(pool)
    written = await pool.fetchval(_BID, auction, bidder, 1000, 1, "kept")
    async with pool.acquire() as conn:
        assert await lost(conn, {str(written): "kept", str(uuid.uuid4()): "never-written"}) == 1
        # under another client_bid_id than acknowledged, a row is not the bid acknowledged
        assert await lost(conn, {str(written): "other"}) == 1
        assert await lost(conn, {str(written): "kept"}) == 0


async def test_a_bid_written_twice_counts_once_however_it_is_twice(pool: Any) -> None:
    auction, bidder = await _auction_and_bidder(pool)
    other, _ = await _auction_and_bidder(pool)
    await pool.fetchval(_BID, auction, bidder, 1000, 1, "sent-once")
    await pool.fetchval(_BID, auction, bidder, 1000, 2, None)  # its amount again, no id
    await pool.fetchval(_BID, auction, bidder, 1100, 3, "one-id")
    await pool.fetchval(_BID, other, bidder, 1200, 1, "one-id")  # its id again, elsewhere
    await pool.fetchval(_BID, auction, bidder, 1300, 4, "a")  # the client sent 1,300
    await pool.fetchval(_BID, auction, bidder, 1300, 5, "b")  # twice: two ids, no duplicate
    async with pool.acquire() as conn:
        counts = await duplicated(conn, [str(auction), str(other)])
    assert counts["by_amount"] == 1 and counts["by_client_bid_id"] == 1
    assert counts["duplicated"] == 2


async def test_bids_of_other_auctions_are_not_the_runs(pool: Any) -> None:
    auction, bidder = await _auction_and_bidder(pool)
    await pool.fetchval(_BID, auction, bidder, 1000, 1, None)
    await pool.fetchval(_BID, auction, bidder, 1000, 2, None)
    async with pool.acquire() as conn:
        assert (await duplicated(conn, [str(uuid.uuid4())]))["duplicated"] == 0


def test_the_benchs_clients_wait_to_reconnect_as_the_room_page_does() -> None:
    page = (Path(__file__).parent.parent / "web" / "static" / "room.js").read_text()
    # The room page's formula, which the bench follows:
    # min(15 s, 0.5 s x 2^min(n-1, 5)) x U(0.75, 1.25).
    formula = "Math.min(15000, 500 * 2 ** Math.min(attempts - 1, 5)) * (0.75 + Math.random() / 2)"
    assert formula in page
    rng = random.Random(7)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 15.0), (9, 15.0)]:
        waits = [reconnect_delay_s(attempt, rng) for _ in range(200)]
        assert 0.75 * base <= min(waits) and max(waits) <= 1.25 * base
        assert max(waits) - min(waits) > 0.25 * base  # spread, not one instant


def test_a_tiny_run_one_node_then_two_and_a_kill_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "cluster",
            "--json",
            "--nodes",
            "2",
            "--kills",
            "1",
            "--kill-every-s",
            "12",  # slack: a busy machine must not push the kill past the load's end
            "--seconds",
            "3",
            "--auctions",
            "4",
            "--bidders",
            "20",
            "--watchers",
            "40",
            "--rate",
            "100",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scenario"] == "cluster" and result["nodes"] == 2
    assert result["lost"] == 0 and result["duplicated"] == 0, result["ledger"]
    assert result["ledger_consistent"] is True, result["ledger"]
    assert set(result["targets"]) == set(TARGETS)
    assert all(isinstance(target["met"], bool) for target in result["targets"].values())
    assert isinstance(result["targets_met"], bool)
    for key in ("ack_p99_ms", "fanout_p99_ms", "failover_gap_p99_ms", "cpu_per_frame_ratio"):
        assert result[key] is not None and result[key] > 0, (key, done.stderr[-2000:])
    one, two, failover = (result["phases"][k] for k in ("one_node", "n_nodes", "failover"))
    assert one["nodes"] == 1 and two["nodes"] == 2
    assert one["ack_forwarded_ms"]["count"] == 0  # one node owns every auction
    assert two["ack_forwarded_ms"]["count"] > 0 and two["ack_local_ms"]["count"] > 0
    assert one["accepted"] > 0 and two["accepted"] > 0 and failover["accepted"] > 0
    assert two["deliveries"]["measured"] == two["deliveries"]["expected"], two["deliveries"]
    assert failover["kills"] == 1, done.stderr[-2000:]
    assert failover["each_kill"][0]["gap_s"] > 0
    assert Path(result["files"]["png"]).read_bytes().startswith(b"\x89PNG")
