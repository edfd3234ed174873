"""A Redis of one's own: Debian's `redis-server` on a free loopback port, no
persistence, started and stopped by its user (the cluster bench; the tests,
which may also stop it mid-test and start it again on the same port)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.soak import free_port

__all__ = ["RedisServer", "free_port"]


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
        )
        await self._wait_ready()

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        self._process = None

    async def _wait_ready(self) -> None:
        client = Redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    if await client.ping():
                        return
                except (RedisError, OSError):
                    await asyncio.sleep(0.05)
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        finally:
            await client.aclose()
