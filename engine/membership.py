"""A node's leases over its life (CLUSTER.md, engine/leases.py).

At start the node registers and takes the free partitions its share allows
(`start`, before its core is built, so that recovery loads just those). Then,
every TTL / 3 (`tick`):

1. it renews its own row and every lease it holds, in one statement each (and
   it ticks early, right after another node's lease lapses, when that comes
   before its next renewal: a dead node's partitions are taken at once);
2. a lease the renewal did not return (its epoch moved on: another node took the
   partition) or whose deadline passed on the node's own clock (no renewal came
   back in time: the database or the network is away) is dropped at once — the
   sequencer stops deciding for that partition before anyone else may;
3. a partition leased but not decided (a rebuild that found its lease expired,
   though nobody took it) is loaded again;
4. it reads the table and follows the balancing plan: a surplus partition is
   handed over (no new bids for it, the writer flushed, then released: the
   taker finds everything written), a free one is taken and its auctions loaded
   (only while the ledger takes writes, so a rebuild never races a load).

On a planned stop (SIGTERM: `hand_over_all`, before the sockets close) the node
stops deciding for every partition, flushes its writer and releases every
lease: the others take them at their next tick, without waiting for a lapse,
while this node drains (bids reaching it are forwarded to the new owners).
`leave` then deletes the node's row (and releases what is left, if anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Protocol

from engine import metrics
from engine.errors import UNREACHABLE_OR_REFUSED, ConfigError
from engine.leases import ClusterView, Fence, Lease, LeaseTable, plan_balance, renew_every_s
from engine.partitions import partition_of
from engine.recovery import Held

logger = logging.getLogger(__name__)

#: After another node's lease lapses by the database's clock, wait this long more
#: (the clocks of reading and of taking differ by a round trip).
LAPSE_MARGIN_S = 0.02
#: A tick plans again when another node was quicker to some free partition, so
#: what neither took is not left for the next tick.
TAKE_ROUNDS = 3


class Decider(Protocol):
    """What the membership needs of the sequencer."""

    @property
    def available(self) -> bool: ...

    @property
    def partitions(self) -> Held | None: ...

    def decide_until(self, deadline: float) -> None: ...

    def fence_with(self, fences: Callable[[int], Fence]) -> None: ...

    async def adopt_partitions(
        self, partitions: set[int], interrupted: Mapping[int, int] | None = None
    ) -> object: ...

    def drop_partitions(self, partitions: set[int]) -> object: ...

    async def adopt_strays(self) -> object: ...

    async def flush(self) -> None: ...


class Membership:
    def __init__(
        self,
        table: LeaseTable,
        partitions: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.count = partitions
        self.leases: dict[int, Lease] = {}
        #: Since when (ms) each partition taken at start could not take bids: the
        #: outage rule for the core built on them (Sequencer.open(interrupted=)).
        self.interrupted: dict[int, int] = {}
        self._monotonic = monotonic
        #: The lease table as last read (by a tick, or `read_view`).
        self.view: ClusterView | None = None
        self._decider: Decider | None = None
        self._task: asyncio.Task[None] | None = None
        metrics.PARTITIONS_OWNED.set_function(lambda: len(self.leases))
        metrics.PARTITIONS_TOTAL.set(partitions)

    @property
    def node_id(self) -> str:
        return self.table.node_id

    def held(self) -> Held:
        # A node that shares rooms may have peers: its bidders' buying power is
        # split into allowances; one without Redis is alone by construction.
        return Held(self.count, frozenset(self.leases), self.node_id, self.table.shares_rooms)

    async def start(self) -> Held:
        """Register, take back what the table says is this node's (a restart under
        the same NODE_ID: at once, under new epochs, fencing the old process), and
        take this node's share of the free partitions."""
        await self.table.heartbeat()
        view = await self.table.view()
        await self._refuse_without_shared_rooms(view)
        for row in view.partitions:
            if row.owner == self.node_id and (lease := await self.table.take(row.id)):
                self._took(lease)
        plan = plan_balance(self.node_id, await self.read_view())
        for partition in plan.take:
            lease = await self.table.take(partition)
            if lease is not None:
                self._took(lease)
                metrics.PARTITION_MOVES.labels("taken").inc()
        logger.info("node %s holds %d of %d partitions", self.node_id, len(self.leases), self.count)
        return self.held()

    def _took(self, lease: Lease) -> None:
        self.leases[lease.partition] = lease
        if lease.interrupted_since_ms is not None:
            self.interrupted[lease.partition] = lease.interrupted_since_ms

    async def _refuse_without_shared_rooms(self, view: ClusterView) -> None:
        """Several nodes need Redis on every one (a node without it would show its
        watchers only the events of the auctions it decides): refuse to start
        beside a live node when this one or that one lacks it."""
        others = [n for n in view.nodes if n.alive and n.id != self.node_id]
        lacking = [n.id for n in others if not n.shares_rooms]
        if others and (lacking or not self.table.shares_rooms):
            await self.table.leave()
            names = ", ".join(n.id for n in others)
            why = (
                f"this node has no REDIS_URL, and node(s) {names} are live on this database"
                if not self.table.shares_rooms
                else f"node(s) {', '.join(lacking)} are live on this database without REDIS_URL"
            )
            raise ConfigError(
                f"several nodes need Redis to share their rooms: {why}. Give every node the "
                "same REDIS_URL (or run one node alone)."
            )

    def fence(self, auction_id: uuid.UUID) -> Fence:
        """The check a write outside the ledger writer makes for this auction."""
        return self.fence_partition(partition_of(auction_id, self.count))

    def fence_partition(self, partition: int) -> Fence:
        """The check a write for this partition makes (its lease, under its epoch)."""
        lease = self.leases.get(partition)
        return Fence(partition, self.node_id, lease.epoch if lease is not None else -1)

    async def read_view(self) -> ClusterView:
        """The lease table now (kept as `view`)."""
        self.view = await self.table.view()
        return self.view

    def attach(self, decider: Decider) -> None:
        """Start ticking for `decider` (the sequencer built on `start`'s partitions)."""
        self._decider = decider
        decider.fence_with(self.fence_partition)
        self._tell(decider)
        self._task = asyncio.create_task(self._run(), name="membership")

    def _tell(self, decider: Decider) -> None:
        """The decider's deadline (on time.monotonic): the earliest of the leases
        held (none held: none)."""
        earliest = min((lease.valid_until for lease in self.leases.values()), default=math.inf)
        decider.decide_until(time.monotonic() + (earliest - self._monotonic()))

    async def _run(self) -> None:
        every = renew_every_s(self.table.ttl_ms)
        while True:
            started = self._monotonic()
            try:
                await self.tick()
            except UNREACHABLE_OR_REFUSED as err:
                logger.warning("lease tick failed: %r", err)
            except Exception:
                logger.exception("lease tick failed")
            await asyncio.sleep(max(0.0, self._next_tick(started + every) - self._monotonic()))

    def _next_tick(self, due: float) -> float:
        """The next tick: a renewal's period after the last, or just after another
        node's lease lapses if that comes first (a live owner renews long before;
        a dead one's partitions are then taken at once, not up to TTL / 3 later)."""
        lapse = self.view.next_lapse(self.node_id) if self.view is not None else None
        return due if lapse is None else min(due, lapse + LAPSE_MARGIN_S)

    async def tick(self) -> None:
        decider = self._decider
        assert decider is not None, "attach() first"
        answered = await self._renew(decider)
        if not answered or not decider.available:
            return  # the database is away, or the core is being rebuilt
        deciding = decider.partitions
        if deciding is not None and (missing := set(self.leases) - deciding.partitions):
            # Leased but not decided: a rebuild found the lease expired (though
            # nobody took it, so the renewal kept it) and left the partition out.
            await decider.adopt_partitions(missing)
        for _ in range(TAKE_ROUNDS):
            plan = plan_balance(self.node_id, await self.read_view())
            for partition in plan.release:
                await self._hand_over(decider, partition)
            if not await self._take(decider, plan.take):
                break  # none lost to a quicker node: the plan is done
        await decider.adopt_strays()

    async def _renew(self, decider: Decider) -> bool:
        """Renew; drop what was lost or lapsed. False: the database did not answer."""
        held = list(self.leases.values())
        try:
            await self.table.heartbeat()
            renewed = await self.table.renew(held)
        except UNREACHABLE_OR_REFUSED as err:
            metrics.LEASE_RENEWALS.labels("failed").inc()
            logger.warning("lease renewal failed: %r", err)
            renewed = None
        if renewed is not None:
            lost = {lease.partition for lease in held} - set(renewed)
            self.leases.update(renewed)
            metrics.LEASE_RENEWALS.labels("renewed").inc()
            if lost:
                logger.error("partitions %s were taken by another node: dropped", sorted(lost))
                self._drop(decider, lost, "lost")
        now = self._monotonic()
        lapsed = {p for p, lease in self.leases.items() if not lease.valid(now)}
        if lapsed:
            logger.error("leases on partitions %s lapsed unrenewed: dropped", sorted(lapsed))
            self._drop(decider, lapsed, "lapsed")
        self._tell(decider)
        return renewed is not None

    def _drop(self, decider: Decider, partitions: set[int], why: str) -> None:
        decider.drop_partitions(partitions)
        for partition in partitions:
            self.leases.pop(partition, None)
        metrics.PARTITION_MOVES.labels(why).inc(len(partitions))

    async def _hand_over(self, decider: Decider, partition: int) -> None:
        lease = self.leases.get(partition)
        if lease is None:
            return
        started = self._monotonic()
        decider.drop_partitions({partition})
        del self.leases[partition]
        await decider.flush()  # what was decided for it is written before the taker reads
        await self.table.release(lease)
        metrics.PARTITION_MOVES.labels("released").inc()
        metrics.PARTITION_MOVE_SECONDS.labels("release").observe(self._monotonic() - started)

    async def _take(self, decider: Decider, partitions: list[int]) -> int:
        """Take these free partitions' leases, then load their auctions in one go;
        how many another node took first."""
        started = self._monotonic()
        taken = []
        for partition in partitions:
            lease = await self.table.take(partition)
            if lease is not None:
                taken.append(lease)
        if not taken:
            return len(partitions)
        interrupted = {
            lease.partition: lease.interrupted_since_ms
            for lease in taken
            if lease.interrupted_since_ms is not None
        }
        try:
            await decider.adopt_partitions({lease.partition for lease in taken}, interrupted)
        except BaseException:
            with contextlib.suppress(*UNREACHABLE_OR_REFUSED):
                for lease in taken:
                    await self.table.release(lease)
            raise
        for lease in taken:
            self.leases[lease.partition] = lease
        self._tell(decider)
        metrics.PARTITION_MOVES.labels("taken").inc(len(taken))
        metrics.PARTITION_MOVE_SECONDS.labels("take").observe(self._monotonic() - started)
        return len(partitions) - len(taken)

    async def hand_over_all(self) -> None:
        """A planned stop (SIGTERM), first of all: stop ticking, stop deciding for
        every partition, flush what was decided, release every lease. The other
        nodes take them at their next tick (TTL / 3), without waiting for a lapse."""
        await self._stop_ticking()
        decider = self._decider
        if decider is None or not self.leases:
            return
        started = self._monotonic()
        held = list(self.leases.values())
        decider.drop_partitions(set(self.leases))
        self.leases.clear()
        self._tell(decider)
        try:
            await decider.flush()
            for lease in held:
                await self.table.release(lease)
        except UNREACHABLE_OR_REFUSED as err:
            logger.warning("could not hand the partitions over (%r): they lapse instead", err)
            return
        metrics.PARTITION_MOVES.labels("released").inc(len(held))
        metrics.PARTITION_MOVE_SECONDS.labels("release").observe(self._monotonic() - started)
        logger.info("handed %d partitions over", len(held))

    async def _stop_ticking(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def leave(self) -> None:
        """After the writer flushed: hand every partition over and deregister."""
        await self._stop_ticking()
        try:
            for lease in list(self.leases.values()):
                await self.table.release(lease)
            self.leases.clear()
            await self.table.leave()
        except UNREACHABLE_OR_REFUSED as err:
            logger.warning("could not hand the partitions over (%r): they lapse instead", err)
