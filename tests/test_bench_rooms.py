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
    bid_id: str, amount: int, client_bid_id: str | None, *, is_proxy: bool = False
) -> dict[str, Any]:
    return {
        "id": bid_id,
        "amount_kobo": amount,
        "client_bid_id": client_bid_id,
        "is_platform_bid": False,
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
        ([_row("a", 100, "c1"), _row("b", 200, "c2"), _row("z", 250, None)], False),  # stray
    ],
)
async def test_the_ledger_check_holds_the_ledger_to_what_bidders_were_told(
    rows: list[dict[str, Any]], consistent: bool
) -> None:
    told = Acknowledged(accepted={"a": (0, 100), "b": (0, 200)}, rejected={"c3"}, unknown={"c4"})
    report = await check_ledger(_Ledger({"auction-0": rows}), ["auction-0"], told)  # type: ignore[arg-type]
    assert report["ledger_consistent"] is consistent
