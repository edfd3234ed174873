"""Kill the engine with SIGKILL under load, again and again: every acknowledged
bid survives exactly once and the rebuilt core equals the ledger each time."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from engine.recovery import recover
from tests.factories import create_auction, create_user

KILLS = 6
ROOT = Path(__file__).resolve().parent.parent


async def start_bidder(dsn: str, ack_file: Path, seed: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.crash_bidder",
        dsn,
        str(ack_file),
        str(seed),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    ready = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    assert ready == b"ready\n", "the bidder did not recover and start"
    return process


def acknowledged(ack_file: Path) -> list[dict[str, Any]]:
    if not ack_file.exists():
        return []
    return [json.loads(line) for line in ack_file.read_text().splitlines() if line.endswith("}")]


async def test_sigkill_under_load_loses_no_acknowledged_bid(
    pool: Any, database_url: str, tmp_path: Path
) -> None:
    now = time.time_ns() // 1_000_000
    seller = await create_user(pool, role="dealer")
    for _ in range(12):
        await create_auction(pool, seller=seller, start_ms=now - 1000, end_ms=now + 3_600_000)
    for i in range(40):
        await create_user(pool, balance_kobo=[10**12, 200_000_000, 60_000_000][i % 3])
    ack_file = tmp_path / "acks.jsonl"
    rng = random.Random(7)
    counts = []
    for cycle in range(KILLS):
        process = await start_bidder(database_url, ack_file, seed=cycle)
        before = len(acknowledged(ack_file))
        await asyncio.sleep(0.3 + rng.random())
        process.send_signal(signal.SIGKILL)
        await process.wait()
        acks = acknowledged(ack_file)
        assert len(acks) > before, f"cycle {cycle}: nothing was acknowledged before the kill"
        counts.append(len(acks) - before)
        await recover(pool)  # raises unless the rebuilt core equals the ledger

    acks = acknowledged(ack_file)
    rows = await pool.fetch("SELECT id, auction_id, user_id, client_bid_id FROM bids")
    in_ledger = {row["id"] for row in rows}
    missing = [ack for ack in acks if uuid.UUID(ack["id"]) not in in_ledger]
    assert missing == [], f"{len(missing)} acknowledged bids are not in the ledger"
    keys = [(row["auction_id"], row["user_id"], row["client_bid_id"]) for row in rows]
    assert len(keys) == len(set(keys)), "a client_bid_id was written twice"
    # A retried client_bid_id acknowledged twice must name the same bid both times.
    by_key: dict[tuple[str, str, str], str] = {}
    for ack in acks:
        key = (ack["auction"], ack["user"], ack["client_bid_id"])
        assert by_key.setdefault(key, ack["id"]) == ack["id"]
    print(f"acknowledged per run before SIGKILL: {counts}; ledger rows: {len(rows)}")
