"""Admin actions on drafts on several nodes (engine/admin.py, engine/leases.py):
approving or rejecting a draft writes under its partition's lease, so a node
that lost the partition writes nothing (CLUSTER.md, "Fencing": admin actions
take the same guard as bids)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from engine.admin import Actor, Admin
from engine.clock import ManualClock
from engine.errors import Fenced
from engine.sequencer import Sequencer
from jobs.lifecycle import Lifecycle
from tests.factories import create_auction, create_user
from tests.partition_helpers import id_in
from tests.test_allowances import two_nodes

PARTITION = 3  # the first node's (tests/test_allowances.py: ONE = 0–3)


async def draft_in_partition(pool: Any) -> tuple[uuid.UUID, Actor]:
    seller = await create_user(pool, role="dealer")
    manager = await create_user(pool, role="manager")
    start = time.time_ns() // 1_000_000 + 3_600_000
    auction = await create_auction(
        pool,
        seller=seller,
        start_ms=start,
        end_ms=start + 3_600_000,
        status="draft",
        auction_id=id_in(PARTITION),
    )
    return auction, Actor(manager, "checked the listing", None)


def admin_on(pool: Any, node: Sequencer) -> Admin:
    clock = ManualClock(time.time_ns() // 1_000_000)
    return Admin(pool, node, clock, Lifecycle(pool, node, clock))


async def snapshot(pool: Any, auction: uuid.UUID) -> tuple[Any, ...]:
    row = await pool.fetchrow(
        "SELECT a.status, a.last_seq, v.status AS vehicle FROM auctions a"
        " JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1",
        auction,
    )
    audits = await pool.fetchval(
        "SELECT count(*) FROM admin_audit_log WHERE target_id = $1", auction
    )
    return (*row, audits)


@pytest.mark.parametrize("action", ["approve", "reject"])
async def test_a_node_that_lost_the_partition_cannot_act_on_its_draft(
    pool: Any, action: str
) -> None:
    auction, actor = await draft_in_partition(pool)
    async with two_nodes(pool) as (first, _):
        await pool.execute(
            "UPDATE partition_leases SET owner = 'z', epoch = epoch + 1 WHERE id = $1", PARTITION
        )
        before = await snapshot(pool, auction)
        admin = admin_on(pool, first)

        with pytest.raises(Fenced):
            await getattr(admin, action)(auction, actor)

        assert await snapshot(pool, auction) == before
    assert before[0] == "draft"


async def test_the_partitions_owner_approves_its_draft(pool: Any) -> None:
    auction, actor = await draft_in_partition(pool)
    async with two_nodes(pool) as (first, _):
        body = await admin_on(pool, first).approve(auction, actor)

    assert body.status == "scheduled"
