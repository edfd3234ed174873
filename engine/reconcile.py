"""Reconciliation: transactions stuck `pending` are found and handed to the platform.

A `transactions` row is `pending` while an outside party (the payment
provider) has not confirmed it. One still pending 15 minutes after it was
written is stuck: every run lists them, hands them to a `PendingChecker` the
remaining platform fills (it asks the provider and completes or fails them),
and exports two metrics. The engine itself never guesses an outcome.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.clock import to_datetime, to_ms
from engine.money import naira_to_kobo

logger = logging.getLogger(__name__)

STUCK_AFTER_MS = 15 * 60_000

_STUCK = """
SELECT id, user_id, type, amount, reference_id, reference_type, paystack_ref, description,
       created_at
FROM transactions WHERE status = 'pending' AND created_at < $1
ORDER BY created_at, id
"""


@dataclass(frozen=True, slots=True)
class PendingTransaction:
    id: uuid.UUID
    user_id: uuid.UUID
    type: str
    amount_kobo: int
    reference_id: uuid.UUID | None
    reference_type: str | None
    paystack_ref: str | None
    description: str | None
    created_at_ms: int
    age_ms: int


class PendingChecker(Protocol):
    """The platform's side: settle each stuck transaction with the provider."""

    async def check(self, transactions: Sequence[PendingTransaction]) -> None: ...


class LogChecker:
    """The default until the platform plugs its own: say what is stuck, loudly."""

    async def check(self, transactions: Sequence[PendingTransaction]) -> None:
        for t in transactions:
            logger.warning(
                "transaction %s (%s of %d kobo, user %s, provider reference %s) has been "
                "pending for %d min",
                t.id,
                t.type,
                t.amount_kobo,
                t.user_id,
                t.paystack_ref,
                t.age_ms // 60_000,
            )


class _Value:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    def get(self) -> float:
        with self._lock:
            return self._value


class CounterValue(_Value):
    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._value += amount


class GaugeValue(_Value):
    def set(self, value: float) -> None:
        with self._lock:
            self._value = value


#: Stuck transactions found, each counted once while it stays stuck.
PENDING_TOTAL = CounterValue()
#: Stuck transactions at the last run.
PENDING = GaugeValue()


class _ReconciliationCollector:
    """Exports both under the names dashboards use. prometheus_client's own Counter
    named `…_pending_total` reserves `auction_reconciliation_pending` for itself,
    which would refuse the Gauge; one collector serves both (valid in the text
    format /metrics serves)."""

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "auction_reconciliation_pending_total",
            "Transactions found pending for over 15 minutes (each counted once while stuck).",
            value=PENDING_TOTAL.get(),
        )
        yield GaugeMetricFamily(
            "auction_reconciliation_pending",
            "Transactions pending for over 15 minutes at the last reconciliation run.",
            value=PENDING.get(),
        )


REGISTRY.register(_ReconciliationCollector())


class Reconciler:
    def __init__(self, pool: asyncpg.Pool, checker: PendingChecker | None = None) -> None:
        self._pool = pool
        self.checker: PendingChecker = checker or LogChecker()
        self._counted: set[uuid.UUID] = set()

    async def run(self, now_ms: int) -> list[PendingTransaction]:
        """List what has been pending for over 15 min at `now_ms`, count it, hand it over."""
        rows = await self._pool.fetch(_STUCK, to_datetime(now_ms - STUCK_AFTER_MS))
        stuck = [_pending(row, now_ms) for row in rows]
        ids = {t.id for t in stuck}
        PENDING_TOTAL.inc(len(ids - self._counted))
        self._counted = ids  # one resolved and stuck again later counts again
        PENDING.set(len(stuck))
        if stuck:
            await self.checker.check(stuck)
        return stuck


def _pending(row: asyncpg.Record, now_ms: int) -> PendingTransaction:
    created = to_ms(row["created_at"])
    return PendingTransaction(
        id=row["id"],
        user_id=row["user_id"],
        type=row["type"],
        amount_kobo=naira_to_kobo(row["amount"]),
        reference_id=row["reference_id"],
        reference_type=row["reference_type"],
        paystack_ref=row["paystack_ref"],
        description=row["description"],
        created_at_ms=created,
        age_ms=now_ms - created,
    )
