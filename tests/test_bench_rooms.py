"""The `rooms` bench scenario: a tiny run end to end (server process, generator
processes, real sockets, the ledger check, the report files), and the pieces
whose mistakes would skew every figure. Speed is the bench's to show, never
asserted here."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import masked_frame
from bench.rooms_endings import END_SPAN, PLAYS, Answer, agrees, plan
from bench.rooms_stats import percentiles
from bench.rooms_world import Acknowledged, apportion, check_ledger

REPO = Path(__file__).resolve().parent.parent
LATENCY_KEYS = [
    f"{kind}_{q}_ms" for kind in ("ack", "fanout") for q in ("p50", "p95", "p99", "p999")
]


def tiny_run(
    out: Path, env: dict[str, str] | None = None, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "rooms",
            "--json",
            "--auctions",
            "4",
            "--bidders",
            "20",
            "--watchers",
            "40",
            "--seconds",
            "5",
            "--rate",
            "200",
            "--out",
            str(out),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )


def test_a_tiny_run_reports_latencies_a_consistent_ledger_and_writes_its_files(
    tmp_path: Path,
) -> None:
    done = tiny_run(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scenario"] == "rooms"
    for key in [*LATENCY_KEYS, "accepted_bids_per_s", "sockets_dropped", "rejections"]:
        assert key in result, key
    assert result["ledger_consistent"] is True
    assert result["accepted"] > 0
    assert result["sockets_connected"] == 60
    assert result["deliveries"]["measured"] == result["deliveries"]["expected"]
    assert result["config"]["processes"] == 2
    png, md = Path(result["files"]["png"]), Path(result["files"]["md"])
    assert png.parent == md.parent == tmp_path
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "| bid ack" in md.read_text()


def test_with_maximums_in_the_mix_their_answers_are_counted_and_the_ledger_holds(
    tmp_path: Path,
) -> None:
    done = tiny_run(tmp_path, None, "--max-share", "0.5")

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    maxes = result["maxes"]
    assert result["config"]["max_share"] == 0.5
    assert maxes["sent"] > 0 and maxes["accepted"] > 0, maxes
    assert result["ack_max_p99_ms"] is not None
    # the maximums bid: their rows are in the ledger, marked, and reached the watchers
    assert maxes["proxy_bids_in_ledger"] > 0 and maxes["proxy_deliveries"] > 0, maxes
    assert result["ledger_consistent"] is True, result["ledger"]
    assert result["deliveries"]["measured"] == result["deliveries"]["expected"]
    assert result["accepted"] > 0


ENDING = ("--ending", "seller-decision", "--auctions", "8", "--ending-share", "0.75")


def test_auctions_ending_into_the_sellers_decision_are_decided_under_load_and_all_agree(
    tmp_path: Path,
) -> None:
    # 6 of 8 auctions end 1.5-7.5 s into 15 s of bidding; 5 answered (one of each play),
    # one left: with 2-s windows and the 5-s sweep, every if-bid closes during the run.
    done = tiny_run(
        tmp_path,
        None,
        *ENDING,
        *("--seconds", "15", "--answer-share", "0.84", "--if-bid-window-ms", "2000"),
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    endings = result["endings"]
    assert endings["consistent"] is True, endings["problems"]
    assert result["ledger_consistent"] is True and result["ledger"]["missing"] == 0
    assert result["sockets_dropped"] == 0
    assert result["deliveries"]["measured"] == result["deliveries"]["expected"]
    # every ending auction had bids, went to its seller's decision while others bid
    assert endings["auctions"] == endings["to_seller_decision"] == 6
    assert endings["to_seller_decision_during_load"] == 6
    first, last = endings["ends_after_start_s"]
    assert first == pytest.approx(1.5, abs=0.02) and last == pytest.approx(7.5, abs=0.02)
    # the answers the bench was given are what the if-bids say, each decided by now
    answers = endings["answers"]
    assert answers["by_play"] == dict.fromkeys(PLAYS, 1)
    assert answers["failed"] == 0 and answers["taken"] > 0
    states = endings["if_bids_at_the_check"]
    assert "open" not in states and sum(states.values()) == 6
    assert states.get("expired", 0) >= 1  # the one nobody answered
    statuses = endings["statuses_at_the_check"]
    assert statuses.get("pending_settlement", 0) == states.get("accepted", 0)
    assert statuses.get("unsold", 0) == states.get("declined", 0) + states["expired"]
    # refusals of bids sent as an auction ended are counted apart from the others
    assert "auction_ended" not in result["rejections"]
    assert endings["refused_after_end"] >= 0
    assert result["accepted"] > 0
    assert "Endings (`--ending seller-decision`)" in Path(result["files"]["md"]).read_text()
    assert "endings: 6 of 8 auctions ended, 6 to seller_decision" in done.stderr


def test_side_by_side_runs_steady_without_endings_then_with_them_and_reports_both(
    tmp_path: Path,
) -> None:
    done = tiny_run(tmp_path, None, *ENDING, "--side-by-side", "--if-bid-window-ms", "1000")

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    both = result["side_by_side"]
    assert both["without"]["ledger_consistent"] is both["with"]["ledger_consistent"] is True
    assert both["difference"]["ack_p99_ms"] == pytest.approx(
        both["with"]["ack_p99_ms"] - both["without"]["ack_p99_ms"], abs=0.01
    )
    assert result["endings"]["to_seller_decision"] == 6
    assert sorted(p.name for p in tmp_path.glob("*.md")) == [
        "rooms-steady-seller-decision.md",
        "rooms-steady-side-by-side.md",
        "rooms-steady.md",
    ]
    assert "Endings" not in (tmp_path / "rooms-steady.md").read_text()


@pytest.mark.parametrize(
    "extra", [("--ending", "seller-decision", "--scenario", "storm"), ("--side-by-side",)]
)
def test_the_ending_options_are_refused_where_they_do_not_apply(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    done = tiny_run(tmp_path, None, *extra)

    assert done.returncode == 1
    assert "FAILED: --" in done.stderr and "server" not in done.stderr


def test_the_plan_spreads_the_ends_and_deals_the_answers_in_end_order() -> None:
    ending = plan(200, 0.25, 0.5, 60.0, 10_000, seed=360)

    assert len(ending.after_go_ms) == 50 and len(ending.plays) == 25
    ends = sorted(ending.after_go_ms.values())
    assert ends[0] == 60_000 * END_SPAN[0] and ends[-1] == 60_000 * END_SPAN[1]
    in_end_order = [ending.plays[i] for i in sorted(ending.plays, key=ending.after_go_ms.get)]
    assert in_end_order == list(PLAYS) * 5
    assert plan(200, 0.25, 0.5, 60.0, 10_000, seed=360) == ending  # the seed decides


def _answer(by: str, action: str, state: str | None, amount: int | None = None) -> Answer:
    return Answer(0, "play", by, action, amount, 0, 1, 200, None, state)


_OPEN = {"state": "open", "high_bid_kobo": 100, "offers": [], "price_kobo": None}


@pytest.mark.parametrize(
    ("status", "offer", "answers", "agree"),
    [
        ("seller_decision", _OPEN, [], True),
        ("unsold", {**_OPEN, "state": "expired"}, [], True),
        ("unsold", {**_OPEN, "state": "declined"}, [], False),  # declined by nobody
        ("unsold", _OPEN, [], False),  # open, yet the auction is unsold
        ("seller_decision", {**_OPEN, "high_bid_kobo": 90}, [], False),  # not the top bid
        (
            "pending_settlement",
            {**_OPEN, "state": "accepted", "price_kobo": 100},
            [_answer("seller", "accept", "accepted")],
            True,
        ),
        (
            "pending_settlement",
            {**_OPEN, "state": "accepted", "price_kobo": 120},
            [_answer("seller", "counter", "open", 120), _answer("bidder", "accept", "accepted")],
            True,
        ),
        (  # accepted at the high bid, not at the counter the bidder accepted
            "pending_settlement",
            {**_OPEN, "state": "accepted", "price_kobo": 100},
            [_answer("seller", "counter", "open", 120), _answer("bidder", "accept", "accepted")],
            False,
        ),
        (  # a counter left to expire
            "unsold",
            {**_OPEN, "state": "expired", "offers": [{"by": "seller", "amount_kobo": 120}]},
            [_answer("seller", "counter", "open", 120)],
            True,
        ),
        ("seller_decision", _OPEN, [_answer("seller", "decline", "declined")], False),
    ],
)
def test_an_ended_auction_must_agree_with_its_if_bid_and_the_answers_given(
    status: str, offer: dict[str, Any], answers: list[Answer], agree: bool
) -> None:
    assert (agrees(0, status, offer, 100, answers) == []) is agree


def test_without_matplotlib_a_run_still_reports_and_says_the_plot_was_skipped(
    tmp_path: Path,
) -> None:
    hidden = tmp_path / "hide" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(hidden.parent)}

    done = tiny_run(tmp_path / "out", env)

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ledger_consistent"] is True and result["accepted"] > 0
    assert "matplotlib" in result["plot_skipped"]
    assert result["files"]["png"] is None
    assert "plot was skipped" in done.stderr
    assert not list((tmp_path / "out").glob("*.png"))
    assert "| bid ack" in Path(result["files"]["md"]).read_text()


def test_auctions_get_every_item_and_each_at_least_one() -> None:
    rng = random.Random(1)
    for zipf in (0.0, 1.0):
        counts = apportion(1_000, 200, zipf, rng)
        assert sum(counts) == 1_000 and min(counts) >= 1
    assert apportion(1_000, 200, 0.0, rng) == [5] * 200


def test_client_frames_are_masked_and_unmask_to_the_payload() -> None:
    payload = b'{"type":"bid","amount_kobo":5000000,"client_bid_id":"g0-b1-1"}'
    frame = masked_frame(0x1, payload, 0x1A2B3C4D)
    assert frame[0] == 0x81 and frame[1] == 0x80 | len(payload)
    key, body = frame[2:6], frame[6:]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == payload


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 1001)]
    assert percentiles(values) == {
        "p50": 500.0,
        "p95": 950.0,
        "p99": 990.0,
        "p99.9": 999.0,
        "max": 1000.0,
    }


class _Ledger:
    """The internal API's two reads, from a dict of auction → bids."""

    def __init__(self, bids: dict[str, list[dict[str, Any]]]) -> None:
        self.bids = bids

    async def call(self, method: str, path: str, body: Any = None, ok: int = 200) -> Any:
        auction = path.split("/")[3]
        rows = self.bids[auction]
        if path.endswith("/bids"):
            return {"bids": rows}
        price = max((row["amount_kobo"] for row in rows), default=None)
        return {"auction": {"current_price_kobo": price, "bid_count": len(rows)}}


