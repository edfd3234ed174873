"""Reconciliation lists the transactions pending for over 15 minutes, hands them to
the platform's checker, and counts them; on a driven clock."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from engine.clock import ManualClock, to_datetime
from engine.money import kobo_to_naira
from engine.reconcile import STUCK_AFTER_MS, LogChecker, PendingTransaction, Reconciler
from jobs.reconcile import Reconciliation
from tests.factories import create_user

NOW = 1_800_000_000_000
MINUTE = 60_000


class Checker:
    def __init__(self) -> None:
        self.seen: list[list[PendingTransaction]] = []

    async def check(self, transactions: Sequence[PendingTransaction]) -> None:
        self.seen.append(list(transactions))


async def transaction(pool: Any, user: uuid.UUID, status: str, age_ms: int) -> uuid.UUID:
    transaction_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO transactions (user_id, type, amount, status, paystack_ref, created_at)"
        " VALUES ($1, 'deposit', $2, $3, $4, $5) RETURNING id",
        user,
        kobo_to_naira(123_456),
        status,
        f"psk-{status}-{age_ms}",
        to_datetime(NOW - age_ms),
    )
    return transaction_id


def metric(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None
    return value


async def test_only_transactions_pending_over_15_minutes_are_listed(pool: Any) -> None:
    user = await create_user(pool)
    stuck = await transaction(pool, user, "pending", STUCK_AFTER_MS + MINUTE)
    await transaction(pool, user, "pending", STUCK_AFTER_MS - MINUTE)  # not yet
    await transaction(pool, user, "completed", 60 * MINUTE)
    await transaction(pool, user, "failed", 60 * MINUTE)
    checker = Checker()

    found = await Reconciler(pool, checker).run(NOW)

    assert [t.id for t in found] == [stuck]
    assert checker.seen == [found]
    (only,) = found
    assert (only.type, only.amount_kobo, only.age_ms) == ("deposit", 123_456, 16 * MINUTE)
    assert only.paystack_ref == f"psk-pending-{STUCK_AFTER_MS + MINUTE}"


async def test_exactly_15_minutes_is_not_yet_stuck(pool: Any) -> None:
    user = await create_user(pool)
    await transaction(pool, user, "pending", STUCK_AFTER_MS)
    assert await Reconciler(pool, Checker()).run(NOW) == []


async def test_the_counter_counts_each_stuck_transaction_once(pool: Any) -> None:
    user = await create_user(pool)
    first = await transaction(pool, user, "pending", STUCK_AFTER_MS + MINUTE)
    reconciler = Reconciler(pool, Checker())
    before = metric("auction_reconciliation_pending_total")

    await reconciler.run(NOW)
    await reconciler.run(NOW + MINUTE)  # still stuck: not counted again
    assert metric("auction_reconciliation_pending") == 1
    await transaction(pool, user, "pending", STUCK_AFTER_MS + 2 * MINUTE)
    await pool.execute("UPDATE transactions SET status = 'completed' WHERE id = $1", first)
    await reconciler.run(NOW + MINUTE)

    assert metric("auction_reconciliation_pending_total") == before + 2
    assert metric("auction_reconciliation_pending") == 1


async def test_the_default_checker_logs_each_at_warning(
    pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    user = await create_user(pool)
    stuck = await transaction(pool, user, "pending", 20 * MINUTE)
    caplog.set_level(logging.WARNING, logger="engine.reconcile")

    await Reconciler(pool).run(NOW)

    (record,) = [r for r in caplog.records if r.name == "engine.reconcile"]
    assert record.levelno == logging.WARNING
    assert str(stuck) in record.getMessage() and "20 min" in record.getMessage()
    assert isinstance(Reconciler(pool).checker, LogChecker)


async def test_the_job_reads_the_engines_clock(pool: Any) -> None:
    user = await create_user(pool)
    await transaction(pool, user, "pending", 0)  # written "now"
    clock = ManualClock(NOW)
    job = Reconciliation(Reconciler(pool, Checker()), clock)

    early = await job.run()
    clock.advance(STUCK_AFTER_MS + 1)
    late = await job.run()

    assert (len(early), len(late)) == (0, 1)
