"""Two minutes of the soak (`python -m bench soak`, whose default is the 1-hour run):
a real server process on its own PostgreSQL (fsync on) under moderate, steady load,
auctions ending and being replaced every 40 s.

The soak itself judges the run (bench/soak.py, `verdict`); this test runs it short
and holds it to the same bounds:

- RSS flat: the last 20-s window's RSS at most 25 % above the first window after
  warm-up (the first window: rooms, replay buffers, pools and caches fill up);
- no descriptor leak: with the load stopped and its clients gone, the server holds
  no client socket, and at most its pool's 20 connections more descriptors than
  before the load;
- no drift: the last window's p99 (acknowledgement, delivery) at most twice the
  first counted window's plus 10 ms — on two cores shared with the clients and
  PostgreSQL, window-to-window p99 varies by a few ms (GC, the scheduler); a
  structure that grew with every bid would show as steady growth well past that;
- every acknowledged bid in the ledger, every wallet reconciled, every bid answered.

`-s` prints the windows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.soak import SoakConfig, soak

MINUTES = 2.0


@pytest.mark.slow
async def test_two_minutes_of_steady_load_leave_memory_descriptors_and_latency_flat(
    tmp_path: Path,
) -> None:
    config = SoakConfig(
        minutes=MINUTES,
        auctions=4,
        watchers=25,
        bidders=6,
        rate=60.0,
        auction_seconds=40.0,
        window_seconds=20.0,
        warmup_windows=1,
        rss_growth_pct=25.0,
        p99_factor=2.0,
        p99_slack_ms=10.0,
    )
    result = await soak(config, log_dir=tmp_path)
    windows = result["windows"]
    assert isinstance(windows, list)
    for window in windows:
        print(
            f"t={window['at_s']:>6}s acks {window['accepted']:>5} p50/p99"
            f" {window['ack_ms']['p50']}/{window['ack_ms']['p99']} ms, delivery p50/p99"
            f" {window['delivery_ms']['p50']}/{window['delivery_ms']['p99']} ms,"
            f" rss {window['rss_kb']} kB, fds {window['fds']}, ended {window['auctions_ended']}"
        )
    summary = {key: result[key] for key in ("rss_kb", "drift", "fds", "accepted_bids")}
    print(json.dumps(summary))
    assert result["failures"] == [], result["failures"]
    ended = sum(window["auctions_ended"] for window in windows)
    assert ended >= 8, "auctions did not end and get replaced"
