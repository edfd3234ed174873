"""A real Redis for tests: Debian's `redis-server` on a free loopback port, no
persistence, started and stopped by the test (and stoppable mid-test, to cut
Redis and bring it back on the same port); or a Redis Cluster of such servers
(a test may SIGKILL a master of it). Both are the bench's (bench/redis_server.py),
which runs a server for `bench cluster` too."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest

from bench.redis_server import RedisCluster, RedisServer, free_port

__all__ = ["RedisCluster", "RedisServer", "free_port", "running_redis", "running_redis_cluster"]


@contextlib.asynccontextmanager
async def running_redis() -> AsyncIterator[RedisServer]:
    """A started redis-server, stopped on exit. Use it in a fixture:
    `async with running_redis() as redis: yield redis`."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running_redis_cluster(
    *, replicas: int = 0, node_timeout_ms: int = 2000
) -> AsyncIterator[RedisCluster]:
    """A started Redis Cluster of three masters, each with `replicas` replicas,
    every process stopped and its files removed on exit."""
    for program in ("redis-server", "redis-cli"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed (apt-get install redis-server)")
    cluster = RedisCluster(masters=3, replicas=replicas, node_timeout_ms=node_timeout_ms)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