def _row(
    bid_id: str,
    amount: int,
    client_bid_id: str | None,
    *,
    is_proxy: bool = False,
    platform: bool = False,
) -> dict[str, Any]:
    return {
        "id": bid_id,
        "amount_kobo": amount,
        "client_bid_id": client_bid_id,
        "is_platform_bid": platform,
        "is_proxy": is_proxy,
    }


@pytest.mark.parametrize(
    ("rows", "consistent"),
    [
        ([_row("a", 100, "c1"), _row("b", 200, "c2")], True),
        ([_row("a", 100, "c1")], False),  # an acknowledged bid is missing
        ([_row("a", 100, "c1"), _row("b", 200, "c2"), _row("x", 300, "c3")], False),  # refused
        ([_row("a", 100, "c1"), _row("b", 200, "c2"), _row("y", 300, "c4")], True),  # no answer
        ([_row("a", 100, "c1"), _row("b", 250, "c2")], False),  # another amount
        # a maximum's answer: nobody sent it, and it is not a stray
        ([_row("a", 100, "c1"), _row("b", 200, "c2"), _row("p", 250, None, is_proxy=True)], True),
        # a reserve-protection bid leads: it sets the price, and nobody sent it either
        ([_row("a", 100, "c1"), _row("b", 200, "c2"), _row("r", 250, None, platform=True)], True),
        ([_row("a", 100, "c1"), _row("b", 200, "c2"), _row("z", 250, None)], False),  # stray
    ],
)
async def test_the_ledger_check_holds_the_ledger_to_what_bidders_were_told(
    rows: list[dict[str, Any]], consistent: bool
) -> None:
    told = Acknowledged(accepted={"a": (0, 100), "b": (0, 200)}, rejected={"c3"}, unknown={"c4"})
    report = await check_ledger(_Ledger({"auction-0": rows}), ["auction-0"], told)  # type: ignore[arg-type]
    assert report["ledger_consistent"] is consistent
