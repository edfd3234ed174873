"""`PUT /internal/users/{id}`: the platform's users, upserted, and the core following."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.roles import PLATFORM_USER_ID
from tests.http_helpers import PRICE, Api, start


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


def user_body(**fields: Any) -> dict[str, Any]:
    body = {
        "email": f"{uuid.uuid4().hex[:10]}@example.test",
        "role": "user",
        "kyc_status": "approved",
        "display_name": "Ada",
    }
    return {**body, **fields}


async def test_new_user_is_201_with_the_user(api: Api) -> None:
    user_id = uuid.uuid4()
    body = user_body(role="dealer", kyc_status="pending")

    reply = await api.service("PUT", f"/internal/users/{user_id}", body)

    assert reply.status == 201, reply.text
    user = reply.body["user"]
    assert user["id"] == str(user_id)
    assert {k: user[k] for k in body} == body
    assert (user["is_active"], user["balance_kobo"]) == (True, 0)


async def test_known_user_is_updated_with_200(api: Api) -> None:
    user_id = uuid.uuid4()
    assert (await api.service("PUT", f"/internal/users/{user_id}", user_body())).status == 201

    reply = await api.service(
        "PUT", f"/internal/users/{user_id}", user_body(role="dealer", display_name=None)
    )

    assert reply.status == 200, reply.text
    assert (reply.body["user"]["role"], reply.body["user"]["display_name"]) == ("dealer", None)
    row = await api.pool.fetchrow("SELECT role FROM users WHERE id = $1", user_id)
    assert row["role"] == "dealer"


async def test_kyc_approval_reaches_the_core_at_once(api: Api) -> None:
    auction = await api.live_auction()
    user_id = await api.user(kyc_status="pending", balance_kobo=10**10)
    assert (await api.bid(user_id, auction, PRICE)).code == "not_eligible"

    email = await api.pool.fetchval("SELECT email FROM users WHERE id = $1", user_id)
    await api.service("PUT", f"/internal/users/{user_id}", user_body(email=email))

    assert (await api.bid(user_id, auction, PRICE)).status == 201


async def test_deactivated_user_can_no_longer_bid_or_sign_in(api: Api) -> None:
    auction = await api.live_auction()
    user_id = await api.bidder()
    email = await api.pool.fetchval("SELECT email FROM users WHERE id = $1", user_id)
    body = user_body(email=email, is_active=False)
    assert (await api.service("PUT", f"/internal/users/{user_id}", body)).status == 200
    reply = await api.bid(user_id, auction, PRICE)
    assert (reply.status, reply.code) == (401, "unauthenticated")
    core = api.sequencer.core
    assert not core.user(api.sequencer.registry.user_handle(user_id)).eligible


async def test_upsert_keeps_the_balance(api: Api) -> None:
    user_id = await api.user(balance_kobo=12_345)
    email = await api.pool.fetchval("SELECT email FROM users WHERE id = $1", user_id)
    reply = await api.service("PUT", f"/internal/users/{user_id}", user_body(email=email))
    assert reply.body["user"]["balance_kobo"] == 12_345
    assert (await api.wallet(user_id))["balance_kobo"] == 12_345


async def test_email_of_another_user_is_409_duplicate_email(api: Api) -> None:
    body = user_body()
    assert (await api.service("PUT", f"/internal/users/{uuid.uuid4()}", body)).status == 201
    reply = await api.service("PUT", f"/internal/users/{uuid.uuid4()}", body)
    assert (reply.status, reply.code) == (409, "duplicate_email")


INVALID_FIELDS = [
    ("role", "system", "invalid_role"),
    ("role", "superuser", "invalid_role"),
    ("kyc_status", "maybe", "invalid_kyc_status"),
    ("email", "not-an-email", "invalid_email"),
    ("email", "a@b.ng\u0000", "invalid"),
    ("display_name", "x" * 101, "invalid"),
    ("is_active", "yes", "invalid"),
]


async def test_invalid_fields_are_422(api: Api) -> None:
    for field, value, code in INVALID_FIELDS:
        body = user_body(**{field: value})
        reply = await api.service("PUT", f"/internal/users/{uuid.uuid4()}", body)
        assert (reply.status, reply.code) == (422, code), (field, value)
    assert await api.pool.fetchval("SELECT count(*) FROM users") == 1  # the platform's own


async def test_unknown_field_is_422(api: Api) -> None:
    reply = await api.service(
        "PUT", f"/internal/users/{uuid.uuid4()}", user_body(wallet_balance=10**9)
    )
    assert (reply.status, reply.code) == (422, "invalid")
    assert "wallet_balance" in reply.body["error"]["message"]


async def test_the_platform_account_cannot_be_overwritten(api: Api) -> None:
    reply = await api.service("PUT", f"/internal/users/{PLATFORM_USER_ID}", user_body())
    assert (reply.status, reply.code) == (409, "reserved_user")


async def test_malformed_user_id_is_404(api: Api) -> None:
    reply = await api.service("PUT", "/internal/users/12345", user_body())
    assert (reply.status, reply.code) == (404, "not_found")


async def test_internal_routes_need_the_service_token(api: Api) -> None:
    user_id = await api.bidder()
    routes = [
        ("PUT", f"/internal/users/{user_id}", user_body()),
        ("GET", f"/internal/users/{user_id}/wallet", None),
        ("POST", f"/internal/users/{user_id}/wallet/credits", {"amount_kobo": 1, "reference": "r"}),
        ("POST", f"/internal/users/{user_id}/wallet/debits", {"amount_kobo": 1, "reference": "r"}),
        ("POST", "/internal/vehicles", {}),
        ("POST", "/internal/auctions", {}),
        ("GET", f"/internal/auctions/{uuid.uuid4()}/bids", None),
    ]
    for token in (None, "wrong-token"):
        for method, path, body in routes:
            reply = await api.call(method, path, token=token, json_body=body)
            assert (reply.status, reply.code) == (401, "unauthenticated"), (token, method, path)


async def test_a_bidder_token_does_not_open_internal_routes(api: Api) -> None:
    user_id = await api.bidder()
    reply = await api.as_user(user_id, "GET", f"/internal/users/{user_id}/wallet", role="admin")
    assert (reply.status, reply.code) == (401, "unauthenticated")
