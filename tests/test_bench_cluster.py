"""The `cluster` bench scenario: its ledger check bites, and a tiny run end to end
(two nodes, one kill) prints the result line with nothing lost. The failover gap
is the bench's to show (its own bound, 5 s at p99), never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.cluster import Tally, lost
from tests.factories import create_auction, create_user

REPO = Path(__file__).resolve().parent.parent


async def test_the_ledger_check_counts_acknowledged_bids_the_ledger_lacks(
    pool: Any, database_url: str
) -> None:
    seller = await create_user(pool, role="dealer")
    bidder = await create_user(pool, balance_kobo=10**12)
    auction = await create_auction(pool, seller=seller, start_ms=0, end_ms=10**13)
    written = await pool.fetchval(
        "INSERT INTO bids (auction_id, user_id, amount, seq, is_winning, client_bid_id)"
        " VALUES ($1, $2, 1000, 1, true, 'kept') RETURNING id",
        auction,
        bidder,
    )
    acks = {str(written): "kept", str(uuid.uuid4()): "never-written"}
    assert await lost(database_url, Tally(acks=acks)) == 1
    # under another client_bid_id than acknowledged, a row is not the bid acknowledged
    assert await lost(database_url, Tally(acks={str(written): "other"})) == 1


def test_the_cluster_scenario_runs_end_to_end() -> None:
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
            "--auctions",
            "2",
            "--bidders",
            "1",
            "--storm-s",
            "1.5",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scenario"] == "cluster" and result["nodes"] == 2 and result["kills"] == 1
    assert result["acknowledged"] > 0
    assert result["lost"] == 0
    assert result["failover_gap_s"]["max"] > 0
