"""Reconciliation every 5 minutes, on the engine's clock (engine/reconcile.py)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.clock import Clock
from engine.reconcile import PendingTransaction, Reconciler

INTERVAL_S = 300


@dataclass
class Reconciliation:
    reconciler: Reconciler
    clock: Clock

    async def run(self) -> list[PendingTransaction]:
        return await self.reconciler.run(self.clock.now_ms())
