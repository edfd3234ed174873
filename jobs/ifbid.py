"""If-bid deadlines, on the engine's clock (RULES.md "If-bid": no answer in time →
`unsold`).

Each run expires every open if-bid of this node's partitions whose turn's
deadline has passed: one transaction each under the auction's row lock, taken
only while the if-bid is still open and past its deadline (engine/ifbid.py),
so it happens once across runs, restarts and nodes; the fence keeps a node
that lost the partition from writing it (engine/decisions.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.decisions import SellerDecisions
from engine.ifbid import Step

#: A deadline is honoured within this (a step after it is refused at once anyway).
INTERVAL_S = 5.0


@dataclass
class IfBidDeadlines:
    decisions: SellerDecisions

    async def run(self) -> list[Step]:
        return await self.decisions.expire_due()
