"""ops/haproxy/haproxy.cfg, run: Debian's HAProxy (installed for the suite by
tests/system-deps.sh) with the compose file's configuration, in front of two
`python -m engine serve` nodes on one PostgreSQL and one Redis.

Only addresses change, so it runs on loopback: the balancer listens on a free
port, the nodes' names become their ports (node3 a port nobody listens on: a
node that is down), and the balancer connects to the nodes from 127.0.0.2, the
address they trust (TRUSTED_PROXIES), as compose's balancer does from its fixed
address. Clients connect from 127.0.0.1 and 127.0.0.3: two clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from bench.soak import free_port
from tests.cluster_helpers import balanced
from tests.fault_helpers import (
    EngineServer,
    Platform,
    engine_env,
    now_ms,
    running_engine,
    token_for,
)
from tests.redis_server import RedisServer
from tests.test_ratelimit_shared import SYNCED_S

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "ops" / "haproxy" / "haproxy.cfg"
BALANCER_SOURCE = "127.0.0.2"
OTHER_CLIENT = "127.0.0.3"
HOUR_MS = 3_600_000


@dataclass
class Balancer:
    base: str

    def room_url(self, auction_id: uuid.UUID) -> str:
        return f"{self.base.replace('http', 'ws', 1)}/ws/auctions/{auction_id}"


def loopback_config(listen: int, node_ports: dict[str, int]) -> str:
    """The compose balancer's configuration with loopback addresses only."""
    text = CONFIG.read_text(encoding="utf-8")
    text, binds = re.subn(r"(?m)^(\s*bind )\S*:8080$", rf"\g<1>127.0.0.1:{listen}", text)
    assert binds == 1, "haproxy.cfg binds no :8080"
    for name, port in node_ports.items():
        text, servers = re.subn(
            rf"(?m)^(\s*server {name} ){name}:8080\b", rf"\g<1>127.0.0.1:{port}", text
        )
        assert servers == 1, f"haproxy.cfg has no `server {name} {name}:8080`"
    text, backends = re.subn(
        r"(?m)^backend nodes$", f"backend nodes\n    source {BALANCER_SOURCE}", text
    )
    assert backends == 1, "haproxy.cfg has no `backend nodes`"
    return text


@contextlib.asynccontextmanager
async def running_balancer(tmp_path: Path, node_ports: dict[str, int]) -> AsyncIterator[Balancer]:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail("haproxy is not installed (tests/system-deps.sh installs it)")
    listen = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(loopback_config(listen, node_ports))
    with (tmp_path / "haproxy.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            haproxy, "-db", "-f", str(config), stdout=log, stderr=log
        )
    balancer = Balancer(f"http://127.0.0.1:{listen}")
    try:
        await _listening(listen, process)
        yield balancer
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)


