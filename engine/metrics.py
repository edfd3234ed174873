"""The engine's Prometheus metrics (prefix `auction_`, no auction id as a label)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

#: How Prometheus writes a bucket's bound ("0.0005", "1.0", "+Inf"); untyped upstream.
_bound_label = cast(Callable[[float], str], floatToGoString)


class LoopHistogram:
    """A histogram observed from the event loop's thread alone: plain counters, no
    lock. prometheus_client's Histogram takes a lock and checks its labels on every
    observation; the bid path observes once per bid, where that showed in the
    writer's profile (bench/README.md, "ledger")."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Iterable[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(sorted(float(bound) for bound in buckets))
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound
        self._sum = 0.0
        registry.register(self)

    def observe(self, amount: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1  # le: amount <= bound
        self._sum += amount

    def collect(self) -> Iterator[Metric]:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*self._bounds, math.inf), self._counts, strict=True):
            cumulative += count
            buckets.append((_bound_label(bound), cumulative))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=self._sum
        )


BIDS = Counter(
    "auction_bids_total",
    "Bids decided, by result (accepted/rejected) and reason (the rejection code, or 'none').",
    ["result", "reason"],
)
BID_LATENCY = LoopHistogram(
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
LEDGER_FENCED = Counter(
    "auction_ledger_fenced_total",
    "Ledger batches refused by a newer owner's epoch (a partition moved on under them).",
)
LEDGER_AVAILABLE = Gauge(
    "auction_ledger_available", "1 while the ledger takes writes, 0 while bids are refused."
)
LIVE_AUCTIONS = Gauge("auction_live_auctions", "Auctions live in this engine's core.")
END_PROCESSING_FAILURES = Counter(
    "auction_end_processing_failures_total",
    "End processing attempts that failed (the auction stays `ended` and is tried again by "
    "the sweep every few seconds).",
)
ENDED_UNPROCESSED = Gauge(
    "auction_ended_unprocessed",
    "Auctions closed whose end processing (winner, deposit hold, notices) is not done, as "
    "the last sweep found them.",
)
BID_LOGS_BROKEN = Gauge(
    "auction_bid_logs_broken",
    "Auctions loaded whose bid log does not verify against their bid rows: suspended (no "
    "bid, maximum, opening or close is taken for them); the error log names each and the "
    "first bid (seq) that breaks it.",
)
PARTITIONS_OWNED = Gauge(
    "auction_partitions_owned", "Partitions this node holds leases on and decides for."
)
PARTITIONS_TOTAL = Gauge(
    "auction_partitions", "Partitions the auctions are spread over (fixed per database)."
)
LEASE_RENEWALS = Counter(
    "auction_lease_renewals_total",
    "Rounds of lease renewals by this node: `renewed` (the database answered; a lease "
    "it did not return was lost) or `failed` (no answer).",
    ["result"],
)
PARTITION_MOVES = Counter(
    "auction_partition_moves_total",
    "Partitions this node took, released (handed over), lost (another node took it) or "
    "let lapse (no renewal came back before its deadline).",
    ["kind"],
)
PARTITION_MOVE_SECONDS = Histogram(
    "auction_partition_move_seconds",
    "A take (lease, claim, load into the core) or a release (drain, flush, hand over).",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ALLOWANCE_GRANTS = Counter(
    "auction_allowance_grants_total",
    "Bids or maximums this node's pool of the bidder's buying power could not back, "
    "by what the ledger answered (engine/allowances.py): `granted` (the allowance grew; "
    "decided again) or `short` (the free balance could not cover it: refused).",
    ["result"],
)
ALLOWANCE_RELEASES = Counter(
    "auction_allowance_releases_total",
    "Allowances this node gave back to the free balance, by why: `idle` (not used for a "
    "while), `asked` (a withdrawal or another node's grant needed it), `grant` (this "
    "node's grant for another partition of the same bidder).",
    ["reason"],
)
GC_FULL_PAUSE = Histogram(
    "auction_gc_full_pause_seconds",
    "Full garbage collections the engine runs on its schedule (engine/gcpolicy.py): the "
    "event loop's pause.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REVENUE_TODAY = Gauge(
    "auction_revenue_today_kobo",
    "Today's revenue so far (UTC day), read from the ledger every minute as "
    "GET /internal/admin/revenue gives it, by kind: `gmv` (sales settled), `commissions`, "
    "`forfeited_deposits`. Every node reports the same figures (take max, not sum).",
    ["kind"],
)
OUTCOMES_TODAY = Gauge(
    "auction_outcomes_today",
    "Auctions sold (settled) and unsold so far today (UTC day), from the ledger every "
    "minute; every node reports the same figures (take max, not sum).",
    ["outcome"],
)
for _kind in ("gmv", "commissions", "forfeited_deposits"):
    REVENUE_TODAY.labels(_kind).set(0)
for _outcome in ("sold", "unsold"):
    OUTCOMES_TODAY.labels(_outcome).set(0)
