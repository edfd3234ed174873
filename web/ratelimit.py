"""Rate limits: fixed windows counted in-process, or in Redis when configured
so that every node shares them."""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Count one hit; None while within `limit` per window, else seconds to wait."""
        ...


class LocalRateLimiter:
    """Counts in this process (single node)."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window number, hits)
        self._max_keys = max_keys

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        now = time.monotonic()
        window = int(now // window_s)
        current, hits = self._windows.get(key, (window, 0))
        if current != window:
            hits = 0
        hits += 1
        if len(self._windows) >= self._max_keys and key not in self._windows:
            self._forget_old(window_s, now)
        self._windows[key] = (window, hits)
        if hits <= limit:
            return None
        return max((window + 1) * window_s - now, 0.001)

    def _forget_old(self, window_s: float, now: float) -> None:
        window = int(now // window_s)
        self._windows = {k: v for k, v in self._windows.items() if v[0] == window}


# INCR and set the expiry on the first hit, in one round trip.
_HIT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {hits, redis.call('PTTL', KEYS[1])}
"""


class RedisRateLimiter:
    """Counts in Redis, shared by every node; falls back to local counts if Redis fails."""

    def __init__(self, redis: Redis, fallback: RateLimiter | None = None) -> None:
        self._redis = redis
        self._script = redis.register_script(_HIT)
        self._fallback = fallback or LocalRateLimiter()

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        window_ms = math.ceil(window_s * 1000)
        try:
            hits, ttl_ms = await self._script(keys=[f"ratelimit:{key}"], args=[window_ms])
        except (RedisError, OSError) as exc:
            # Redis down: keep limiting, per node, rather than not at all.
            logger.warning("rate limits counted locally: Redis failed (%s)", exc)
            return await self._fallback.hit(key, limit, window_s)
        if int(hits) <= limit:
            return None
        return max(int(ttl_ms), 1) / 1000
