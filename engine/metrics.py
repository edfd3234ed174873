"""The engine's Prometheus metrics (prefix `auction_`, no auction id as a label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BIDS = Counter(
    "auction_bids_total",
    "Bids decided, by result (accepted/rejected) and reason (the rejection code, or 'none').",
    ["result", "reason"],
)
BID_LATENCY = Histogram(
    "auction_bid_latency_seconds",
    "From a bid's arrival to its acknowledgement (after the ledger commit).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LEDGER_BATCH_SIZE = Histogram(
    "auction_ledger_batch_size",
    "Bids per ledger transaction.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
LEDGER_FLUSH = Histogram(
    "auction_ledger_flush_seconds",
    "Time to commit one ledger batch, retries included.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
LEDGER_QUEUE = Gauge("auction_ledger_queue_depth", "Accepted bids waiting for the ledger.")
LEDGER_RETRIES = Counter("auction_ledger_retries_total", "Ledger batches tried again.")
LEDGER_AVAILABLE = Gauge(
    "auction_ledger_available", "1 while the ledger takes writes, 0 while bids are refused."
)
LIVE_AUCTIONS = Gauge("auction_live_auctions", "Auctions live in this engine's core.")
GC_FULL_PAUSE = Histogram(
    "auction_gc_full_pause_seconds",
    "Full garbage collections the engine runs on its schedule (engine/gcpolicy.py): the "
    "event loop's pause.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
