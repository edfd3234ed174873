"""The event bus between the process that commits a room event and every
process serving sockets of that room.

`LocalBus` (one node, the default) hands each message straight to this
process's rooms. `RedisBus` (REDIS_URL set) does the same and also publishes
it to the other nodes. On a single Redis server every node hears every room
anyway, so the messages go out in batches (what accumulated since the last
publish, one `PUBLISH` on the channel `rooms` each: a batch of commits costs one
Redis message to send and one to read on every node, not one per auction). On
a Redis Cluster (web/redis_link.py tells them apart) the channels are sharded
(SPUBLISH / SSUBSCRIBE, web/sharded_pubsub.py), and a node subscribes to a
room's channel while it has sockets in the room (`follow` / `unfollow`). The
bus carries room events already encoded (JSON bytes, written to sockets as
they are), so no node decodes or encodes them again.

Redis failing never stops a node: local fan-out happens first and does not
wait on Redis; the listener and publisher reconnect with a backoff (on a
cluster, to wherever a failover moved the channel), and what other nodes missed
meanwhile shows up to their clients as a `seq` gap, which `resume` turns into
a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol

import msgspec
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from web.redis_link import Backoff, RedisLink
from web.sharded_pubsub import ShardedPubSub

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "auction:"  # a room's sharded channel on a cluster
#: The one channel of a single server, carrying batches of messages.
BATCH_CHANNEL = "rooms"
#: At most this many messages in one batch.
BATCH_MAX = 200

BUS_MESSAGES_LOST = Counter(
    "auction_bus_messages_lost_total",
    "Room messages not published to Redis (Redis down or too far behind); "
    "other nodes' clients recover them by resume/snapshot.",
)


class BusMessage(msgspec.Struct, frozen=True, array_like=True):
    """What one commit (or one state change) means for one auction's room."""

    origin: str  # the node that published it (it has already delivered it itself)
    auction_id: str
    committed_ns: int  # wall clock at the commit, for the fan-out latency histogram
    events: list[tuple[int, bytes]]  # (seq, encoded room event), in seq order
    private: list[tuple[list[str], bytes]]  # (user ids, encoded message) for those bidders alone
    #: The auction's seq as a node that just took it rebuilt it from the ledger:
    #: a room behind it missed events the previous owner never published.
    seq_now: int | None = None


Deliver = Callable[[BusMessage], None]
#: Told of rooms whose events may have been published while this node was not
#: subscribed (auction ids; None: every room).
Missed = Callable[[Iterable[str] | None], None]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(BusMessage).decode
_decode_batch = msgspec.msgpack.Decoder(list[BusMessage]).decode


def _encode_batch(encoded: list[bytes]) -> bytes:
    """Messages already encoded, as one msgpack array (no second encoding)."""
    return _encode([msgspec.Raw(data) for data in encoded])


