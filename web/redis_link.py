"""The one way to REDIS_URL's Redis: a single server, or a Redis Cluster.

Which of the two the URL names is learnt from the server itself, not from the
URL: the first time it answers, `INFO cluster` says `cluster_enabled:1` for a
node of a cluster. Then the client is a `RedisCluster` built from the same URL
(the node it names is only where the client learns the others from; the
database must be 0, the only one a cluster has); otherwise a plain `Redis`, as
before. Everything that talks to Redis gets its client here: the rate limits
(web/ratelimit.py) and the bus (web/bus.py, web/sharded_pubsub.py, which also
asks for a client of each cluster node by address).

Until Redis answers, the kind is unknown and `connect` raises, as a Redis down
would: a node starts and serves its own sockets while Redis is away, and its
users retry. No client here retries inside redis-py: a failure shows at once,
and each user decides (the bus backs off and reconnects; the limits count
locally for a moment).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

#: How long after a failed probe the next caller is told "not reachable" without
#: asking again (every request's rate limit would otherwise pay a connect).
PROBE_AGAIN_S = 1.0

Address = tuple[str, int]


def _options() -> dict[str, Any]:
    return {"socket_connect_timeout": 2, "retry": Retry(NoBackoff(), 0)}


class RedisLink:
    """REDIS_URL's Redis, one server or a cluster, known once it has answered."""

    def __init__(self, url: str) -> None:
        self._url = url
        parsed = parse_url(url)
        self.seed: Address = (str(parsed.get("host", "localhost")), int(parsed.get("port", 6379)))
        self._client: Redis | RedisCluster | None = None
        self._probing = asyncio.Lock()
        self._probe_after = 0.0

    @property
    def is_cluster(self) -> bool:
        """True once Redis has answered as a cluster node."""
        return isinstance(self._client, RedisCluster)

    async def connect(self) -> Redis | RedisCluster:
        """The client, asking Redis what it is the first time; RedisError (or
        OSError) while it does not answer."""
        if self._client is not None:
            return self._client
        async with self._probing:
            if self._client is None:
                if time.monotonic() < self._probe_after:
                    raise RedisError("Redis did not answer a moment ago")
                try:
                    self._client = await self._probe()
                except (RedisError, OSError):
                    self._probe_after = time.monotonic() + PROBE_AGAIN_S
                    raise
        return self._client

    def node(self, address: Address) -> Redis:
        """A client of one node of the cluster, with the URL's credentials and TLS."""
        settings: dict[str, Any] = {**parse_url(self._url), **_options()}
        settings.update(host=address[0], port=address[1], db=0)
        return Redis.from_pool(ConnectionPool(**settings))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _probe(self) -> Redis | RedisCluster:
        single = Redis.from_url(self._url, **_options())
        try:
            info = await single.info("cluster")
        except BaseException:
            await single.aclose()
            raise
        if not info.get("cluster_enabled"):
            logger.info("REDIS_URL: a single Redis server (PUBLISH/PSUBSCRIBE for rooms)")
            return single
        await single.aclose()
        if parse_url(self._url).get("db", 0):
            raise RedisError("REDIS_URL names a Redis Cluster, which has database 0 only")
        logger.info("REDIS_URL: a Redis Cluster (sharded pub/sub for rooms)")
        return RedisCluster.from_url(self._url, **_options())


class Backoff:
    """Waits between attempts: doubling from 0.1 s up to `max_s`."""

    def __init__(self, max_s: float) -> None:
        self._max_s = max_s
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return float(min(0.05 * 2**self.failures, self._max_s))

    def reset(self) -> None:
        self.failures = 0
