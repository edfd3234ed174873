"""Garbage collection for a server that holds thousands of sockets.

CPython's cyclic collector walks every tracked object in a full (generation 2)
collection. A busy server holds about half a million of them: roughly 80 per open
WebSocket (aiohttp's protocol, reader, writer and futures, the room's
subscription), the rooms' replay buffers, the idempotency records. A full
collection of that heap stops the event loop for hundreds of milliseconds
(bench/README.md, "rooms"), and CPython starts one every few seconds under
load: every bid waiting meanwhile pushed the ack p99 up by as much.

The policy, for the serving process only:

- Every `freeze_every_s` the young generations are collected (cheap: only objects
  made since the last time) and what survives is frozen (`gc.freeze()`): moved to
  the permanent generation that collections do not walk. A young collection then
  costs what the young objects cost, however many sockets are open.
- CPython's own full collections are switched off (the third threshold); instead
  one runs every `full_every_s`: unfreeze, collect everything, freeze again. Frozen
  objects are still freed by reference counting the moment nothing refers to them;
  only garbage *cycles* among them (a closed socket's objects refer to each other)
  wait for this collection, so memory stays bounded: one pause per interval
  (measured, logged and exported as `auction_gc_full_pause_seconds`) instead of one
  every few seconds. The soak (`python -m bench soak`) shows RSS flat over an hour.

`full_every_s = 0` leaves CPython's collector as it is.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from engine import metrics

logger = logging.getLogger(__name__)

#: CPython's full collections never start on their own below this many young
#: collections; the policy runs them instead.
_NEVER = 1 << 30


@dataclass
class GcPolicy:
    full_every_s: float = 600.0
    freeze_every_s: float = 5.0
    _last_full: float | None = None
    _thresholds: tuple[int, int, int] | None = None

    @property
    def enabled(self) -> bool:
        return self.full_every_s > 0

    def install(self, now: float) -> None:
        """Take over the full collections (from `now`, a monotonic time in seconds)."""
        if not self.enabled or self._thresholds is not None:
            return
        self._thresholds = young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _NEVER)
        self._last_full = now
        self.full()

    def uninstall(self) -> None:
        """CPython's collector as it was; everything frozen is walked again."""
        if self._thresholds is None:
            return
        gc.set_threshold(*self._thresholds)
        self._thresholds = None
        gc.unfreeze()

    def tick(self, now: float) -> None:
        """Called every `freeze_every_s`: freeze the survivors, and run the full
        collection when it is due."""
        if self._thresholds is None or self._last_full is None:
            return
        if now - self._last_full >= self.full_every_s:
            self._last_full = now
            self.full()
            return
        gc.collect(1)  # young garbage goes now, before it could be frozen
        gc.freeze()

    def full(self, timer: Callable[[], float] = time.perf_counter) -> float:
        """Collect everything, frozen or not, then freeze what is left; the pause."""
        started = timer()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        pause = timer() - started
        metrics.GC_FULL_PAUSE.observe(pause)
        logger.info(
            "full garbage collection: %d unreachable, %d objects kept, %.0f ms",
            found,
            gc.get_freeze_count(),
            pause * 1000,
        )
        return pause


@contextlib.asynccontextmanager
async def running(policy: GcPolicy) -> AsyncIterator[None]:
    """`policy` in force for the block, its ticks on a timer (the serving process;
    the ledger bench, which measures the engine as it serves)."""
    if not policy.enabled:
        yield
        return
    policy.install(time.monotonic())
    scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(
        lambda: policy.tick(time.monotonic()),
        "interval",
        seconds=policy.freeze_every_s,
        id="gc",
    )
    scheduler.start()
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        policy.uninstall()
