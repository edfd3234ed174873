"""What the black-box tests share: the engine as its own process, spoken to
only as API.md describes — the platform over the internal API with the service
token, people with JWTs as the identity service issues them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from tests.ws_helpers import SECRET, ServerProcess, process_env

SERVICE_TOKEN = "ws-test-internal-token"  # process_env's INTERNAL_API_TOKEN


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def bearer_for(user_id: uuid.UUID, role: str = "user") -> str:
    """A token as the platform's identity service issues them (API.md: HS256 over
    JWT_SECRET, claims `sub`, `role`, `exp`)."""
    claims = {"sub": str(user_id), "role": role, "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@dataclass
class Client:
    server: ServerProcess
    http: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.http.request(
            method, f"{self.server.base}{path}", json=body, headers=headers
        ) as reply:
            return reply.status, await reply.json()

    async def platform(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.call(method, path, SERVICE_TOKEN, body)
        assert status in (200, 201), (path, status, answer)
        return answer

    async def new_user(self, role: str = "user", funds: int = 0) -> uuid.UUID:
        """A KYC-approved user of `role`, its wallet credited `funds`."""
        user_id = uuid.uuid4()
        await self.platform(
            "PUT",
            f"/internal/users/{user_id}",
            {
                "email": f"{user_id.hex[:12]}@example.test",
                "role": role,
                "kyc_status": "approved",
                "display_name": "Black-box",
            },
        )
        if funds:
            await self.platform(
                "POST",
                f"/internal/users/{user_id}/wallet/credits",
                {"amount_kobo": funds, "reference": f"fund-{user_id.hex}"},
            )
        return user_id

    async def new_vehicle(self, dealer: uuid.UUID, make: str, model: str, year: int) -> str:
        """A vehicle the dealer lists; its id."""
        vin = uuid.uuid4().hex.upper()[:17]  # 0-9 and A-F: all in a VIN's alphabet
        vehicle = await self.platform(
            "POST",
            "/internal/vehicles",
            {"vin": vin, "year": year, "make": make, "model": model, "listed_by": str(dealer)},
        )
        return vehicle["vehicle"]["id"]  # type: ignore[no-any-return]


@asynccontextmanager
async def engine_process(
    database_url: str,
) -> AsyncIterator[tuple[ServerProcess, aiohttp.ClientSession]]:
    """The engine as its own server process with its jobs, and an HTTP session."""
    server = await ServerProcess.start(process_env(database_url))
    try:
        async with aiohttp.ClientSession() as http:
            yield server, http
    finally:
        await server.stop()