class Bus(Protocol):
    node_id: str

    def publish(self, message: BusMessage) -> None:
        """Deliver to this node's rooms now, and to every other node's."""
        ...

    async def follow(self, auction_id: str) -> None:
        """A socket of this room opens here: other nodes' events for it must reach
        this node from now on (returns once they will, or after a short bound)."""
        ...

    def unfollow(self, auction_id: str) -> None:
        """That socket closed."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalBus:
    """One node: messages go straight to this process's rooms."""

    def __init__(self, deliver: Deliver) -> None:
        self.node_id = uuid.uuid4().hex
        self._deliver = deliver

    def publish(self, message: BusMessage) -> None:
        self._deliver(message)

    async def follow(self, auction_id: str) -> None:
        return None

    def unfollow(self, auction_id: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisBus:
    """Many nodes: Redis pub/sub carries each message to the others."""

    def __init__(
        self,
        link: RedisLink,
        deliver: Deliver,
        *,
        missed: Missed | None = None,
        max_pending: int = 10_000,
        retry_max_s: float = 2.0,
    ) -> None:
        self.node_id = uuid.uuid4().hex
        self._deliver = deliver
        self._missed = missed or (lambda auction_ids: None)
        # The link's clients do not retry inside redis-py: a failure shows at once,
        # and this bus backs off and reconnects by itself (local sockets never wait
        # on Redis either way).
        self._link = link
        self._sharded: ShardedPubSub | None = None  # on a Redis Cluster
        self._following: dict[str, int] = {}  # auction id -> sockets here
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._max_pending = max_pending
        self._wake = asyncio.Event()
        self._retry_max_s = retry_max_s
        self._tasks: list[asyncio.Task[None]] = []
        #: Set while the pattern subscription is live (tests and /readyz may look).
        self.listening = asyncio.Event()

    def publish(self, message: BusMessage) -> None:
        self._deliver(message)
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            BUS_MESSAGES_LOST.inc()
        self._pending.append((CHANNEL_PREFIX + message.auction_id, _encode(message)))
        self._wake.set()

    async def follow(self, auction_id: str) -> None:
        self._following[auction_id] = self._following.get(auction_id, 0) + 1
        if self._sharded is not None:
            await self._sharded.follow(CHANNEL_PREFIX + auction_id)

    def unfollow(self, auction_id: str) -> None:
        left = self._following.pop(auction_id, 1) - 1
        if left:
            self._following[auction_id] = left
        elif self._sharded is not None:
            self._sharded.unfollow(CHANNEL_PREFIX + auction_id)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._connect(), name="redis-bus-connect")]

    async def close(self) -> None:
        # The tasks list grows once connected: cancel until none is left running.
        while self._tasks:
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._sharded is not None:
            await self._sharded.close()

    async def _connect(self) -> None:
        """Once Redis has said what it is: pattern pub/sub on a server, sharded
        channels on a cluster. Messages published meanwhile wait (bounded)."""
        backoff = Backoff(self._retry_max_s)
        while True:
            try:
                redis = await self._link.connect()
                break
            except (RedisError, OSError) as exc:
                delay = backoff.next()
                logger.warning(
                    "redis bus: Redis does not answer (%s); serving local sockets only, "
                    "trying again in %.1fs",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        if isinstance(redis, Redis):
            self._tasks += [
                asyncio.create_task(self._listen(redis), name="redis-bus-listen"),
                asyncio.create_task(self._publish(redis), name="redis-bus-publish"),
            ]
        else:
            sharded = self._sharded = ShardedPubSub(
                self._link,
                self._receive,
                BUS_MESSAGES_LOST.inc,
                resubscribed=lambda channel: self._missed([channel.removeprefix(CHANNEL_PREFIX)]),
                following=[CHANNEL_PREFIX + auction_id for auction_id in self._following],
                max_pending=self._max_pending,
            )
            self._tasks += [
                asyncio.create_task(sharded.run(), name="redis-bus-cluster"),
                asyncio.create_task(self._forward(sharded), name="redis-bus-publish"),
            ]

    async def _listen(self, redis: Redis) -> None:
        backoff = Backoff(self._retry_max_s)
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(BATCH_CHANNEL)
                self.listening.set()
                if backoff.failures:
                    logger.info("redis bus: listening again")
                    self._missed(None)  # what was published meanwhile never came
                backoff.reset()
                while True:
                    raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if raw is not None and raw.get("type") == "message":
                        self._receive_batch(raw["data"])
            except (RedisError, OSError) as exc:
                self.listening.clear()
                delay = backoff.next()
                logger.warning(
                    "redis bus: listener lost Redis (%s); serving local sockets only, "
                    "reconnecting in %.1fs",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _receive(self, data: bytes) -> None:
        try:
            message = _decode(data)
        except msgspec.DecodeError:
            logger.error("redis bus: dropped a message that is not a BusMessage")
            return
        if message.origin != self.node_id:
            self._deliver(message)

    def _receive_batch(self, data: bytes) -> None:
        try:
            messages = _decode_batch(data)
        except msgspec.DecodeError:
            logger.error("redis bus: dropped a batch that is not a list of BusMessages")
            return
        for message in messages:
            if message.origin != self.node_id:
                self._deliver(message)

    async def _forward(self, sharded: ShardedPubSub) -> None:
        """On a cluster: each message to its channel's master (sharded_pubsub)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                sharded.publish(*self._pending.popleft())

    async def _publish(self, redis: Redis) -> None:
        backoff = Backoff(self._retry_max_s)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                count = min(BATCH_MAX, len(self._pending))
                batch = [self._pending.popleft()[1] for _ in range(count)]
                try:
                    await redis.publish(BATCH_CHANNEL, _encode_batch(batch))
                    backoff.reset()
                except (RedisError, OSError) as exc:
                    # Local sockets already have these; other nodes will see a gap.
                    BUS_MESSAGES_LOST.inc(len(batch))
                    delay = backoff.next()
                    logger.warning(
                        "redis bus: %d messages not published to other nodes (%s); "
                        "publishing again in %.1fs",
                        len(batch),
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
