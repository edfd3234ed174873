"""Hostile tokens, over HTTP and the room socket: expired, badly signed, `alg: none`,
another algorithm, tampered claims, malformed, huge; and role claims the users row
contradicts. Only `sub` of a token signed with JWT_SECRET counts; the role is the
row's. Every refusal is API.md's (401 `unauthenticated`, 403 `forbidden`; on a
socket an `error` that leaves it open as a guest), and nothing reaches the ledger."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest

from tests.http_helpers import PRICE, SECRET, SERVICE_TOKEN, STEP, Api, Reply, start, token_for
from tests.test_hostile_ledger import changed, fingerprint
from tests.test_hostile_requests import assert_api_error
from tests.ws_helpers import RoomClient

OTHER_SECRET = "another-secret-that-is-also-32-bytes-or-longer"


def _b64(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(user: uuid.UUID, **extra: Any) -> dict[str, Any]:
    return {"sub": str(user), "role": "admin", "exp": int(time.time()) + 600, **extra}


def _resigned(token: str, claims: dict[str, Any]) -> str:
    """The token's header and signature around other claims (a tampered payload)."""
    header, _, signature = token.split(".")
    return f"{header}.{_b64(claims)}.{signature}"


def _quietly(claims: dict[str, Any], algorithm: str) -> str:
    """Signed with JWT_SECRET by another algorithm (PyJWT warns the key is short for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, SECRET, algorithm=algorithm)


#: Tokens that prove nothing about `user`, whose row exists and is active.
BAD_TOKENS: dict[str, Callable[[uuid.UUID], str]] = {
    "expired": lambda user: jwt.encode(
        _claims(user, exp=int(time.time()) - 1), SECRET, algorithm="HS256"
    ),
    "wrong secret": lambda user: jwt.encode(_claims(user), OTHER_SECRET, algorithm="HS256"),
    "alg none": lambda user: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}.",
    "alg None with a signature": lambda user: (
        f"{_b64({'alg': 'None'})}.{_b64(_claims(user))}.{_b64(b'sig')}"
    ),
    "HS512 with the secret": lambda user: _quietly(_claims(user), "HS512"),
    "HS384 with the secret": lambda user: _quietly(_claims(user), "HS384"),
    "tampered sub": lambda user: _resigned(
        jwt.encode(_claims(uuid.uuid4()), SECRET, algorithm="HS256"), _claims(user)
    ),
    "tampered exp": lambda user: _resigned(
        jwt.encode(_claims(user, exp=int(time.time()) - 60), SECRET, algorithm="HS256"),
        _claims(user),
    ),
    "no exp": lambda user: jwt.encode({"sub": str(user)}, SECRET, algorithm="HS256"),
    "not yet valid": lambda user: jwt.encode(
        _claims(user, nbf=int(time.time()) + 3600), SECRET, algorithm="HS256"
    ),
    "no sub": lambda user: jwt.encode(
        {"exp": int(time.time()) + 60, "user": str(user)}, SECRET, algorithm="HS256"
    ),
    "sub a number": lambda user: jwt.encode(
        {"sub": 42, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    ),
    "sub a list": lambda user: jwt.encode(
        {"sub": [str(user)], "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    ),
    "sub SQL": lambda user: jwt.encode(
        {"sub": f"{user}' OR '1'='1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    ),
    "unknown sub": lambda user: token_for(uuid.uuid4(), "admin"),
    "the service token": lambda user: SERVICE_TOKEN,
    "empty": lambda user: "",
    "dots": lambda user: "..",
    "two parts": lambda user: f"{_b64({'alg': 'HS256'})}.{_b64(_claims(user))}",
    "four parts": lambda user: token_for(user) + ".extra",
    "not base64": lambda user: "%%%.***.$$$",
    "header not json": lambda user: f"{_b64(b'not json')}.{_b64(_claims(user))}.{_b64(b'x')}",
    "header a list": lambda user: f"{_b64(b'[1]')}.{_b64(_claims(user))}.{_b64(b'x')}",
    "payload not json": lambda user: f"{_b64({'alg': 'HS256'})}.{_b64(b'{{{')}.{_b64(b'x')}",
    "nul inside": lambda user: token_for(user)[:20] + "\x00" + token_for(user)[20:],
    "unicode": lambda user: "тoken.ωith.ünïcode😀",
    "long but under the header limit": lambda user: "a" * 7_000,
}


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    # One room socket tries every bad token back to back: more frames than a second's.
    return await start(
        aiohttp_client, database_url, rate_limit_ip_per_min=100_000, ws_frames_per_s=100_000
    )


async def _with_token(api: Api, method: str, path: str, token: str, body: Any) -> Reply:
    # Some tokens cannot travel in a header at all (NUL): aiohttp refuses to send them.
    try:
        return await api.call(method, path, token=token, json_body=body)
    except ValueError:
        return Reply(401, {"error": {"code": "unauthenticated", "message": "-"}}, {}, "")


async def test_tokens_that_prove_nothing_are_401_on_every_kind_of_route(api: Api) -> None:
    admin = await api.user(role="admin", balance_kobo=10**12)
    auction = await api.live_auction()
    routes = [
        (
            "POST",
            "/api/bids",
            {"auction_id": str(auction), "amount_kobo": PRICE, "client_bid_id": "x"},
        ),
        ("POST", "/api/auctions", api.auction_body(await api.vehicle(admin))),
        ("POST", f"/internal/admin/auctions/{auction}/cancel", {"reason": "forged"}),
    ]
    before = await fingerprint(api.pool)
    for kind, make in BAD_TOKENS.items():
        token = make(admin)
        for method, path, body in routes:
            reply = await _with_token(api, method, path, token, body)
            if reply.headers:
                assert_api_error(reply, 401, case=(kind, path))
            assert reply.code == "unauthenticated", (kind, path, reply.text)
    assert changed(before, await fingerprint(api.pool)) == set()


async def test_only_the_service_token_opens_internal_routes(api: Api) -> None:
    admin = await api.user(role="admin")
    tokens = [
        token_for(admin, "admin"),  # a staff JWT is not the platform
        SERVICE_TOKEN[:-1],
        SERVICE_TOKEN + "x",
        SERVICE_TOKEN.upper(),
        f"{SERVICE_TOKEN[:10]} {SERVICE_TOKEN[10:]}",
        SERVICE_TOKEN * 2,
    ]
    before = await fingerprint(api.pool)
    for token in tokens:
        for method, path, body in [
            ("GET", f"/internal/users/{admin}/wallet", None),
            (
                "POST",
                f"/internal/users/{admin}/wallet/credits",
                {"amount_kobo": 1, "reference": "r"},
            ),
            (
                "PUT",
                f"/internal/users/{uuid.uuid4()}",
                {"email": "a@b.ng", "role": "admin", "kyc_status": "approved"},
            ),
        ]:
            reply = await api.call(method, path, token=token, json_body=body)
            assert_api_error(reply, 401, case=(token[:12], path))
    assert changed(before, await fingerprint(api.pool)) == set()


async def test_the_service_token_cannot_act_as_staff(api: Api) -> None:
    auction = await api.live_auction()
    reply = await api.service(
        "POST", f"/internal/admin/auctions/{auction}/cancel", {"reason": "platform says so"}
    )
    assert_api_error(reply, 401)
    assert await api.pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == "live"


# ---- role claims the users row contradicts ------------------------------------------------


async def test_an_admin_claim_on_a_user_row_is_not_staff(api: Api) -> None:
    user = await api.bidder()
    auction = await api.live_auction()
    before = await fingerprint(api.pool)
    for action in ("cancel", "force-end", "extend", "void"):
        reply = await api.call(
            "POST",
            f"/internal/admin/auctions/{auction}/{action}",
            token=token_for(user, "admin"),
            json_body={"reason": "I say I am an admin"},
        )
        assert_api_error(reply, 403, case=action)
    create = await api.as_user(
        user, "POST", "/api/auctions", api.auction_body(uuid.uuid4()), role="admin"
    )
    assert_api_error(create, 403)
    assert changed(before, await fingerprint(api.pool)) == set()


async def test_a_user_claim_on_a_concierge_row_cannot_bid(api: Api) -> None:
    concierge = await api.user(role="concierge", balance_kobo=10**12)
    auction = await api.live_auction()
    before = await fingerprint(api.pool)
    reply = await api.bid(concierge, auction, PRICE, role="user")
    assert_api_error(reply, 403)
    assert changed(before, await fingerprint(api.pool)) == set()


async def test_a_manager_claim_on_a_dealer_row_cannot_schedule(api: Api) -> None:
    dealer = await api.seller()
    vehicle = await api.vehicle(dealer)
    body = api.auction_body(vehicle, status="scheduled")
    reply = await api.as_user(dealer, "POST", "/api/auctions", body, role="manager")
    assert_api_error(reply, 403)
    assert reply.code == "approval_required"
    assert (
        await api.pool.fetchval("SELECT count(*) FROM auctions WHERE vehicle_id = $1", vehicle) == 0
    )


async def test_a_staff_row_acts_as_staff_whatever_its_claim_says(api: Api) -> None:
    manager = await api.user(role="manager")
    auction = await api.live_auction()
    reply = await api.call(
        "POST",
        f"/internal/admin/auctions/{auction}/cancel",
        token=token_for(manager, "user"),
        json_body={"reason": "Seller withdrew the car"},
    )
    assert reply.status == 200, reply.text


async def test_a_bid_is_placed_as_the_sub_and_nobody_else(api: Api) -> None:
    alice, bob = await api.bidder(), await api.bidder()
    auction = await api.live_auction()
    claims = {"sub": str(alice), "role": "user", "user_id": str(bob), "uid": str(bob)}
    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    body = {"auction_id": str(auction), "amount_kobo": PRICE, "client_bid_id": "who"}
    assert (await api.call("POST", "/api/bids", token=token, json_body=body)).status == 201
    assert (
        await api.pool.fetchval("SELECT user_id FROM bids WHERE auction_id = $1", auction) == alice
    )


async def test_an_inactive_users_valid_token_is_401(api: Api) -> None:
    user = await api.user(balance_kobo=10**12, is_active=False)
    auction = await api.live_auction()
    assert_api_error(await api.bid(user, auction, PRICE), 401)


# ---- huge headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer " + "a" * 9_000},
        {"Authorization": "Bearer " + "a" * 70_000},
        {f"X-Header-{i}": "v" for i in range(200)},
    ],
    ids=["token over 8 KiB", "token over 64 KiB", "200 headers"],
)
async def test_a_request_with_huge_headers_is_refused_in_the_error_shape(
    api: Api, headers: dict[str, str]
) -> None:
    auction = await api.live_auction()
    body = {"auction_id": str(auction), "amount_kobo": PRICE, "client_bid_id": "huge"}
    reply = await api.call("POST", "/api/bids", json_body=body, headers=headers)
    assert_api_error(reply, 400, 401, 413, 431)
    assert "aaaaaaaa" not in reply.text  # the header is not echoed back
    assert await api.pool.fetchval("SELECT count(*) FROM bids") == 0
    assert (await api.call("GET", "/healthz")).status == 200


# ---- the room socket -----------------------------------------------------------------------------


async def test_a_bad_auth_frame_leaves_the_socket_open_as_a_guest(api: Api) -> None:
    admin = await api.user(role="admin", balance_kobo=10**12)
    auction = await api.live_auction()
    tokens = {kind: make(admin) for kind, make in BAD_TOKENS.items()}
    tokens["huge"] = "x" * 60_000
    before = await fingerprint(api.pool)
    async with aiohttp.ClientSession() as session:
        client = await RoomClient.connect(session, _room_url(api, auction))
        for kind, token in tokens.items():
            await client.send(type="auth", token=token_for(admin, "admin"))  # signed in first
            assert (await client.expect("snapshot"))["you"] is not None, kind
            await client.send(type="auth", token=token)
            assert (await client.expect("error"))["code"] == "unauthenticated", kind
            await client.send(type="bid", amount_kobo=PRICE + STEP, client_bid_id=kind)
            assert (await client.expect("error"))["code"] == "unauthenticated", kind
        await client.send(type="ping", client_time_ms=9)
        assert (await client.expect("pong"))["client_time_ms"] == 9
        await client.close()
    assert changed(before, await fingerprint(api.pool)) == set()


def _room_url(api: Api, auction: uuid.UUID) -> str:
    return str(api.client.make_url(f"/ws/auctions/{auction}")).replace("http", "ws", 1)


async def test_a_user_claim_on_a_concierge_row_cannot_bid_on_the_socket(api: Api) -> None:
    concierge = await api.user(role="concierge", balance_kobo=10**12)
    admin_claimed = await api.user(role="user", kyc_status="pending", balance_kobo=10**12)
    auction = await api.live_auction()
    before = await fingerprint(api.pool)
    url = _room_url(api, auction)
    async with aiohttp.ClientSession() as session:
        for user, claim in ((concierge, "user"), (admin_claimed, "admin")):
            client = await RoomClient.connect(session, url, token=token_for(user, claim))
            result = await client.bid(PRICE)
            assert (result["status"], result["code"]) == ("rejected", "not_eligible")
            await client.close()
    assert changed(before, await fingerprint(api.pool)) == set()


async def test_an_authorization_header_on_the_handshake_does_not_sign_in(api: Api) -> None:
    bidder = await api.bidder()
    auction = await api.live_auction()
    url = _room_url(api, auction)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token_for(bidder)}"})
        client = RoomClient(ws)
        snapshot = await client.expect("snapshot")
        assert snapshot["you"] is None  # a guest until `auth`
        await client.send(type="bid", amount_kobo=PRICE, client_bid_id="header")
        assert (await client.expect("error"))["code"] == "unauthenticated"
        await client.close()
    assert await api.pool.fetchval("SELECT count(*) FROM bids") == 0
