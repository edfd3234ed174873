"""Partitions for in-process nodes: auctions placed in a chosen partition,
leases taken as a node's membership would, the fences it would give, and
allowances as a grant leaves them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from engine.leases import Fence, LeaseTable
from engine.partitions import partition_of
from tests.factories import create_auction, create_user

PARTITIONS = 8
HOUR_MS = 3_600_000


def id_in(partition: int) -> uuid.UUID:
    while partition_of(candidate := uuid.uuid4(), PARTITIONS) != partition:
        pass
    return candidate


async def auction_in(pool: Any, partition: int) -> uuid.UUID:
    seller = await create_user(pool, role="dealer")
    start = time.time_ns() // 1_000_000 - 1000
    return await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + HOUR_MS, auction_id=id_in(partition)
    )


NODE = "n1"


async def lease(pool: Any, partitions: set[int], node: str = NODE) -> None:
    table = LeaseTable(pool, node, f"http://{node}")
    await table.heartbeat()
    for partition in partitions:
        assert await table.take(partition) is not None


async def fences(pool: Any, node: str) -> Callable[[int], Fence]:
    """The fences of the leases `node` holds now (as its membership would give)."""
    rows = await pool.fetch("SELECT id, epoch FROM partition_leases WHERE owner = $1", node)
    epochs = {row["id"]: row["epoch"] for row in rows}
    return lambda partition: Fence(partition, node, epochs.get(partition, -1))


async def allow(pool: Any, user: uuid.UUID, amounts: dict[int, int]) -> None:
    """Allowances of the user's buying power, by partition, as a grant leaves them."""
    await pool.executemany(
        "INSERT INTO allowances (user_id, partition, amount_kobo, epoch) VALUES ($1, $2, $3, 0)",
        [(user, partition, amount) for partition, amount in amounts.items()],
    )
