"""The client's address behind a load balancer (TRUSTED_PROXIES, web/proxies.py).

The rule, on its own: `X-Forwarded-For` counts only when the TCP peer is a
trusted proxy, and then it is read from the right, past trusted hops, to the
first untrusted address; whatever a client wrote to the left of that is never
reached. Then over HTTP and WebSocket on the real app and database, both ways:
with 127.0.0.1 (the test's own client) trusted, the per-IP request limit, the
per-IP socket limit and the audit log's address follow the forwarded address,
also for a staff action one node relays to another; untrusted, the header
changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from engine.config import Network, Settings
from engine.errors import ConfigError
from tests.cluster_helpers import owner_first
from tests.fault_helpers import EngineServer, Platform, engine_env, running_engine
from tests.fault_helpers import token_for as node_token_for
from tests.http_helpers import HOUR_MS, Api, Reply, now_ms, start, token_for
from tests.redis_server import RedisServer
from tests.ws_helpers import make_world, serving
from web.proxies import forwarded_client

CLIENT_A = "198.51.100.7"
CLIENT_B = "203.0.113.42"
LOOPBACK_TRUSTED = "127.0.0.1"


def trusted(text: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES as the engine reads it from its environment."""
    return Settings.from_env({"TRUSTED_PROXIES": text}).trusted_proxies


def client(peer: str, *lines: str, proxies: str = "127.0.0.1, 10.0.0.0/8, fd00::/8") -> str:
    return forwarded_client(peer, lines, trusted(proxies))


# ---- the rule ---------------------------------------------------------------------------


def test_an_untrusted_peer_is_the_client_whatever_its_header_says() -> None:
    assert client("192.0.2.1", CLIENT_A) == "192.0.2.1"
    assert client("192.0.2.1", CLIENT_A, proxies="") == "192.0.2.1"


def test_the_rightmost_address_a_trusted_proxy_appended_is_the_client() -> None:
    # The client wrote CLIENT_B itself; the proxy appended the address it saw.
    assert client("127.0.0.1", f"{CLIENT_B}, {CLIENT_A}") == CLIENT_A


def test_trusted_hops_are_walked_past_right_to_left() -> None:
    assert client("10.0.0.1", f"{CLIENT_B}, {CLIENT_A}, 10.2.0.9,10.0.0.5") == CLIENT_A


def test_several_header_lines_are_one_list_in_order() -> None:
    # HAProxy adds a line of its own after the one the client sent.
    assert client("127.0.0.1", CLIENT_B, CLIENT_A) == CLIENT_A
    assert client("127.0.0.1", CLIENT_B, f"{CLIENT_A}, 10.0.0.5") == CLIENT_A


def test_ipv6_clients_and_proxies() -> None:
    assert client("fd00::1", "2001:db8::1, fd12::7") == "2001:db8::1"
    assert client("fd00::1", f"2001:db8::1, {CLIENT_A}") == CLIENT_A
    assert client("::1", "2001:db8::1", proxies="::1") == "2001:db8::1"
    assert client("::1", "2001:db8::1", proxies="127.0.0.1") == "::1"


def test_an_ipv4_peer_seen_through_a_dual_stack_listener_is_trusted_as_ipv4() -> None:
    assert client("::ffff:127.0.0.1", CLIENT_A) == CLIENT_A
    assert client("127.0.0.1", f"::ffff:{CLIENT_A}") == CLIENT_A


def test_without_a_header_the_trusted_peer_is_the_client() -> None:
    assert client("127.0.0.1") == "127.0.0.1"
    assert client("::ffff:10.0.0.3") == "10.0.0.3"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    assert client("127.0.0.1", "10.9.9.9, 10.0.0.5") == "10.9.9.9"


