"""Leases: which node decides a partition's bids, and until when (CLUSTER.md).

A partition's row in `partition_leases` (sql/0022) names its owner, the epoch of
that ownership and when the lease lapses, by PostgreSQL's clock. Taking a lease
sets the owner and adds one to the epoch, in one guarded UPDATE that succeeds
only when nobody holds it (no owner, or the lease lapsed) or the taker already
does (a node back under its own NODE_ID). Renewing pushes `lease_until` on, and
only for the epoch the node took: an owner whose epoch moved on has lost the
partition, whatever its own clock says. The epoch is the fencing token of every
write the owner makes for the partition's auctions.

The node's side of a lease is `Lease.valid_until`, on the node's monotonic clock:
the moment it stops deciding for the partition unless a renewal has come back.
It is counted from when the renewal (or take) was *sent*, never from its answer:

    valid_until = sent_at + ttl - margin

PostgreSQL's `now()` in that statement is no earlier than `sent_at` (the
statement starts after it was sent), so the lease in the table runs at least
until `sent_at + ttl` by the database's clock, and nobody can take it before. The
node stops `margin` earlier than that. The margin covers what the two clocks may
disagree on over one TTL (their rates; a node's monotonic clock and the
database's wall clock drift by far less than 1 % between NTP corrections) and one
ledger batch already on its way when the node stops (whose write the fencing
refuses in any case, if a new owner took over). `margin_ms` is a fifth of the TTL,
at least 100 ms: 600 ms at the default 3 s, renewals every TTL / 3 = 1 s.

Balancing (`plan_balance`): each live node wants `P // live` partitions, the
first `P % live` of them by id one more (no two differ by more than one); one
holding more hands the surplus over (the caller drains each
first: no new bids, the writer flushed, then `release`), one holding fewer takes
free ones. Liveness is the `nodes` table, renewed with the leases.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import msgspec

from engine.errors import Fenced

DEFAULT_LEASE_TTL_MS = 3000
MIN_MARGIN_MS = 100


def margin_ms(ttl_ms: int) -> int:
    """How long before its lease could lapse a node stops deciding (module doc)."""
    return max(ttl_ms // 5, MIN_MARGIN_MS)


def renew_every_s(ttl_ms: int) -> float:
    """How often a node renews its leases and its own row: three times a TTL."""
    return ttl_ms / 3 / 1000


@dataclass(frozen=True, slots=True)
class Lease:
    """A partition this node holds: its epoch (the fencing token of its writes)
    and, on this node's monotonic clock, when it stops deciding for it."""

    partition: int
    epoch: int
    valid_until: float
    #: On a take: since when (ms, the database's clock) nobody could take the
    #: partition's bids — its release, or its previous holder's last renewal
    #: (it may have died right after) — None when it was never held.
    interrupted_since_ms: int | None = None

    def valid(self, now: float) -> bool:
        return now < self.valid_until


class NodeRow(msgspec.Struct, frozen=True):
    id: str
    url: str
    last_seen_ms: int
    alive: bool  # its row renewed within the TTL, by the database's clock
    shares_rooms: bool = False  # fans room events out through Redis (REDIS_URL)


class PartitionRow(msgspec.Struct, frozen=True):
    id: int
    owner: str | None
    epoch: int
    lease_until_ms: int | None  # None: never leased
    free: bool  # no owner, or the lease lapsed: anyone may take it


class ClusterView(msgspec.Struct, frozen=True):
    """The lease table as the database has it now."""

    nodes: list[NodeRow]
    partitions: list[PartitionRow]
    now_ms: int = 0  # the database's clock when read
    read_at: float = 0.0  # this node's monotonic clock when read

    def next_lapse(self, me: str) -> float | None:
        """When (this node's monotonic clock) the earliest lease held by another
        node lapses unless renewed; None: none held by another."""
        ends = [
            row.lease_until_ms
            for row in self.partitions
            if not row.free and row.owner != me and row.lease_until_ms is not None
        ]
        return self.read_at + (min(ends) - self.now_ms) / 1000 if ends else None

    def live_nodes(self) -> list[str]:
        return [node.id for node in self.nodes if node.alive]


