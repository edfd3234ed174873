"""Rate limits: fixed windows counted in-process, or in Redis when configured
so that every node shares them (a single server or a Redis Cluster alike: each
count is one key, touched by one script, so no command spans two slots)."""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from redis.commands.core import AsyncScript
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


# INCR and set the expiry on the first hit, in one round trip.
_HIT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {hits, redis.call('PTTL', KEYS[1])}
"""


#: After Redis fails, counts stay local this long before Redis is asked again: an
#: outage (or a cluster failing a master over) then costs one failed call a
#: second, not one per request.
LOCAL_AFTER_FAILURE_S = 1.0


class RedisRateLimiter:
    """Counts in Redis, shared by every node; falls back to local counts if Redis fails."""

    def __init__(self, link: RedisLink, fallback: RateLimiter | None = None) -> None:
        self._link = link
        self._script: AsyncScript | None = None
        self._fallback = fallback or LocalRateLimiter()
        self._local_until = 0.0

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        if time.monotonic() < self._local_until:
            return await self._fallback.hit(key, limit, window_s)
        window_ms = math.ceil(window_s * 1000)
        try:
            script = self._script or await self._register()
            hits, ttl_ms = await script(keys=[f"ratelimit:{key}"], args=[window_ms])
        except (RedisError, OSError) as exc:
            # Redis down: keep limiting, per node, rather than not at all.
            logger.warning("rate limits counted locally: Redis failed (%s)", exc)
            self._local_until = time.monotonic() + LOCAL_AFTER_FAILURE_S
            return await self._fallback.hit(key, limit, window_s)
        if int(hits) <= limit:
            return None
        return max(int(ttl_ms), 1) / 1000

    async def _register(self) -> AsyncScript:
        redis = await self._link.connect()
        self._script = redis.register_script(_HIT)
        return self._script
