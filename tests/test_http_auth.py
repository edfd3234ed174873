"""Who may call: tokens that prove nothing are 401, and rate limits per IP (an IPv6
client per /64) and per user (429 with Retry-After), never for the platform's
service token."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from aiohttp import web

from engine.__main__ import main
from server.app import create_app
from tests.http_helpers import PRICE, SECRET, Api, Reply, settings, start, token_for
from web.errors import Handler


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(user_id: uuid.UUID) -> str:
    """`alg: none`: a token anyone can write."""
    claims = {"sub": str(user_id), "role": "admin", "exp": int(time.time()) + 3600}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


BAD_TOKENS = {
    "expired": lambda user: signed({"sub": str(user), "role": "user", "exp": int(time.time()) - 5}),
    "wrong secret": lambda user: signed(
        {"sub": str(user), "exp": int(time.time()) + 60}, "another-secret-of-32-bytes-or-more!!"
    ),
    "alg none": unsigned_token,
    "unknown sub": lambda user: token_for(uuid.uuid4()),
    "sub not a uuid": lambda user: signed({"sub": "42", "exp": int(time.time()) + 60}),
    "no exp": lambda user: signed({"sub": str(user)}),
    "not a jwt": lambda user: "definitely.not.a-jwt",
}


async def test_token_that_proves_nothing_is_401(api: Api) -> None:
    user = await api.bidder()
    auction = await api.live_auction()
    body = {"auction_id": str(auction), "amount_kobo": PRICE, "client_bid_id": "a"}
    for kind, make in BAD_TOKENS.items():
        reply = await api.call("POST", "/api/bids", token=make(user), json_body=body)
        assert (reply.status, reply.code) == (401, "unauthenticated"), kind
    assert await api.pool.fetchval("SELECT count(*) FROM bids") == 0
    assert (await api.bid(user, auction, PRICE)).status == 201  # a good token is let in


async def test_authorization_header_without_a_bearer_token_is_401(api: Api) -> None:
    for header in ["", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc"]:
        sent = {"Authorization": header}
        reply = await api.call("POST", "/api/auctions", headers=sent, data="{}")
        assert (reply.status, reply.code) == (401, "unauthenticated"), header


async def test_default_limit_is_100_requests_a_minute_per_ip(api: Api) -> None:
    for _ in range(100):
        assert (await api.call("GET", "/api/auctions")).status == 200
    reply = await api.call("GET", "/api/auctions")
    assert (reply.status, reply.code) == (429, "rate_limited")
    assert 1 <= int(reply.headers["Retry-After"]) <= 60


async def test_rate_limited_reply_says_when_to_come_back(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(aiohttp_client, database_url, rate_limit_ip_per_min=3)
    for _ in range(3):
        await api.call("GET", f"/api/auctions/{uuid.uuid4()}")
    reply = await api.call("GET", "/api/auctions")
    assert reply.status == 429
    assert reply.body["error"]["message"].startswith("Too many requests")
    assert int(reply.headers["Retry-After"]) >= 1


async def test_service_token_calls_are_not_limited_per_ip(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(aiohttp_client, database_url, rate_limit_ip_per_min=3)
    for _ in range(10):
        await api.user()  # a PUT each
    assert (await api.call("GET", "/api/auctions")).status == 200
    assert (await api.call("GET", "/api/auctions")).status == 200


async def test_each_user_is_limited_on_its_own(database_url: str, aiohttp_client: Any) -> None:
    api = await start(aiohttp_client, database_url, rate_limit_user_per_min=2)
    first, second = await api.bidder(), await api.bidder()
    for _ in range(2):
        await api.as_user(first, "GET", "/api/auctions")
    limited = await api.as_user(first, "GET", "/api/auctions")
    other = await api.as_user(second, "GET", "/api/auctions")
    assert (limited.status, limited.code) == (429, "rate_limited")
    assert other.status == 200


PEER = "X-Test-Peer"


@web.middleware
async def peer_from_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stands in for peers a loopback test cannot be: the request names its address."""
    return await handler(request.clone(remote=request.headers[PEER]))


async def start_with_peers(aiohttp_client: Any, database_url: str, ip_per_min: int) -> Api:
    app = create_app(settings(database_url, rate_limit_ip_per_min=ip_per_min))
    app.middlewares.insert(0, peer_from_header)
    return Api(await aiohttp_client(app))


async def from_peer(api: Api, address: str) -> Reply:
    return await api.call("GET", "/api/auctions", headers={PEER: address})


async def test_an_ipv6_client_is_limited_per_64_not_per_address(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start_with_peers(aiohttp_client, database_url, ip_per_min=2)
    assert (await from_peer(api, "2001:db8:0:1::1")).status == 200
    assert (await from_peer(api, "2001:db8:0:1:8a2e:370:7334:1")).status == 200
    limited = await from_peer(api, "2001:db8:0:1:ffff:ffff:ffff:ffff")  # a third address
    assert (limited.status, limited.code) == (429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await from_peer(api, "2001:db8:0:2::1")).status == 200  # the next /64


async def test_an_ipv4_client_is_limited_per_address_also_when_seen_as_ipv6(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start_with_peers(aiohttp_client, database_url, ip_per_min=2)
    assert (await from_peer(api, "192.0.2.1")).status == 200
    assert (await from_peer(api, "::ffff:192.0.2.1")).status == 200  # a dual-stack listener's view
    limited = await from_peer(api, "192.0.2.1")
    assert (limited.status, limited.code) == (429, "rate_limited")
    assert (await from_peer(api, "192.0.2.2")).status == 200  # its neighbour counts apart


async def test_token_command_mints_a_token_the_api_accepts(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user = await api.bidder()
    auction = await api.live_auction()
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")  # main() sets the root logger's level

    assert main(["token", "--user", str(user), "--role", "user", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()

    body = {"auction_id": str(auction), "amount_kobo": PRICE, "client_bid_id": "cli"}
    reply = await api.call("POST", "/api/bids", token=token, json_body=body)
    assert reply.status == 201, reply.text
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"], claims["exp"] - claims["iat"]) == (str(user), "user", 60)
