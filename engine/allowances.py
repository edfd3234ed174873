"""Buying power across nodes: escrow allowances (CLUSTER.md, "Buying power
across partitions"; O'Neil's escrow transactions).

A bidder is not partitioned: they bid on auctions whose partitions different
nodes own. Their balance is therefore split into allowances, one per partition
where they bid (`allowances`, sql/0025), and the partition's owner decides
against the allowance it holds (the core's pool for that partition) with no
round trip. The invariant that keeps every node's decisions together within the
balance:

    for every user, at every commit: SUM(allowances) <= wallet_balance, and
    for every partition: what its auctions expose <= its allowance.

The first is checked under the user's row lock wherever an allowance grows
(`Escrow.widen`) or the balance falls (a withdrawal, a deposit hold); the
second holds because the core decides within its pool's allowance, which is
never more than the ledger's: an allowance grows in the ledger first and in the
core after the COMMIT, and shrinks in the core first and in the ledger after.
Every change is made by the partition's owner under its lease (engine.leases.Fence),
and a partition's rows move with it: the next owner loads them with its auctions.

A bid that the pool cannot back asks the ledger for more (`widen`): the free
balance (balance less every allowance) is granted, sized generously (twice the
need, or half the free balance) so a bidder active in one partition asks about
once; when the free balance is short,
this node's other pools give back what they do not expose, then the other
nodes are asked to do the same, and the grant is tried once more. Only then is
the bid refused for buying power, as RULES.md's rule 8 says it must be.
Allowances not used for a while go back to the free balance (`release_idle`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Protocol

import asyncpg

import bidcore
from engine import metrics
from engine.errors import LEDGER_DOWN, Fenced, LedgerUnavailable
from engine.leases import Fence
from engine.locks import KeyedLocks
from engine.money import deposit_bp, naira_to_kobo
from engine.partitions import partition_of
from engine.registry import NO_HANDLE, Registry

logger = logging.getLogger(__name__)

#: A grant asks for this many times what the bid needs, so the next few bids
#: of a bidder active in one partition need no round trip ...
HEADROOM = 2
#: ... and for at least this share of the free balance, so such a bidder asks
#: about once, not once per doubling of their exposure; a second partition
#: still finds the rest free (and a third half of that).
GRANT_SHARE = 2

#: An allowance not widened for this long gives back what it does not expose.
IDLE_S = 30.0

#: Why an idle give-back waits for its next run.
_RETRIED_LATER: tuple[type[BaseException], ...] = (*LEDGER_DOWN, Fenced, LedgerUnavailable)

_LOCK_USER = "SELECT wallet_balance FROM users WHERE id = $1 FOR UPDATE"
_OF_USER = "SELECT partition, amount_kobo FROM allowances WHERE user_id = $1"
_SET = """
INSERT INTO allowances (user_id, partition, amount_kobo, epoch) VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id, partition)
DO UPDATE SET amount_kobo = EXCLUDED.amount_kobo, epoch = EXCLUDED.epoch, updated_at = now()
"""
# Shrinks only (LEAST): a give-back never raises an allowance, whatever ran between.
_SHRINK = """
UPDATE allowances AS a SET amount_kobo = t.target, epoch = t.epoch, updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[])
     AS t(user_id, partition, target, epoch)
WHERE a.user_id = t.user_id AND a.partition = t.partition AND a.amount_kobo > t.target
"""
_FORGET_ALL = "DELETE FROM allowances"
_DROP_EMPTY = "DELETE FROM allowances WHERE user_id = ANY($1::uuid[]) AND amount_kobo = 0"
_ONE = "SELECT amount_kobo FROM allowances WHERE user_id = $1 AND partition = $2"
_ALLOTTED = "SELECT COALESCE(SUM(amount_kobo), 0) FROM allowances WHERE user_id = $1"
_OF_PARTITIONS = """
SELECT user_id, partition, amount_kobo FROM allowances WHERE partition = ANY($1::int[])
"""
_SPEND = """
UPDATE allowances SET amount_kobo = GREATEST(amount_kobo - $3, 0), updated_at = now()
WHERE user_id = $1 AND partition = $2
"""


# The bidder's leads the ledger holds on open auctions, with the maximum behind each.
_LEADS = """
SELECT b.amount, a.deposit_pct,
       (SELECT mb.max_amount FROM max_bids mb WHERE mb.auction_id = a.id AND mb.user_id = $1
        ORDER BY mb.position DESC LIMIT 1) AS max_amount
FROM bids b JOIN auctions a ON a.id = b.auction_id
WHERE b.user_id = $1 AND b.is_winning AND NOT b.is_platform_bid
  AND a.status IN ('live', 'ended')