@pytest.mark.parametrize(
    "header",
    [
        f"{CLIENT_B}, not-an-address, 10.0.0.5",
        f"{CLIENT_B}, {CLIENT_A}:51234, 10.0.0.5",  # a port: not an address
        f"{CLIENT_B}, unknown, 10.0.0.5",
        f"{CLIENT_B}, [2001:db8::1], 10.0.0.5",
    ],
)
def test_a_malformed_entry_ends_the_walk_at_the_last_good_address(header: str) -> None:
    assert client("127.0.0.1", header) == "10.0.0.5"
    assert client("127.0.0.1", header.rsplit(",", 1)[0]) == "127.0.0.1"


def test_empty_list_elements_say_nothing() -> None:
    assert client("127.0.0.1", f"{CLIENT_B}, {CLIENT_A},, ") == CLIENT_A


# ---- the setting ------------------------------------------------------------------------


def test_trusted_proxies_takes_addresses_and_networks_of_both_families() -> None:
    networks = trusted(" 172.28.0.10, 10.0.0.0/8 ,::1, fd00::/8,")
    assert [str(network) for network in networks] == [
        "172.28.0.10/32",
        "10.0.0.0/8",
        "::1/128",
        "fd00::/8",
    ]
    assert trusted("") == () and Settings.from_env({}).trusted_proxies == ()


@pytest.mark.parametrize(
    "entry", ["proxy.internal", "10.0.0.300", "10.0.0.7/8", "10.0.0.0/33", "fd00::/8 10.0.0.1"]
)
def test_a_bad_trusted_proxy_is_refused_by_name(entry: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"TRUSTED_PROXIES": f"127.0.0.1, {entry}"})
    message = str(refused.value)
    assert message.startswith(f"TRUSTED_PROXIES: {entry!r} is not an IP address or a network")
    assert "CIDR" in message


# ---- the per-IP request limit -----------------------------------------------------------


async def get_as(api: Api, forwarded_for: str) -> int:
    reply = await api.call("GET", "/api/auctions", headers={"X-Forwarded-For": forwarded_for})
    return reply.status


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(
        aiohttp_client,
        database_url,
        rate_limit_ip_per_min=2,
        trusted_proxies=trusted(LOOPBACK_TRUSTED),
    )
    assert [await get_as(api, CLIENT_A) for _ in range(3)] == [200, 200, 429]
    assert await get_as(api, CLIENT_B) == 200
    # What A writes to the left of what the proxy appended does not get it out.
    assert await get_as(api, f"{CLIENT_B}, {CLIENT_A}") == 429


