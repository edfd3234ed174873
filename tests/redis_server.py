"""A real Redis for tests: Debian's `redis-server` on a free loopback port, no
persistence, started and stopped by the test (and stoppable mid-test, to cut
Redis and bring it back on the same port). The server itself is the bench's
(bench/redis_server.py), which runs one for `bench cluster` too."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest

from bench.redis_server import RedisServer, free_port

__all__ = ["RedisServer", "free_port", "running_redis"]


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
