"""Room events over a Redis Cluster: sharded pub/sub (SPUBLISH / SSUBSCRIBE).

A sharded channel lives on the master serving its slot (CRC16 of its name, as
for a key), so each master carries only its share of the rooms' traffic, and a
master lost stops only its own channels. (Classic PUBLISH on a cluster is sent
to every node over the cluster bus, and there is no pattern form of SSUBSCRIBE:
a node subscribes to each room it has sockets in.)

Channels stay one per auction, `auction:{id}` as on a single server, with no
hash tag: ids hash evenly over the 16384 slots, so the rooms spread over every
master, and a node hears exactly the rooms it serves (a channel per partition
would bring it every event of the partition; hash-tagging a partition's rooms
together would put a busy partition on one master).

This node holds two connections to each master: one publishing (SPUBLISH,
pipelined, from the master's own queue, so a master down holds up only its own
channels) and one subscribed (SSUBSCRIBE for this node's rooms, read by a task
that blocks on it, so an event is passed on the moment it arrives; redis-py's
ClusterPubSub instead polls each node's connection in turn with a timeout).

Failover: a master's connection lost, a MOVED, or a SUNSUBSCRIBE this node did
not ask for (its slot went elsewhere) marks that master failed; the slot map is
read again (CLUSTER SLOTS, from any node that answers; also every few seconds
anyway, for a change no connection noticed), failed masters are connected
afresh, and every followed channel is subscribed where its slot now lives —
retried with a short backoff until the cluster has promoted a replica. What
waits to be published stays queued (bounded) and goes to the slot's new master;
a copy that had arrived before the failure comes twice, and rooms drop it by
seq. What was published while this node was not subscribed is a seq gap for
its watchers, which `resume` fills.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

from web.redis_link import Address, Backoff, RedisLink

logger = logging.getLogger(__name__)

SLOTS = 16384
BATCH = 500  # SPUBLISHes in one pipeline
#: How long `follow` waits for a subscription to be confirmed before the socket
#: reads its snapshot anyway (a gap it may then see is resumed like any other).
CONFIRM_WAIT_S = 0.5
#: Re-reading the slot map costs one small reply: during a failover, ask often.
REROUTE_MAX_S = 0.25
#: The slot map is read again this often even when nothing failed: a master cut
#: off without a reset (or slots moved by an operator) shows no error here.
RECHECK_S = 5.0

Outbox = collections.deque[tuple[str, bytes]]


class SlotMap:
    """Which master serves each slot, and every node named (CLUSTER SLOTS)."""

    def __init__(self, reply: list[Any], asked: Address) -> None:
        owners: list[Address | None] = [None] * SLOTS
        nodes: set[Address] = set()
        for start, end, master, *replicas in reply:
            owner = _address(master, asked)
            owners[start : end + 1] = [owner] * (end + 1 - start)
            nodes.add(owner)
            nodes.update(_address(replica, asked) for replica in replicas)
        self._owners = owners
        self.masters = {owner for owner in owners if owner is not None}
        self.nodes = nodes

    def owner(self, channel: str) -> Address | None:
        return self._owners[key_slot(channel.encode())]


def _address(node: list[Any], asked: Address) -> Address:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    return (host or asked[0], int(node[1]))  # empty: the node does not know its own


def _by_slot(channels: Iterable[str]) -> list[list[str]]:
    """One SSUBSCRIBE may only name channels of one slot."""
    slot_of = {channel: key_slot(channel.encode()) for channel in channels}
    ordered = sorted(slot_of, key=slot_of.__getitem__)
    return [list(group) for _, group in itertools.groupby(ordered, key=slot_of.__getitem__)]


class ShardedPubSub:
    """Publish to and follow `auction:{id}` channels on a Redis Cluster."""

    def __init__(
        self,
        link: RedisLink,
        receive: Callable[[bytes], None],
        lost: Callable[[int], None],
        *,
        resubscribed: Callable[[str], None] = lambda channel: None,
        following: Iterable[str] = (),
        max_pending: int = 10_000,
        retry_max_s: float = REROUTE_MAX_S,
    ) -> None:
        self._link = link
        self.receive = receive
        self._lost = lost
        self._resubscribed = resubscribed
        #: Channels heard before, being subscribed again on another master.
        self._again: set[str] = set()
        self._max_pending = max_pending
        self._retry_max_s = retry_max_s
        self._map: SlotMap | None = None
        self._masters: dict[Address, _Master] = {}
        self._unrouted: Outbox = collections.deque()  # before the first slot map
        #: Channels followed -> done once Redis has confirmed the subscription.
        self._wanted: dict[str, asyncio.Future[None]] = {}
        self._trouble = asyncio.Event()
        self._failing: set[Address] = set()  # warned about, not yet back
        self._disposing: set[asyncio.Task[None]] = set()
        for channel in following:
            self._wanted[channel] = asyncio.get_running_loop().create_future()

    # ---- what the bus asks -----------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> None:
        master = self._master_of(channel)
        queue = master.outbox if master is not None else self._unrouted
        if len(queue) >= self._max_pending:
            queue.popleft()
            self._lost(1)
        queue.append((channel, data))
        if master is not None:
            master.wake()

    async def follow(self, channel: str) -> None:
        """Hear `channel` until `unfollow`; returns once Redis has confirmed the
        subscription, or after CONFIRM_WAIT_S (its master down or failing over)."""
        confirmed = self._wanted.get(channel)
        if confirmed is None:
            confirmed = self._wanted[channel] = asyncio.get_running_loop().create_future()
            master = self._master_of(channel)
            if master is not None:
                master.subscribe([channel])
        if not confirmed.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONFIRM_WAIT_S):
                    await asyncio.shield(confirmed)

    def unfollow(self, channel: str) -> None:
        self._again.discard(channel)
        confirmed = self._wanted.pop(channel, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)  # whoever still waits on it stops waiting
        for master in self._masters.values():
            master.unsubscribe(channel)

    async def run(self) -> None:
        """Until cancelled: keep one live master per slot range and every followed
        channel subscribed on its master."""
        backoff = Backoff(self._retry_max_s)
        while True:
            try:
                slots = await self._read_slots()
            except (RedisError, OSError) as exc:
                delay = backoff.next()
                logger.warning(
                    "redis bus: no node of the Redis Cluster answers (%s); serving local "
                    "sockets only, asking again in %.1fs",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self._adopt(slots)
            adopted = time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK_S):
                    await self._trouble.wait()
            if time.monotonic() - adopted >= RECHECK_S:
                backoff.reset()
            if self._trouble.is_set():
                await asyncio.sleep(backoff.next())  # the cluster may be failing over
                self._trouble.clear()

    async def close(self) -> None:
        for master in self._masters.values():
            self._retire(master)
        self._masters = {}
        while self._disposing:
            await asyncio.gather(*self._disposing, return_exceptions=True)

    # ---- what the masters report --------------------------------------------------

    def confirmed(self, channel: str) -> None:
        waiting = self._wanted.get(channel)
        if waiting is None:
            return
        if not waiting.done():
            waiting.set_result(None)
        if channel in self._again:  # subscribed again (a master lost, a slot moved)
            self._again.discard(channel)
            self._resubscribed(channel)  # events published meanwhile may be missing

    def failed(self, master: _Master, why: str, error: BaseException | None) -> None:
        if master.address not in self._failing:
            self._failing.add(master.address)
            logger.warning(
                "redis bus: master %s:%d %s (%s); its rooms wait for the cluster to say "
                "where their slots are",
                *master.address,
                why,
                error,
            )
        self._trouble.set()

    def working(self, master: _Master) -> None:
        if master.address in self._failing:
            self._failing.discard(master.address)
            logger.info("redis bus: master %s:%d serving again", *master.address)

    # ---- the slot map --------------------------------------------------------------------

    def _master_of(self, channel: str) -> _Master | None:
        slots = self._map
        if slots is None:
            return None
        address = slots.owner(channel)
        return self._masters.get(address) if address is not None else None

    async def _read_slots(self) -> SlotMap:
        """CLUSTER SLOTS from the first node that answers: working masters first."""
        known = self._map.nodes if self._map is not None else set()
        working = [a for a, m in self._masters.items() if not m.failed]
        error: BaseException = RedisError("no node of the cluster is known")
        for address in dict.fromkeys([*working, *sorted(known), self._link.seed]):
            client = self._link.node(address)
            try:
                return SlotMap(await client.cluster("SLOTS"), address)
            except (RedisError, OSError) as exc:
                error = exc
            finally:
                await client.aclose()
        raise error

    def _adopt(self, slots: SlotMap) -> None:
        """Take a new slot map: connect new and failed masters, let go of the
        ones no longer masters, and route what waits and what is followed."""
        self._map = slots
        previous, self._masters = self._masters, {}
        for address in sorted(slots.masters):
            master = previous.pop(address, None)
            if master is None or master.failed:
                outbox: Outbox = master.outbox if master is not None else collections.deque()
                if master is not None:
                    self._retire(master)
                master = _Master(address, self._link.node(address), outbox, self)
                master.start()
            self._masters[address] = master
        for master in previous.values():
            if master.address in self._failing:
                self._failing.discard(master.address)
                logger.info("redis bus: %s:%d is no master now; its slots moved", *master.address)
            self._retire(master)
            self._reroute(master.outbox)
        self._reroute(self._unrouted)
        self._resubscribe()

    def _reroute(self, queue: Outbox) -> None:
        waiting = list(queue)
        queue.clear()
        for channel, data in waiting:
            self.publish(channel, data)

    def _resubscribe(self) -> None:
        loop = asyncio.get_running_loop()
        to_subscribe: dict[_Master, list[str]] = {}
        for channel, confirmed in list(self._wanted.items()):
            master = self._master_of(channel)
            if master is None or channel in master.channels:
                continue
            if confirmed.done():
                self._wanted[channel] = loop.create_future()  # new sockets wait for this one
                self._again.add(channel)
            to_subscribe.setdefault(master, []).append(channel)
        for master, channels in to_subscribe.items():
            master.subscribe(channels)
        for master in self._masters.values():
            # Held where its slot no longer is: that node has dropped it (or will).
            master.forget([c for c in master.channels if self._master_of(c) is not master])

    def _retire(self, master: _Master) -> None:
        master.close()
        task = asyncio.create_task(master.dispose())
        self._disposing.add(task)
        task.add_done_callback(self._disposing.discard)


class _Master:
    """This node's two connections to one master: publishing and subscribed."""

    def __init__(self, address: Address, client: Redis, outbox: Outbox, hub: ShardedPubSub) -> None:
        self.address = address
        self.outbox = outbox
        self.channels: set[str] = set()  # SSUBSCRIBE sent on this connection
        self.failed = False
        self._client = client
        self._pubsub = client.pubsub()
        self._hub = hub
        self._leaving: collections.Counter[str] = collections.Counter()  # asked, not confirmed
        self._connected = False
        self._closed = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._commands: set[asyncio.Task[None]] = set()  # subscription changes on their way

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name=f"redis-bus-listen-{self.address[1]}"),
            asyncio.create_task(self._publish(), name=f"redis-bus-publish-{self.address[1]}"),
        ]
        if self.outbox:
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def subscribe(self, channels: list[str]) -> None:
        new = [channel for channel in channels if channel not in self.channels]
        self.channels.update(new)
        if new and self._connected:
            self._send(self._ssubscribe(new))

    def unsubscribe(self, channel: str) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        if self._connected:
            self._leaving[channel] += 1
            self._send(self._pubsub.sunsubscribe(channel))

    def forget(self, channels: list[str]) -> None:
        self.channels.difference_update(channels)

    def close(self) -> None:
        self._closed = True
        for task in [*self._tasks, *self._commands]:
            task.cancel()

    async def dispose(self) -> None:
        """After `close`: wait for its tasks to end, then close its connections."""
        for task in [*self._tasks, *self._commands]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    # ---- subscribed ------------------------------------------------------------------

    async def _listen(self) -> None:
        try:
            await self._pubsub.ping()  # connects: replies come to the loop below
            self._connected = True
            await self._ssubscribe(list(self.channels))
            while True:
                message = await self._pubsub.get_message(timeout=None)
                if message is not None and not self._take(message):
                    return
        except (RedisError, OSError) as exc:
            self._fail("lost this node's subscriptions", exc)

    def _take(self, message: dict[str, Any]) -> bool:
        """Act on one message; False once the master is to be replaced."""
        kind = message["type"]
        if kind == "smessage":
            self._hub.receive(message["data"])
        elif kind == "ssubscribe":
            self._hub.working(self)
            channel = message["channel"].decode()
            # Not while a SUNSUBSCRIBE sent after it is pending: that one wins.
            if channel in self.channels and channel not in self._leaving:
                self._hub.confirmed(channel)
        elif kind == "sunsubscribe":
            channel = message["channel"].decode()
            if channel in self._leaving:
                self._leaving[channel] -= 1
                if not self._leaving[channel]:
                    del self._leaving[channel]
            elif channel in self.channels:
                self._fail("dropped a channel (its slot moved)", None)
                return False
        return True

    async def _ssubscribe(self, channels: list[str]) -> None:
        for group in _by_slot(channels):
            await self._pubsub.ssubscribe(*group)

    def _send(self, command: Awaitable[Any]) -> None:
        """A subscription change, written while `_listen` reads the replies."""
        task = asyncio.create_task(self._command(command))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _command(self, command: Awaitable[Any]) -> None:
        try:
            await command
        except (RedisError, OSError) as exc:
            self._fail("refused a subscription change", exc)

    # ---- publishing --------------------------------------------------------------------

    async def _publish(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.outbox:
                batch = [self.outbox.popleft() for _ in range(min(BATCH, len(self.outbox)))]
                sent = False
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for channel, data in batch:
                            pipe.spublish(channel, data)
                        await pipe.execute()
                    sent = True
                    self._hub.working(self)
                except (RedisError, OSError) as exc:
                    self._fail("refused or lost a publication", exc)
                    return
                finally:
                    if not sent:
                        self._requeue(batch)

    def _requeue(self, batch: list[tuple[str, bytes]]) -> None:
        """Not (known to be) published: first in line again, or, once this master
        is let go of, to wherever the slot map now routes it."""
        if self._closed:
            for channel, data in batch:
                self._hub.publish(channel, data)
        else:
            self.outbox.extendleft(reversed(batch))

    def _fail(self, why: str, error: BaseException | None) -> None:
        if not self.failed and not self._closed:
            self.failed = True
            self._hub.failed(self, why, error)
