"""Rate limits: fixed windows counted in-process, or shared through Redis when
configured so that every node's hits count toward one limit (a single server or
a Redis Cluster alike: each count is one key, so no command spans two slots)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from redis.exceptions import RedisError

from web.redis_link import RedisLink

logger = logging.getLogger(__name__)


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Count one hit; None while within `limit` per window, else seconds to wait."""
        ...


def ip_key(address: str | None) -> str:
    """The per-IP limit's key for a peer's address. IPv4 counts per address. IPv6
    counts per /64: that is the block a subscriber is given, and inside it a client
    can take a new address for every request. An IPv4-mapped IPv6 address (how a
    dual-stack listener sees an IPv4 peer) counts as the IPv4 address it is."""
    if not address:
        return "ip:unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"ip:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"
    return f"ip:{ip}"


class LocalRateLimiter:
    """Counts in this process (single node), in fixed windows aligned on the clock.

    Each window length has a table of its own holding the current window's counts
    only: a new window replaces it whole, so no request sweeps the table, and one
    window length's turnover never touches another's counts. A table full at
    `max_keys` forgets the key hit least recently to take a new one, so memory
    stays bounded, every hit costs O(1), and a key that keeps hitting (the one a
    limit is for) keeps its count through a flood of new keys.
    """

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tables: dict[float, _Window] = {}  # window length (s) -> its current window
        self._max_keys = max_keys  # per window length
        self._clock = clock

    def __len__(self) -> int:
        """The keys counted now, over every window length."""
        return sum(len(table.counts) for table in self._tables.values())

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        now = self._clock()
        window = int(now // window_s)
        table = self._tables.get(window_s)
        if table is None or table.number != window:
            table = self._tables[window_s] = _Window(window)
        if table.count(key, self._max_keys) <= limit:
            return None
        return max((window + 1) * window_s - now, 0.001)


class _Window:
    """One window's counts, least recently hit key first."""

    __slots__ = ("counts", "number")

    def __init__(self, number: int) -> None:
        self.number = number
        self.counts: OrderedDict[str, int] = OrderedDict()

    def count(self, key: str, max_keys: int) -> int:
        counts = self.counts
        hits = counts.get(key)
        if hits is None:
            if len(counts) >= max_keys:
                counts.popitem(last=False)
            hits = 0
        else:
            counts.move_to_end(key)
        counts[key] = hits + 1
        return hits + 1


#: The most a node waits before its hits reach Redis (and it learns the others'):
#: nodes' counts meet within about this much plus a round trip.
SYNC_S = 0.02

#: After Redis fails, counts stay local this long before Redis is asked again: an
#: outage (or a cluster failing a master over) then costs one failed call a
#: second, not one per request.
LOCAL_AFTER_FAILURE_S = 1.0

#: A window's key outlives the window by this much, for nodes whose clocks lag.
_KEY_MARGIN_MS = 2_000


class RedisRateLimiter:
    """Shared by every node through Redis, decided without waiting on it.

    Each node counts its own hits in clock-aligned windows, as the local limiter
    does, and decides every hit at once against its own count plus the other
    nodes' as last heard. Behind the requests, at most every SYNC_S, one pipeline
    adds each key's new hits to the window's key in Redis (INCRBY) and reads the
    total back, which is how a node hears the others. So no request waits on a
    round trip (a bid's acknowledgement never does), a client talking to one node
    is limited exactly, and one spreading requests over several nodes can pass
    the limit by what the other nodes took since this node last sent its own
    hits of that key (a node hears the others when it syncs).
    While Redis fails, each node goes on limiting with what it knows.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        max_keys: int = 100_000,
        sync_s: float = SYNC_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._link = link
        self._max_keys = max_keys  # per window length
        self._sync_s = sync_s
        self._clock = clock  # wall time: every node's windows start together
        self._tables: dict[float, _SharedWindow] = {}
        self._syncing: asyncio.Task[None] | None = None
        self._failed_at = -math.inf

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        now = self._clock()
        number = int(now // window_s)
        table = self._tables.get(window_s)
        if table is None or table.number != number:
            table = self._tables[window_s] = _SharedWindow(number)
        if table.count(key, self._max_keys) <= limit:
            hits = None
        else:
            hits = max((number + 1) * window_s - now, 0.001)
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.create_task(self._sync(), name="rate-limit-sync")
        return hits

    async def aclose(self) -> None:
        if self._syncing is not None:
            self._syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncing

    async def flush(self) -> bool:
        """Send every key's unsent hits now and hear the totals; False when there
        were none (or Redis failed)."""
        sending = [
            (window_s, table, key, entry, entry.local - entry.sent)
            for window_s, table in self._tables.items()
            for key, entry in table.unsent()
        ]
        if not sending:
            return False
        try:
            redis = await self._link.connect()
            async with redis.pipeline(transaction=False) as pipe:
                for window_s, table, key, _, delta in sending:
                    name = f"ratelimit:{key}:{window_s:g}:{table.number}"
                    pipe.incrby(name, delta)
                    pipe.pexpire(name, math.ceil(window_s * 1000) + _KEY_MARGIN_MS)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            # Redis down: keep limiting, per node, rather than not at all. The
            # hits not sent go with their key's next sync.
            logger.warning("rate limits counted locally: Redis failed (%s)", exc)
            self._failed_at = time.monotonic()
            return False
        for (_, _, _, entry, delta), total in zip(sending, replies[::2], strict=True):
            entry.sent += delta
            entry.others = int(total) - entry.sent
        return True

    async def _sync(self) -> None:
        """Behind the requests: a flush every SYNC_S while there are hits to send."""
        while True:
            await asyncio.sleep(self._sync_s)
            if time.monotonic() - self._failed_at < LOCAL_AFTER_FAILURE_S:
                continue
            if not await self.flush():
                return


class _Shared:
    """One key's hits in one window: this node's, how many of them Redis has, and
    the other nodes' as Redis last said."""

    __slots__ = ("local", "others", "sent")

    def __init__(self) -> None:
        self.local = 0
        self.sent = 0
        self.others = 0


class _SharedWindow:
    """One window's shared counts, least recently hit key first; keys with hits
    Redis has not had are remembered apart, so a sync does not walk the table."""

    __slots__ = ("_unsent", "counts", "number")

    def __init__(self, number: int) -> None:
        self.number = number
        self.counts: OrderedDict[str, _Shared] = OrderedDict()
        self._unsent: dict[str, _Shared] = {}

    def count(self, key: str, max_keys: int) -> int:
        counts = self.counts
        entry = counts.get(key)
        if entry is None:
            if len(counts) >= max_keys:
                forgotten, _ = counts.popitem(last=False)
                self._unsent.pop(forgotten, None)
            entry = counts[key] = _Shared()
        else:
            counts.move_to_end(key)
        entry.local += 1
        self._unsent[key] = entry
        return entry.local + entry.others

    def unsent(self) -> list[tuple[str, _Shared]]:
        """The keys hit since the last call, taken off the list."""
        unsent, self._unsent = self._unsent, {}
        return list(unsent.items())
