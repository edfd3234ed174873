"""The serving process's garbage collection policy (engine/gcpolicy.py): survivors
frozen, CPython's full collections replaced by the engine's own on a schedule, and
garbage cycles still reclaimed by them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from engine.gcpolicy import GcPolicy


class Node:
    """A garbage cycle once dropped: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    before = gc.get_threshold()
    policy = GcPolicy(full_every_s=60, freeze_every_s=5)
    policy.install(now=1000.0)
    try:
        yield policy
    finally:
        policy.uninstall()
        assert gc.get_threshold() == before


def test_installed_policy_stops_cpythons_own_full_collections(policy: GcPolicy) -> None:
    full = gc.get_threshold()[2]
    assert full >= 1 << 30
    assert gc.get_freeze_count() > 0  # install collected and froze what was there


def test_a_tick_freezes_what_survived_and_keeps_young_garbage_out(policy: GcPolicy) -> None:
    kept = [Node() for _ in range(1000)]
    garbage = Node()
    dead = weakref.ref(garbage)
    del garbage
    frozen_before = gc.get_freeze_count()
    policy.tick(now=1005.0)
    assert dead() is None  # collected by the young collection before the freeze
    assert gc.get_freeze_count() >= frozen_before + len(kept)


def test_a_frozen_cycle_waits_for_the_scheduled_full_collection(policy: GcPolicy) -> None:
    cycle = Node()
    alive = weakref.ref(cycle)
    policy.tick(now=1005.0)  # frozen while still referenced
    del cycle
    gc.collect(1)
    policy.tick(now=1010.0)
    assert alive() is not None  # a young collection does not walk frozen objects
    policy.tick(now=1060.0)  # 60 s after install: the full collection is due
    assert alive() is None


def test_the_full_collection_reports_its_pause(policy: GcPolicy) -> None:
    times = iter([10.0, 10.25])
    assert policy.full(timer=lambda: next(times)) == pytest.approx(0.25)


def test_interval_zero_leaves_cpythons_collector_alone() -> None:
    before = gc.get_threshold()
    policy = GcPolicy(full_every_s=0)
    policy.install(now=0.0)
    policy.tick(now=10_000.0)
    assert not policy.enabled
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