_HEARTBEAT = """
INSERT INTO nodes (id, url, alive_until, shares_rooms)
VALUES ($1, $2, now() + $3 * interval '1 ms', $4)
ON CONFLICT (id) DO UPDATE
SET url = EXCLUDED.url, alive_until = EXCLUDED.alive_until, last_seen = now(),
    shares_rooms = EXCLUDED.shares_rooms
"""
_LEAVE = "DELETE FROM nodes WHERE id = $1"
_TAKE = """
UPDATE partition_leases AS l
SET owner = $2, epoch = l.epoch + 1, lease_until = now() + $3 * interval '1 ms',
    taken_at = now()
FROM (SELECT id, owner, lease_until FROM partition_leases WHERE id = $1 FOR UPDATE) AS before
WHERE l.id = before.id AND (before.owner IS NULL OR before.lease_until < now() OR before.owner = $2)
RETURNING l.epoch, before.owner AS previous_owner,
          CASE WHEN before.lease_until = '-infinity' THEN NULL
               ELSE (extract(epoch FROM before.lease_until) * 1000)::bigint END AS previous_until_ms
"""
_RENEW = """
UPDATE partition_leases AS l SET lease_until = now() + $4 * interval '1 ms'
FROM unnest($1::int[], $2::bigint[]) AS held(id, epoch)
WHERE l.id = held.id AND l.epoch = held.epoch AND l.owner = $3
RETURNING l.id
"""
_RELEASE = """
UPDATE partition_leases SET owner = NULL, lease_until = now()
WHERE id = $1 AND epoch = $2 AND owner = $3
"""
_VIEW_NODES = """
SELECT id, url, (extract(epoch FROM last_seen) * 1000)::bigint AS last_seen_ms,
       alive_until > now() AS alive, shares_rooms
FROM nodes ORDER BY id
"""
_NOW_MS = "SELECT (extract(epoch FROM now()) * 1000)::bigint"
_VIEW_PARTITIONS = """
SELECT id, owner, epoch,
       CASE WHEN lease_until = '-infinity' THEN NULL
            ELSE (extract(epoch FROM lease_until) * 1000)::bigint END AS lease_until_ms,
       owner IS NULL OR lease_until < now() AS free
FROM partition_leases ORDER BY id
"""


class LeaseTable:
    """One node's reads and writes of the lease table."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        node_id: str,
        url: str,
        ttl_ms: int = DEFAULT_LEASE_TTL_MS,
        *,
        shares_rooms: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self.node_id = node_id
        self.url = url
        self.ttl_ms = ttl_ms
        self.shares_rooms = shares_rooms
        self._monotonic = monotonic

    def _valid_until(self, sent_at: float) -> float:
        return sent_at + (self.ttl_ms - margin_ms(self.ttl_ms)) / 1000

    async def heartbeat(self) -> None:
        """This node's row: live for another TTL."""
        await self._pool.execute(_HEARTBEAT, self.node_id, self.url, self.ttl_ms, self.shares_rooms)

    async def leave(self) -> None:
        """This node's row gone (a clean stop, after its partitions were handed over)."""
        await self._pool.execute(_LEAVE, self.node_id)

    async def take(self, partition: int) -> Lease | None:
        """The partition's lease under a new epoch, if nobody else holds it."""
        sent_at = self._monotonic()
        row = await self._pool.fetchrow(_TAKE, partition, self.node_id, self.ttl_ms)
        if row is None:
            return None
        until = row["previous_until_ms"]
        since = None
        if until is not None:  # released at `until`; else held, last renewed a TTL before
            since = until if row["previous_owner"] is None else until - self.ttl_ms
        return Lease(partition, row["epoch"], self._valid_until(sent_at), since)

    async def renew(self, leases: Sequence[Lease]) -> dict[int, Lease]:
        """Renew `leases` in one statement; the renewed ones, by partition. One
        missing from the answer is lost: its epoch moved on (somebody took it)."""
        if not leases:
            return {}
        sent_at = self._monotonic()
        rows = await self._pool.fetch(
            _RENEW,
            [lease.partition for lease in leases],
            [lease.epoch for lease in leases],
            self.node_id,
            self.ttl_ms,
        )
        renewed = {row["id"] for row in rows}
        valid_until = self._valid_until(sent_at)
        return {
            lease.partition: Lease(lease.partition, lease.epoch, valid_until)
            for lease in leases
            if lease.partition in renewed
        }

    async def release(self, lease: Lease) -> bool:
        """Hand the partition over (free at once, same epoch: the taker adds one).
        False: it was not ours any more."""
        status: str = await self._pool.execute(_RELEASE, lease.partition, lease.epoch, self.node_id)
        return status == "UPDATE 1"

    async def view(self) -> ClusterView:
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            nodes = await conn.fetch(_VIEW_NODES)
            partitions = await conn.fetch(_VIEW_PARTITIONS)
            now_ms = await conn.fetchval(_NOW_MS)
        return ClusterView(
            nodes=[NodeRow(**dict(row)) for row in nodes],
            partitions=[PartitionRow(**dict(row)) for row in partitions],
            now_ms=now_ms,
            read_at=self._monotonic(),
        )


