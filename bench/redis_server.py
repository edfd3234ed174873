"""A Redis of one's own: Debian's `redis-server` on a free loopback port, no
persistence, started and stopped by its user (the cluster bench; the tests,
which may also stop it mid-test and start it again on the same port); and a
Redis Cluster of one's own, made of such servers in cluster mode."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.soak import free_port

__all__ = ["RedisCluster", "RedisServer", "free_port"]


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

    @property
    def pid(self) -> int:
        """The running server's process id (a test may stop it with SIGSTOP)."""
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return self._process.pid

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


class RedisCluster:
    """A Redis Cluster of one's own: `masters` masters with `replicas` replicas each,
    Debian's `redis-server` in cluster mode on free loopback ports (the cluster
    bus's too: a client port + 10000 may be taken, or past 65535), joined by
    `redis-cli --cluster create`, node files in a temporary directory. A test may
    SIGKILL one node; a small `node_timeout_ms` makes the cluster fail it over fast."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> None:
        self.ports = [free_port() for _ in range(masters * (1 + replicas))]
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        #: The first node's address: a client learns the others from it.
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._dir: Path | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="d360-redis-cluster-"))
        for port in self.ports:
            self._processes[port] = await self._spawn(port, _node_dir(self._dir, port))
        async with asyncio.timeout(timeout_s):
            for port in self.ports:
                await _wait_ready(port)
            await self._create()
            await self._until_settled(self.replicas)

    async def stop(self) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                process.kill()
        for process in self._processes.values():
            await process.wait()
        self._processes.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def kill(self, port: int) -> None:
        """SIGKILL one node: no goodbye to its clients or to the other nodes."""
        process = self._processes[port]
        process.send_signal(signal.SIGKILL)
        await process.wait()

    @property
    def live_ports(self) -> list[int]:
        return [port for port, p in self._processes.items() if p.returncode is None]

    async def slot_owners(self) -> dict[int, int]:
        """Slot -> the port of the master serving it, as a live node sees it (CLUSTER SLOTS)."""
        reply = await self._ask("SLOTS")
        return {slot: int(entry[2][1]) for entry in reply for slot in range(entry[0], entry[1] + 1)}

    async def keyslot(self, key: str) -> int:
        slot: int = await self._ask("KEYSLOT", key)
        return slot

    async def masters(self) -> set[int]:
        return set((await self.slot_owners()).values())

    async def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node says `cluster_state:ok` and every slot has a live
        master (after a kill: once the dead master's replica has taken over)."""
        async with asyncio.timeout(timeout_s):
            await self._until_settled(replicas=0)

    async def _until_settled(self, replicas: int) -> None:
        while True:
            if await self._settled(replicas):
                return
            await asyncio.sleep(0.1)

    async def _settled(self, replicas: int) -> bool:
        """Also, with `replicas`: each master has that many replicas in sync, so it
        can be failed over."""
        for port in self.live_ports:
            info = await _cluster_info(port)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
        owners = set((await self.slot_owners()).values())
        if not owners <= set(self.live_ports):
            return False
        for port in self.live_ports:
            replication = await _info(port, "replication")
            if port in owners and int(replication.get("connected_slaves", "0")) < replicas:
                return False
            if replicas and port not in owners and replication.get("master_link_status") != "up":
                return False  # a replica still syncing could not be failed over to
        return True

    async def _spawn(self, port: int, directory: Path) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
            *("--cluster-port", str(free_port())),
            stdout=asyncio.subprocess.DEVNULL,
        )

    async def _create(self) -> None:
        process = await asyncio.create_subprocess_exec(
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in self.ports),
            *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {output.decode()[-2000:]}")

    async def _ask(self, *command: str) -> Any:
        """A CLUSTER command answered by the first live node that answers."""
        for port in self.live_ports:
            client = Redis(port=port, socket_connect_timeout=1)
            try:
                return await client.cluster(*command)
            except (RedisError, OSError):
                continue
            finally:
                await client.aclose()
        raise RuntimeError("no node of the Redis Cluster answers")


async def _wait_ready(port: int) -> None:
    client = Redis(port=port)
    try:
        while True:
            try:
                if await client.ping():
                    return
            except (RedisError, OSError):
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def _info(port: int, section: str) -> dict[str, str]:
    client = Redis(port=port, socket_connect_timeout=1)
    try:
        info: dict[str, Any] = await client.info(section)
    except (RedisError, OSError):
        return {}
    finally:
        await client.aclose()
    return {key: str(value) for key, value in info.items()}


async def _cluster_info(port: int) -> dict[str, str]:
    client = Redis(port=port, socket_connect_timeout=1)
    try:
        info: dict[str, str] = await client.cluster("INFO")
    except (RedisError, OSError):
        return {}
    finally:
        await client.aclose()
    return info


def _node_dir(parent: Path, port: int) -> Path:
    directory = parent / str(port)
    directory.mkdir()
    return directory
