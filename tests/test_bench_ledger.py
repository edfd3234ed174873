"""The `ledger` bench scenario: its stream is legal in order, its ledger check bites,
and a tiny run end to end prints the result line. Speed is the bench's to show,
never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.core import BenchFailure
from bench.ledger import Mode, generate, verify
from tests.factories import create_auction, create_user

REPO = Path(__file__).resolve().parent.parent
RATES = ("writebehind_bids_per_s", "baseline_bids_per_s", "copy_rows_per_s")
RATIOS = ("ratio_vs_baseline", "ratio_vs_copy")


def test_the_same_seed_gives_the_same_world_and_stream() -> None:
    assert generate(2_000, 20, 100, False, 7) == generate(2_000, 20, 100, False, 7)


@pytest.mark.parametrize("hot", [False, True])
def test_every_bid_of_the_stream_is_valid_when_placed_in_order(hot: bool) -> None:
    world, stream = generate(5_000, 1 if hot else 40, 300, hot, 3)
    auctions = {auction.id: auction for auction in world.auctions}
    lead: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}
    for auction_id, user, amount in zip(
        stream.auction, stream.user, stream.amount_kobo, strict=True
    ):
        auction = auctions[auction_id]
        leader, price = lead.get(auction_id, (None, None))
        minimum = auction.start_price_kobo if price is None else price + auction.increment_kobo
        assert user != leader and user != auction.seller and amount >= minimum
        lead[auction_id] = (user, amount)
    assert len(set(stream.client_bid_id)) == len(stream)


def test_a_spread_stream_keeps_an_auctions_bids_apart() -> None:
    _, stream = generate(1_000, 50, 300, False, 3)
    for i in range(0, 1_000, 50):
        assert len(set(stream.auction[i : i + 50])) == 50


async def test_the_ledger_check_refuses_a_row_nobody_acknowledged(
    pool: Any, database_url: str
) -> None:
    seller = await create_user(pool, role="dealer")
    bidder = await create_user(pool, balance_kobo=10**12)
    auction = await create_auction(pool, seller=seller, start_ms=0, end_ms=10**13)
    await pool.execute(
        "INSERT INTO bids (auction_id, user_id, amount, seq, is_winning)"
        " VALUES ($1, $2, 1000, 1, true)",
        auction,
        bidder,
    )
    with pytest.raises(BenchFailure, match="0 rows acknowledged, 1 in the ledger"):
        await verify(database_url, Mode("writebehind"), auctions_moved=True)


async def test_the_ledger_check_refuses_an_auction_whose_price_is_not_its_top_bid(
    pool: Any, database_url: str
) -> None:
    seller = await create_user(pool, role="dealer")
    await create_auction(pool, seller=seller, start_ms=0, end_ms=10**13)
    await pool.execute("UPDATE auctions SET current_price = 5")
    with pytest.raises(BenchFailure, match="1 auctions"):
        await verify(database_url, Mode("writebehind"), auctions_moved=True)


@pytest.mark.parametrize(
    "variant",
    [[], ["--hot"], ["--proxy-share", "0.25"]],
    ids=["spread", "hot", "maximums"],
)
def test_the_ledger_scenario_runs_end_to_end(variant: list[str]) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "ledger",
            "--json",
            "--bids",
            "3000",
            "--auctions",
            "20",
            "--bidders",
            "200",
            "--seconds",
            "3",
            "--in-flight",
            "200",
            "--workers",
            "8",
            *variant,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scenario"] == "ledger"
    assert result["hot"] is ("--hot" in variant)
    for key in RATES + RATIOS:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["fsync"] == "on"
    assert result["modes"]["writebehind"]["acknowledged"] == 3000
    assert result["modes"]["writebehind"]["rejected"] == 0
    # a maximum on a quarter of the auctions answers every bid there: 750 answers
    # written with their bids (the maximums' own rows were written before the run)
    answers = 750 if "--proxy-share" in variant else 0
    assert result["proxy_auctions"] == (5 if answers else 0)
    assert result["modes"]["writebehind"]["rows"] == 3000 + answers
    # three write-behind/COPY pairs (the default); the one reported is the median
    ratios = sorted(each["ratio_vs_copy"] for each in result["rounds"])
    assert len(ratios) == 3 and all(ratio > 0 for ratio in ratios)
    assert round(result["ratio_vs_copy"], 3) == ratios[1]