async def test_without_trusted_proxies_a_forged_header_does_not_escape_the_bucket(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(aiohttp_client, database_url, rate_limit_ip_per_min=2)
    statuses = [await get_as(api, forged) for forged in (CLIENT_A, CLIENT_B, "192.0.2.99")]
    assert statuses == [200, 200, 429]


async def test_a_peer_outside_the_trusted_networks_is_not_believed(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(
        aiohttp_client, database_url, rate_limit_ip_per_min=2, trusted_proxies=trusted("10.0.0.0/8")
    )
    statuses = [await get_as(api, forged) for forged in (CLIENT_A, CLIENT_B, "192.0.2.99")]
    assert statuses == [200, 200, 429]


# ---- the audit log ------------------------------------------------------------------------


async def approve_as_manager(api: Api, forwarded_for: str) -> uuid.UUID:
    """A draft approved by a manager whose request carries `forwarded_for`."""
    dealer, manager = await api.seller(), await api.user(role="manager")
    begins = now_ms() + HOUR_MS
    made = await api.create_auction(
        dealer, status="draft", start_time_ms=begins, end_time_ms=begins + HOUR_MS
    )
    assert made.status == 201, made.text
    auction = uuid.UUID(made.body["auction"]["id"])
    reply: Reply = await api.call(
        "POST",
        f"/internal/admin/auctions/{auction}/approve",
        token=token_for(manager, "manager"),
        json_body={"reason": "Documents verified"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    assert reply.status == 200, reply.text
    return auction


async def audited_address(pool: Any, auction: uuid.UUID) -> str:
    address: str = await pool.fetchval(
        "SELECT host(ip_address) FROM admin_audit_log WHERE target_id = $1", auction
    )
    return address


async def test_the_audit_row_records_the_forwarded_client_behind_a_trusted_proxy(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(aiohttp_client, database_url, trusted_proxies=trusted(LOOPBACK_TRUSTED))
    auction = await approve_as_manager(api, f"{CLIENT_B}, {CLIENT_A}")
    assert await audited_address(api.pool, auction) == CLIENT_A


async def test_the_audit_row_records_the_peer_when_no_proxy_is_trusted(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(aiohttp_client, database_url)
    auction = await approve_as_manager(api, CLIENT_A)
    assert await audited_address(api.pool, auction) == "127.0.0.1"


# ---- the per-IP socket limit --------------------------------------------------------------


async def room_socket(
    session: aiohttp.ClientSession, url: str, forwarded_for: str, kept: list[Any]
) -> int:
    """101 when the room socket opens (kept open in `kept`), else the refusal's status."""
    try:
        kept.append(await session.ws_connect(url, headers={"X-Forwarded-For": forwarded_for}))
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status
    return 101


async def sockets_opened(pool: Any, database_url: str, **settings: Any) -> list[int]:
    """At most two sockets per address; three forwarded for A, then one for B."""
    world = await make_world(pool, bidders=0)
    kept: list[Any] = []
    async with (
        serving(database_url, ws_sockets_per_ip=2, **settings) as served,
        aiohttp.ClientSession() as session,
    ):
        url = served.room_url(world.auction_id)
        order = (CLIENT_A, CLIENT_A, CLIENT_A, CLIENT_B)
        opened = [await room_socket(session, url, forwarded, kept) for forwarded in order]
        for ws in kept:
            await ws.close()
        return opened


async def test_behind_a_trusted_proxy_sockets_are_counted_per_forwarded_client(
    pool: Any, database_url: str
) -> None:
    opened = await sockets_opened(pool, database_url, trusted_proxies=trusted(LOOPBACK_TRUSTED))
    assert opened == [101, 101, 429, 101]


async def test_without_trusted_proxies_sockets_are_counted_per_peer(
    pool: Any, database_url: str
) -> None:
    assert await sockets_opened(pool, database_url) == [101, 101, 429, 429]


# ---- a staff action relayed to the auction's owner ---------------------------------------


@pytest.fixture
async def two_nodes(
    database_url: str, redis: RedisServer, tmp_path: Path
) -> AsyncIterator[list[EngineServer]]:
    env = engine_env(database_url, REDIS_URL=redis.url, TRUSTED_PROXIES=LOOPBACK_TRUSTED)
    async with (
        running_engine({**env, "NODE_ID": "a"}, tmp_path / "a.log") as a,
        running_engine({**env, "NODE_ID": "b"}, tmp_path / "b.log") as b,
    ):
        yield [a, b]


async def test_a_relayed_staff_action_is_audited_with_the_forwarded_client(
    two_nodes: list[EngineServer], database_url: str
) -> None:
    service = engine_env(database_url)["INTERNAL_API_TOKEN"]
    async with aiohttp.ClientSession() as http:
        platform = Platform(http, two_nodes[0].base)
        dealer, manager = await platform.user("dealer"), await platform.user("manager")
        begins = now_ms() + HOUR_MS
        auction = await platform.auction(
            dealer, start_ms=begins, end_ms=begins + HOUR_MS, status="draft"
        )
        _, other = await owner_first(http, two_nodes, service, auction)
        async with http.post(
            f"{other.base}/internal/admin/auctions/{auction}/approve",
            json={"reason": "Documents verified"},
            headers={
                "Authorization": f"Bearer {node_token_for(manager, 'manager')}",
                "X-Forwarded-For": f"{CLIENT_B}, {CLIENT_A}",
            },
        ) as reply:
            assert reply.status == 200, await reply.text()
    conn = await asyncpg.connect(database_url)
    try:
        assert await audited_address(conn, auction) == CLIENT_A
    finally:
        await conn.close()
