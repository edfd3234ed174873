"""The HTTP API tests' world: the real app on a real PostgreSQL, driven over HTTP.

Everything is set up the way the remaining platform and bidders would do it
(users, credits, vehicles and auctions through the internal API, bids with a
JWT); only making an auction live is done in SQL plus `load_auction`, where
the scheduler would wait for its start.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from engine.config import Settings
from engine.sequencer import Sequencer
from engine.tokens import mint_token
from server.app import create_app
from tests.factories import random_vin
from web.keys import DATABASE, SEQUENCER

SECRET = "test-jwt-secret-long-enough-for-hs256-keys"
SERVICE_TOKEN = "test-service-token-for-the-platform"
HOUR_MS = 3_600_000
PRICE = 100_000_000  # ₦1,000,000
STEP = 5_000_000  # ₦50,000
RICH = 10**12  # kobo: enough buying power for any test bid

_references = itertools.count(1)


#: The bid log's signing seed of the apps the tests start (none kept on disk).
LOG_SIGNING_SEED = bytes(range(32))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def settings(database_url: str, **overrides: Any) -> Settings:
    base = Settings(
        database_url=database_url,
        jwt_secret=SECRET,
        internal_api_token=SERVICE_TOKEN,
        log_signing_key=LOG_SIGNING_SEED,
    )
    return dataclasses.replace(base, **overrides)


async def start(aiohttp_client: Any, database_url: str, **overrides: Any) -> Api:
    """The app on the test's database, served on a local port."""
    return Api(await aiohttp_client(create_app(settings(database_url, **overrides))))


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any
    text: str

    @property
    def code(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("code") if isinstance(error, dict) else None


class Api:
    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def pool(self) -> Any:
        return self.client.server.app[DATABASE].pool

    @property
    def sequencer(self) -> Sequencer:
        return self.client.server.app[SEQUENCER]

    # ---- requests ----------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body)
            sent.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, data=data, headers=sent) as response:
            text = await response.text()
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            return Reply(response.status, body, response.headers, text)

    async def service(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.call(method, path, token=SERVICE_TOKEN, json_body=body, **kwargs)

    async def as_user(
        self, user_id: uuid.UUID, method: str, path: str, body: Any = None, *, role: str = "user"
    ) -> Reply:
        return await self.call(method, path, token=token_for(user_id, role), json_body=body)

    # ---- the world ---------------------------------------------------------------

    async def user(
        self,
        *,
        role: str = "user",
        kyc_status: str = "approved",
        balance_kobo: int = 0,
        is_active: bool = True,
    ) -> uuid.UUID:
        user_id = uuid.uuid4()
        reply = await self.service(
            "PUT",
            f"/internal/users/{user_id}",
            {
                "email": f"{user_id.hex[:12]}@example.test",
                "role": role,
                "kyc_status": kyc_status,
                "display_name": f"Test {role}",
                "is_active": is_active,
            },
        )
        assert reply.status == 201, reply.text
        if balance_kobo:
            assert (await self.credit(user_id, balance_kobo)).status == 201
        return user_id

    async def bidder(self, balance_kobo: int = RICH) -> uuid.UUID:
        return await self.user(balance_kobo=balance_kobo)

    async def credit(
        self, user_id: uuid.UUID, amount_kobo: int, reference: str | None = None
    ) -> Reply:
        return await self.service(
            "POST",
            f"/internal/users/{user_id}/wallet/credits",
            {
                "amount_kobo": amount_kobo,
                "reference": f"ref-{next(_references)}" if reference is None else reference,
            },
        )

    async def debit(
        self, user_id: uuid.UUID, amount_kobo: int, reference: str | None = None
    ) -> Reply:
        return await self.service(
            "POST",
            f"/internal/users/{user_id}/wallet/debits",
            {
                "amount_kobo": amount_kobo,
                "reference": f"out-{next(_references)}" if reference is None else reference,
            },
        )

    async def wallet(self, user_id: uuid.UUID) -> dict[str, Any]:
        reply = await self.service("GET", f"/internal/users/{user_id}/wallet")
        assert reply.status == 200, reply.text
        body: dict[str, Any] = reply.body
        return body

    async def vehicle(self, listed_by: uuid.UUID, **fields: Any) -> uuid.UUID:
        body = {"vin": random_vin(), "year": 2019, "make": "Toyota", "model": "Camry"}
        reply = await self.service(
            "POST", "/internal/vehicles", {**body, **fields, "listed_by": str(listed_by)}
        )
        assert reply.status == 201, reply.text
        return uuid.UUID(reply.body["vehicle"]["id"])

    async def seller(self) -> uuid.UUID:
        return await self.user(role="dealer")

    def auction_body(self, vehicle_id: uuid.UUID, **fields: Any) -> dict[str, Any]:
        start = now_ms() - 1000
        body = {
            "vehicle_id": str(vehicle_id),
            "start_time_ms": start,
            "end_time_ms": start + HOUR_MS,
            "start_price_kobo": PRICE,
            "bid_increment_kobo": STEP,
        }
        return {**body, **fields}

    async def create_auction(
        self, created_by: uuid.UUID, vehicle_id: uuid.UUID | None = None, **fields: Any
    ) -> Reply:
        if vehicle_id is None:
            vehicle_id = await self.vehicle(created_by)
        body = self.auction_body(vehicle_id, created_by=str(created_by), **fields)
        return await self.service("POST", "/internal/auctions", body)

    async def live_auction(self, seller: uuid.UUID | None = None, **fields: Any) -> uuid.UUID:
        """A draft made through the API, then opened as the scheduler will: in the
        ledger first, then taken into the core."""
        seller = seller or await self.seller()
        reply = await self.create_auction(seller, status="draft", **fields)
        assert reply.status == 201, reply.text
        auction_id = uuid.UUID(reply.body["auction"]["id"])
        await self.open_in_ledger(auction_id)
        return auction_id

    async def open_in_ledger(self, auction_id: uuid.UUID) -> None:
        await self.pool.execute("UPDATE auctions SET status = 'live' WHERE id = $1", auction_id)
        await self.pool.execute(
            "UPDATE vehicles SET status = 'in_auction'"
            " WHERE id = (SELECT vehicle_id FROM auctions WHERE id = $1)",
            auction_id,
        )
        assert await self.sequencer.load_auction(auction_id)

    async def bid(
        self,
        user_id: uuid.UUID,
        auction_id: uuid.UUID,
        amount_kobo: Any,
        client_bid_id: str | None = None,
        *,
        role: str = "user",
    ) -> Reply:
        body = {
            "auction_id": str(auction_id),
            "amount_kobo": amount_kobo,
            "client_bid_id": client_bid_id or uuid.uuid4().hex,
        }
        return await self.as_user(user_id, "POST", "/api/bids", body, role=role)


def token_for(user_id: uuid.UUID, role: str = "user", ttl_s: int = 3600) -> str:
    return mint_token(user_id, role, SECRET, ttl_s)
