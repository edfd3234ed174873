"""Hostile requests: whatever a client sends, the answer is an API.md error in its
JSON shape with a fitting status, never a 500, a stack trace or SQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.http_helpers import PRICE, Api, start, token_for


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


DEEP = "[" * 20_000 + "]" * 20_000  # deep, yet under MAX_BODY_BYTES
LEAKS = ("Traceback", "asyncpg", "SELECT", "INSERT", "constraint", "_key", "psql", 'File "')

HOSTILE_BODIES: dict[str, str | bytes] = {
    "empty": "",
    "not json": "amount=5&auction=1",
    "truncated": '{"amount_kobo": ',
    "invalid utf-8": b'{"email": "\xff\xfe"}',
    "lone surrogate": '{"email": "a\\ud800b"}',
    "array": "[1, 2, 3]",
    "string": '"hello"',
    "null": "null",
    "deep nesting": DEEP,
    "deep value": '{"amount_kobo": ' + DEEP + ', "client_bid_id": "a"}',
    "deep unknown field": '{"zzz": ' + DEEP + "}",
    "huge number": '{"amount_kobo": 1' + "0" * 5000 + ', "year": 1' + "0" * 5000 + "}",
    "huge float": '{"amount_kobo": 1e999, "year": 1e999, "start_price_kobo": 1e999}',
    "wrong types": json.dumps(
        {k: [True] for k in ("email", "role", "amount_kobo", "vin", "vehicle_id", "auction_id")}
    ),
    "nul bytes": json.dumps({"email": "a\u0000@b.ng", "reference": "\u0000", "vin": "\u0000" * 17}),
}


def assert_api_error(reply: Any, *statuses: int, case: Any = None) -> None:
    assert reply.status in statuses, (case, reply.status, reply.text)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert set(reply.body) == {"error"}
    assert set(reply.body["error"]) >= {"code", "message"}
    assert reply.body["error"]["message"].strip()
    assert not any(leak in reply.text for leak in LEAKS), reply.text


async def endpoints(api: Api) -> list[tuple[str, str, str]]:
    """Every body-taking route, with a token that gets past authentication."""
    user = await api.bidder()
    manager = await api.user(role="manager")
    service = "service"
    return [
        ("PUT", f"/internal/users/{uuid.uuid4()}", service),
        ("POST", f"/internal/users/{user}/wallet/credits", service),
        ("POST", f"/internal/users/{user}/wallet/debits", service),
        ("POST", "/internal/vehicles", service),
        ("POST", "/internal/auctions", service),
        ("POST", "/api/bids", token_for(user)),
        ("POST", "/api/auctions", token_for(manager)),
    ]


async def test_hostile_body_gets_a_4xx_in_the_error_shape_everywhere(api: Api) -> None:
    routes = await endpoints(api)
    for kind, body in HOSTILE_BODIES.items():
        for method, path, token in routes:
            if token == "service":
                reply = await api.service(method, path, data=body)
            else:
                reply = await api.call(method, path, token=token, data=body)
            assert_api_error(reply, 400, 422, case=(kind, path))
    assert await api.pool.fetchval("SELECT count(*) FROM transactions") == 1  # the setup's


async def test_not_json_is_400_malformed(api: Api) -> None:
    reply = await api.service("POST", "/internal/vehicles", data="vin=ABC")
    assert_api_error(reply, 400)
    assert reply.code == "malformed"


async def test_deep_nesting_is_refused_not_a_crash(api: Api) -> None:
    user = await api.bidder()
    top = await api.call("POST", "/api/bids", token=token_for(user), data=DEEP)
    inside = await api.call(
        "POST", "/api/bids", token=token_for(user), data=HOSTILE_BODIES["deep value"]
    )
    assert_api_error(top, 422)  # not an object: refused before any depth
    assert_api_error(inside, 400)
    assert inside.code == "malformed"
    assert (await api.call("GET", "/healthz")).status == 200


async def test_unknown_fields_are_422_naming_the_field(api: Api) -> None:
    user = await api.bidder()
    body = {"auction_id": str(uuid.uuid4()), "amount_kobo": PRICE, "client_bid_id": "a"}
    reply = await api.as_user(user, "POST", "/api/bids", {**body, "is_platform_bid": True})
    assert_api_error(reply, 422)
    assert "is_platform_bid" in reply.body["error"]["message"]


async def test_body_over_max_body_bytes_is_413_in_our_shape(api: Api) -> None:
    padding = "x" * (64 * 1024)
    body = json.dumps({"email": "a@b.ng", "role": "user", "kyc_status": "none", "pad": padding})
    reply = await api.service("PUT", f"/internal/users/{uuid.uuid4()}", data=body)
    assert_api_error(reply, 413)
    assert reply.code == "body_too_large"


async def test_smaller_max_body_bytes_setting_is_honoured(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(aiohttp_client, database_url, max_body_bytes=100)
    reply = await api.service("POST", "/internal/vehicles", data="{" + " " * 200 + "}")
    assert_api_error(reply, 413)


async def test_unknown_route_and_wrong_method_are_in_our_shape(api: Api) -> None:
    assert_api_error(await api.call("GET", "/api/nothing-here"), 404)
    assert_api_error(await api.call("DELETE", "/api/bids"), 405)
    assert_api_error(await api.service("GET", f"/internal/users/{uuid.uuid4()}"), 405)


async def test_a_wrong_method_names_the_allowed_ones_in_allow(api: Api) -> None:
    """RFC 9110: a 405 carries `Allow`, the methods the address takes."""
    for method, path, allowed in [
        ("DELETE", "/api/bids", {"POST"}),
        ("PUT", "/api/auctions", {"GET", "HEAD", "POST"}),
        ("GET", f"/internal/users/{uuid.uuid4()}", {"PUT"}),
        ("PATCH", f"/internal/users/{uuid.uuid4()}/wallet", {"GET", "HEAD"}),
    ]:
        reply = await api.service(method, path)
        assert_api_error(reply, 405, case=(method, path))
        assert reply.code == "method_not_allowed"
        named = {name.strip() for name in reply.headers.get("Allow", "").split(",")}
        assert named == allowed, (method, path, reply.headers.get("Allow"))


async def test_malformed_ids_in_paths_are_404(api: Api) -> None:
    for path in [
        "/api/auctions/123",
        "/api/auctions/%00",
        "/api/auctions/' OR 1=1 --",
        f"/internal/users/{'f' * 200}/wallet",
        "/internal/auctions/%E2%82%A6/bids",
    ]:
        assert_api_error(await api.service("GET", path), 404, case=path)
