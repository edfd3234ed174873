"""The bid path's lock-free histogram reads exactly like prometheus_client's own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from engine.metrics import LoopHistogram

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=200))
def test_loop_histogram_exposes_what_a_prometheus_histogram_would(values: list[float]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop_histogram = LoopHistogram("bid_latency_seconds", "doc", BUCKETS, registry=ours)
    histogram = Histogram("bid_latency_seconds", "doc", buckets=BUCKETS, registry=theirs)
    for value in [*values, *BUCKETS]:  # the bounds themselves fall in their own bucket
        loop_histogram.observe(value)
        histogram.observe(value)
    assert _exposition(ours) == _exposition(theirs)