async def _listening(port: int, process: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(10):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"haproxy exited with {process.returncode}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def nodes(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> AsyncIterator[list[EngineServer]]:
    env = engine_env(
        database_url,
        REDIS_URL=redis.url,
        TRUSTED_PROXIES=BALANCER_SOURCE,
        RATE_LIMIT_IP_PER_MIN="12",
    )
    async with (
        running_engine({**env, "NODE_ID": "node1"}, tmp_path / "node1.log") as node1,
        running_engine({**env, "NODE_ID": "node2"}, tmp_path / "node2.log") as node2,
        aiohttp.ClientSession() as http,
    ):
        # Each holding its share: a staff action meanwhile may meet a partition
        # between owners (503, safe to send again), which is not under test here.
        await balanced(http, [node1, node2], env["INTERNAL_API_TOKEN"])
        yield [node1, node2]


@pytest.fixture
async def balancer(nodes: list[EngineServer], tmp_path: Path) -> AsyncIterator[Balancer]:
    ports = {"node1": nodes[0].port, "node2": nodes[1].port, "node3": free_port()}
    async with running_balancer(tmp_path, ports) as running:
        yield running


def service_headers(database_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {engine_env(database_url)['INTERNAL_API_TOKEN']}"}


async def answering_node(
    http: aiohttp.ClientSession, balancer: Balancer, auth: dict[str, str]
) -> str:
    async with http.get(f"{balancer.base}/internal/cluster", headers=auth) as reply:
        assert reply.status == 200, await reply.text()
        node: str = (await reply.json())["node"]
        return node


async def test_requests_go_round_robin_to_the_nodes_that_are_up(
    balancer: Balancer, database_url: str
) -> None:
    auth = service_headers(database_url)
    async with aiohttp.ClientSession() as http:  # one kept-alive connection
        answered = [await answering_node(http, balancer, auth) for _ in range(8)]
        async with http.get(f"{balancer.base}/metrics") as reply:
            metrics_status = reply.status
    assert set(answered) == {"node1", "node2"}, answered  # node3 is down: nobody notices
    assert metrics_status == 404  # Prometheus scrapes each node itself


async def test_a_room_socket_opens_through_the_balancer(
    balancer: Balancer, database_url: str
) -> None:
    async with aiohttp.ClientSession() as http:
        platform = Platform(http, balancer.base)
        dealer = await platform.user("dealer")
        begins = now_ms() - 1_000
        auction = await platform.auction(dealer, start_ms=begins, end_ms=begins + HOUR_MS)
        async with http.ws_connect(balancer.room_url(auction)) as ws:
            snapshot = await ws.receive_json(timeout=5)
            assert snapshot["type"] == "snapshot"
            await ws.send_json({"type": "ping", "client_time_ms": 7})
            while (answer := await ws.receive_json(timeout=5))["type"] != "pong":
                pass
            assert answer["client_time_ms"] == 7


async def statuses(http: aiohttp.ClientSession, balancer: Balancer, times: int) -> list[int]:
    """`times` GETs, each claiming another address in its own X-Forwarded-For, a
    moment apart (the nodes share their counts within it: web/ratelimit.py)."""
    answers = []
    for n in range(times):
        await asyncio.sleep(SYNCED_S)
        forged = {"X-Forwarded-For": f"192.0.2.{n + 1}"}
        async with http.get(f"{balancer.base}/api/auctions", headers=forged) as reply:
            answers.append(reply.status)
    return answers


async def test_the_per_ip_limit_counts_each_client_not_the_balancer(balancer: Balancer) -> None:
    other = aiohttp.TCPConnector(local_addr=(OTHER_CLIENT, 0))
    async with aiohttp.ClientSession() as first, aiohttp.ClientSession(connector=other) as second:
        forging = await statuses(first, balancer, 14)
        honest = await statuses(second, balancer, 1)
    # Twelve a minute over both nodes (Redis): the forged headers change nothing (each
    # would be a fresh count, never refused). A node hears the other's hits when it
    # next syncs its own: requests alternating between them pass by one at most.
    assert forging[:12] == [200] * 12
    assert 429 in forging[12:14], forging
    assert honest == [200]


async def test_a_staff_action_through_the_balancer_is_audited_with_the_clients_address(
    balancer: Balancer, database_url: str
) -> None:
    other = aiohttp.TCPConnector(local_addr=(OTHER_CLIENT, 0))
    async with aiohttp.ClientSession(connector=other) as http:
        platform = Platform(http, balancer.base)
        dealer, manager = await platform.user("dealer"), await platform.user("manager")
        auctions = []
        for _ in range(4):  # round robin: some reach the owner, some are relayed to it
            begins = now_ms() + HOUR_MS
            auction = await platform.auction(
                dealer, start_ms=begins, end_ms=begins + HOUR_MS, status="draft"
            )
            async with http.post(
                f"{balancer.base}/internal/admin/auctions/{auction}/approve",
                json={"reason": "Documents verified"},
                headers={
                    "Authorization": f"Bearer {token_for(manager, 'manager')}",
                    "X-Forwarded-For": "198.51.100.7",
                },
            ) as reply:
                assert reply.status == 200, await reply.text()
            auctions.append(auction)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT host(ip_address) FROM admin_audit_log WHERE target_id = ANY($1)", auctions
        )
    finally:
        await conn.close()
    assert [row[0] for row in rows] == [OTHER_CLIENT] * 4


async def test_with_no_node_up_the_balancer_answers_in_the_engines_error_shape(
    tmp_path: Path,
) -> None:
    down = {name: free_port() for name in ("node1", "node2", "node3")}
    async with (
        running_balancer(tmp_path, down) as nobody,
        aiohttp.ClientSession() as http,
        http.get(f"{nobody.base}/api/auctions") as reply,
    ):
        assert reply.status == 503
        assert reply.content_type == "application/json"
        assert int(reply.headers["Retry-After"]) >= 1
        assert (await reply.json())["error"]["code"] == "unavailable"