"""


# The bidder's bids awaiting a seller's decision: what they are bound to (RULES.md, if-bid).
_DECISIONS = """
SELECT d.bidder_amount, a.deposit_pct
FROM if_bids d JOIN auctions a ON a.id = d.auction_id
WHERE d.bidder_id = $1 AND d.state = 'open'
"""


async def exposed_in_ledger(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    """The deposits of every lead of the bidder the ledger holds, whichever node
    decided it (a leader with an active maximum: deposit(max)), and of every bid
    of theirs awaiting a seller's decision."""
    total = 0
    for row in await conn.fetch(_LEADS, user_id):
        amount = naira_to_kobo(row["amount"])
        if row["max_amount"] is not None:
            amount = max(amount, naira_to_kobo(row["max_amount"]))
        total += bidcore.deposit(amount, deposit_bp(row["deposit_pct"]))
    for row in await conn.fetch(_DECISIONS, user_id):
        bound = naira_to_kobo(row["bidder_amount"])
        total += bidcore.deposit(bound, deposit_bp(row["deposit_pct"]))
    return total


async def allotted(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    """What the user's allowances take of their balance (none: a node alone)."""
    total: int = await conn.fetchval(_ALLOTTED, user_id)
    return total


async def forget_all(pool: asyncpg.Pool) -> None:
    """A node alone for good (no Redis: none may join it) weighs whole balances;
    allowances left by an earlier run with peers would only hold money back."""
    await pool.execute(_FORGET_ALL)


async def spend(conn: asyncpg.Connection, user_id: uuid.UUID, partition: int, kobo: int) -> None:
    """A deposit the partition's allowance backed leaves the wallet as a hold:
    the allowance falls with the balance (in the hold's transaction)."""
    await conn.execute(_SPEND, user_id, partition, kobo)


async def of_partitions(
    conn: asyncpg.Connection, partitions: Sequence[int]
) -> list[tuple[uuid.UUID, int, int]]:
    """(user, partition, allowance) of every allowance in these partitions."""
    rows = await conn.fetch(_OF_PARTITIONS, list(partitions))
    return [(row["user_id"], row["partition"], row["amount_kobo"]) for row in rows]


def into_core(registry: Registry, rows: Iterable[tuple[uuid.UUID, int, int]]) -> None:
    """Allowances read from the ledger into the core's pools. A user the core
    does not know yet is read when they bid (their pool then starts at 0, less
    than the ledger's: the safe side, and `widen` takes the ledger's value)."""
    for user_id, partition, amount in rows:
        handle = registry.user_handle(user_id)
        if handle != NO_HANDLE:
            registry.core.set_allowance(handle, partition, amount)


class Peers(Protocol):
    async def release_allowances(self, user_id: uuid.UUID) -> None: ...


class Escrow:
    """One node's side of the allowances: widen a pool for a bid, give back idle
    ones. Every change of one user's pools on this node runs under that user's
    lock here, so the core and the ledger change in the order described above."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Callable[[], Registry],
        fence: Callable[[int], Fence],
        partitions: Callable[[], tuple[int, frozenset[int]]],
        written: Callable[[], Awaitable[None]],
    ) -> None:
        self._pool = pool
        self._written = written  # every bid decided so far durable (or failed)
        self._registry = registry
        self._fence = fence
        self._partitions = partitions
        self._peers: Peers | None = None
        self._locks = KeyedLocks()
        #: (user, partition) → when its pool was last widened (time.monotonic()).
        self._widened: dict[tuple[uuid.UUID, int], float] = {}

    def reach(self, peers: Peers) -> None:
        self._peers = peers

    def pool_of(self, auction_id: uuid.UUID) -> int:
        count, _ = self._partitions()
        return partition_of(auction_id, count)

    async def widen(
        self, auction_id: uuid.UUID, user_id: uuid.UUID, deposit_kobo: int
    ) -> bool | None:
        """Grow the user's allowance in the auction's partition so that it backs
        `deposit_kobo` more than the pool exposes besides this auction; True
        when it does now (decide again), False when the balance cannot, None
        when the ledger could not say (away, or the partition's lease is lost)."""
        try:
            return await self._widen(auction_id, user_id, deposit_kobo)
        except _RETRIED_LATER as err:
            logger.warning("user %s: allowance not widened: %r", user_id, err)
            return None

    async def _widen(
        self, auction_id: uuid.UUID, user_id: uuid.UUID, deposit_kobo: int
    ) -> bool | None:
        partition = self.pool_of(auction_id)
        granted = await self._try_grant(auction_id, user_id, partition, deposit_kobo, here=True)
        if granted is None and self._peers is not None:
            # Not under the user's lock: a peer asking this node the same at the
            # same moment must not wait on it.
            await self._peers.release_allowances(user_id)
            granted = await self._try_grant(
                auction_id, user_id, partition, deposit_kobo, here=False
            )
        if not granted and partition not in self._partitions()[1]:
            return None  # the partition moved meanwhile: its new owner decides
        metrics.ALLOWANCE_GRANTS.labels("granted" if granted else "short").inc()
        return bool(granted)

    async def _try_grant(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        partition: int,
        deposit_kobo: int,
        *,
        here: bool,
    ) -> bool | None:
        """Under the user's lock: grant what the bid needs now (with `here`, after
        this node's other pools give back when the free balance is short). True:
        in the core now; False: cannot say or moved; None: the balance is short."""
        async with self._locks.hold(user_id):
            need = self._need(auction_id, user_id, partition, deposit_kobo)
            if need is None:
                return False
            granted = await self._grant(user_id, partition, need)
            if (
                granted is None
                and here
                and await self._give_back(user_id, "grant", exclude=partition)
            ):
                granted = await self._grant(user_id, partition, need)
            if granted is None:
                return None
            return self._apply(user_id, partition, granted)

    def _need(
        self, auction_id: uuid.UUID, user_id: uuid.UUID, partition: int, deposit_kobo: int
    ) -> int | None:
        """The allowance the pool needs for this bid (None: the core cannot say)."""
        registry = self._registry()
        user, auction = registry.user_handle(user_id), registry.auction_handle(auction_id)
        if user == NO_HANDLE or auction == NO_HANDLE:
            return None
        try:
            _, exposure = registry.core.allowance(user, partition)
            here = registry.core.exposed_here(auction, user)
        except (bidcore.UnknownAuction, bidcore.UnknownUser):
            return None
        return exposure - here + deposit_kobo

    async def _grant(
        self, user_id: uuid.UUID, partition: int, need: int, *, exact: bool = False
    ) -> int | None:
        """In one transaction under the user's row lock: the partition's allowance
        grows within the free balance toward the larger of HEADROOM × need and
        the free balance's GRANT_SHARE (with `exact`, to `need`). The new
        allowance (at least `need`), or None when the free balance cannot reach
        `need`."""
        async with self._pool.acquire() as conn, conn.transaction():
            fence = self._fence(partition)
            await fence.check(conn)
            balance = await conn.fetchval(_LOCK_USER, user_id)
            if balance is None:
                return None
            rows = await conn.fetch(_OF_USER, user_id)
            held = {row["partition"]: row["amount_kobo"] for row in rows}
            current = held.pop(partition, 0)
            room = naira_to_kobo(balance) - sum(held.values())
            if room < need:
                return None
            wanted = need if exact else max(HEADROOM * need, room // GRANT_SHARE)
            granted: int = max(current, min(room, wanted))
            if granted != current:
                await conn.execute(_SET, user_id, partition, granted, fence.epoch)
        return granted

    def _apply(self, user_id: uuid.UUID, partition: int, granted: int) -> bool:
        """The committed allowance into the core, unless the partition left meanwhile."""
        _, held = self._partitions()
        registry = self._registry()
        handle = registry.user_handle(user_id)
        if partition not in held or handle == NO_HANDLE:
            return False
        registry.core.set_allowance(handle, partition, granted)
        self._widened[(user_id, partition)] = time.monotonic()
        return True

    async def _give_back(
        self,
        user_id: uuid.UUID,
        why: str,
        *,
        exclude: int | None = None,
        unused_since: float | None = None,
    ) -> int:
        """This node's pools of the user give back what they do not expose (but
        `exclude`, and with `unused_since` only pools not widened since then):
        cut in the core at once, then — once every bid decided before the cut
        is durable, so that the ledger exposes no more than the core does — in
        the ledger. How many pools gave some back."""
        _, held = self._partitions()
        registry = self._registry()
        handle = registry.user_handle(user_id)
        if handle == NO_HANDLE:
            return 0
        cut = []
        for partition in sorted(held - {exclude} if exclude is not None else held):
            if (
                unused_since is not None
                and self._widened.get((user_id, partition), 0.0) >= unused_since
            ):
                continue
            allowance, exposure = registry.core.allowance(handle, partition)
            if allowance > exposure:
                registry.core.set_allowance(handle, partition, exposure)
                cut.append((partition, exposure, self._fence(partition)))
        if not cut:
            return 0
        await self._written()
        async with self._pool.acquire() as conn, conn.transaction():
            for _, _, fence in cut:
                await fence.check(conn)
            await conn.execute(
                _SHRINK,
                [user_id] * len(cut),
                [partition for partition, _, _ in cut],
                [target for _, target, _ in cut],
                [fence.epoch for _, _, fence in cut],
            )
            await conn.execute(_DROP_EMPTY, [user_id])
        metrics.ALLOWANCE_RELEASES.labels(why).inc(len(cut))
        for partition, _, _ in cut:
            self._widened.pop((user_id, partition), None)
        return len(cut)

    async def release(self, user_id: uuid.UUID) -> None:
        """Give back whatever this node's pools of the user do not expose (a
        withdrawal, or another node's grant, needs it). A ledger away or a lease
        lost gives nothing back: the asker then finds the balance short."""
        async with self._locks.hold(user_id):
            try:
                await self._give_back(user_id, "asked")
            except _RETRIED_LATER as err:
                logger.warning("user %s: allowances not given back: %r", user_id, err)

    async def release_idle(self, idle_s: float = IDLE_S) -> int:
        """Give back the unexposed part of every pool not widened for `idle_s`;
        how many pools gave some back (a ledger away or a lease lost: the next
        run tries again)."""
        try:
            return await self._release_idle(idle_s)
        except _RETRIED_LATER as err:
            logger.warning("idle allowances not given back this time: %r", err)
            return 0

    async def _release_idle(self, idle_s: float) -> int:
        before = time.monotonic() - idle_s
        stale = sorted({user for (user, _), at in self._widened.items() if at < before})
        released = 0
        for user_id in stale:
            async with self._locks.hold(user_id):
                released += await self._give_back(user_id, "idle", unused_since=before)
        return released

    async def cover(self, exposed: dict[tuple[uuid.UUID, int], int]) -> None:
        """Leads just loaded that expose more in a partition than its allowance
        (written by a node that weighed whole balances: one alone, before it had
        peers) get an allowance for what they expose, before the free balance
        can go to another partition. Bids cover them too (`widen` asks for the
        pool's whole exposure); this closes the gap until the first."""
        registry = self._registry()
        for (user_id, partition), owed in sorted(exposed.items()):
            handle = registry.user_handle(user_id)
            if handle == NO_HANDLE or registry.core.allowance(handle, partition)[0] >= owed:
                continue
            async with self._locks.hold(user_id):
                try:
                    granted = await self._grant(user_id, partition, owed, exact=True)
                except _RETRIED_LATER as err:
                    logger.warning("user %s: loaded leads not allotted yet: %r", user_id, err)
                    continue
                if granted is None:
                    logger.error(
                        "user %s: the leads loaded in partition %d expose %d kobo, more than "
                        "the free balance",
                        user_id,
                        partition,
                        owed,
                    )
                    continue
                self._apply(user_id, partition, granted)

    def loaded(self, rows: Iterable[tuple[uuid.UUID, int, int]]) -> None:
        """Allowances loaded with their partitions: watched for idleness from now."""
        now = time.monotonic()
        for user_id, partition, _ in rows:
            self._widened.setdefault((user_id, partition), now)

    def dropped(self, partitions: Iterable[int]) -> None:
        """Partitions gone from this node: their pools leave the core."""
        gone = frozenset(partitions)
        registry = self._registry()
        for partition in gone:
            registry.core.close_pool(partition)
        for key in [k for k in self._widened if k[1] in gone]:
            del self._widened[key]

    @contextlib.asynccontextmanager
    async def ending(self, auction_id: uuid.UUID, user_id: uuid.UUID) -> AsyncIterator[None]:
        """Around end processing that takes the winner's deposit from the wallet
        (and, in its transaction, from this allowance in the ledger: `spend`):
        the pool's allowance falls in the core first by all the auction exposes,
        and afterwards the core takes the ledger's value, whatever happened."""
        partition = self.pool_of(auction_id)
        async with self._locks.hold(user_id):
            self._set_aside(auction_id, user_id, partition)
            try:
                yield
            finally:
                await self._resync(user_id, partition)

    def _set_aside(self, auction_id: uuid.UUID, user_id: uuid.UUID, partition: int) -> None:
        registry = self._registry()
        user, auction = registry.user_handle(user_id), registry.auction_handle(auction_id)
        if user == NO_HANDLE or auction == NO_HANDLE:
            return
        exposed = registry.core.exposed_here(auction, user)
        allowance, _ = registry.core.allowance(user, partition)
        registry.core.set_allowance(user, partition, max(allowance - exposed, 0))

    async def _resync(self, user_id: uuid.UUID, partition: int) -> None:
        """The core's pool takes the ledger's allowance (if the ledger cannot say,
        the core keeps its lower one: the safe side)."""
        try:
            amount = await self._pool.fetchval(_ONE, user_id, partition)
        except LEDGER_DOWN as err:
            logger.warning(
                "user %s: allowance not read back (%r): the core keeps less", user_id, err
            )
            return
        _, held = self._partitions()
        registry = self._registry()
        handle = registry.user_handle(user_id)
        if partition in held and handle != NO_HANDLE:
            registry.core.set_allowance(handle, partition, amount or 0)