_FENCE = """
SELECT epoch FROM partition_leases WHERE id = $1 AND owner = $2 AND epoch = $3 FOR SHARE
"""


@dataclass(frozen=True, slots=True)
class Fence:
    """What a write outside the ledger writer (end processing, settlement
    payments, defaults, a void) checks in its own transaction: the partition's
    lease is still this node's, under the epoch it took it with. The lease row
    stays locked FOR SHARE until the write commits, so no other node takes the
    partition meanwhile."""

    partition: int
    node: str
    epoch: int  # -1: this node holds no lease on it (every check fails)

    async def check(self, conn: asyncpg.Connection) -> None:
        """Raise Fenced unless the lease is still this node's, under this epoch."""
        if await conn.fetchval(_FENCE, self.partition, self.node, self.epoch) is None:
            raise Fenced(
                f"partition {self.partition} is no longer node {self.node}'s under epoch"
                f" {self.epoch}"
            )


@dataclass(frozen=True, slots=True)
class Balance:
    """What one node should do now: partitions to hand over, free ones to take."""

    release: list[int]
    take: list[int]


def plan_balance(me: str, view: ClusterView) -> Balance:
    """Toward an even split among the live nodes (this one counted live): each
    holds `P // live` partitions, and the first `P % live` of them in id order
    one more, so that no two differ by more than one. The surplus handed over is
    the highest-numbered. The free partitions are dealt, lowest first, to the
    nodes short of their share in id order, each its shortfall: every node
    reading the same table plans the same deal, so when a node dies the others
    take its partitions in one round instead of racing for the same ones (a
    race still lost, on a table read a moment apart, costs one UPDATE and a
    plan again)."""
    live = sorted(set(view.live_nodes()) | {me})
    share, extra = divmod(len(view.partitions), len(live))
    targets = {node: share + (n < extra) for n, node in enumerate(live)}
    held = Counter(row.owner for row in view.partitions if not row.free)
    mine = sorted(row.id for row in view.partitions if row.owner == me and not row.free)
    if len(mine) > targets[me]:
        return Balance(release=mine[targets[me] :][::-1], take=[])
    free = sorted(row.id for row in view.partitions if row.free)
    dealt = 0
    for node in live:
        short = max(0, targets[node] - held[node])
        if node == me:
            return Balance(release=[], take=free[dealt : dealt + short])
        dealt += short
    raise AssertionError("this node is among the live ones")


def owners(view: ClusterView) -> Mapping[int, str | None]:
    """Each partition's owner while its lease holds (None: free)."""
    return {row.id: None if row.free else row.owner for row in view.partitions}
