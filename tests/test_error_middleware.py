"""The error middleware tells a client that left from a ledger that is away."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from web.errors import error_middleware


def app_raising(error: BaseException) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        raise error

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/", handler)
    return app


async def test_a_write_to_the_clients_closed_connection_is_not_a_ledger_outage(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(
        app_raising(aiohttp.ClientConnectionResetError("Cannot write to closing transport"))
    )
    with caplog.at_level(logging.INFO, logger="web.errors"):
        reply = await client.get("/")
    assert reply.status == 400
    assert (await reply.json())["error"]["code"] == "connection_lost"
    assert [r.getMessage() for r in caplog.records if "ledger" in r.getMessage()] == []
    assert any("the client left" in r.getMessage() for r in caplog.records)


async def test_a_refused_connection_to_the_ledger_is_still_unavailable(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(app_raising(ConnectionRefusedError("ledger")))
    with caplog.at_level(logging.WARNING, logger="web.errors"):
        reply = await client.get("/")
    assert reply.status == 503
    assert (await reply.json())["error"]["code"] == "unavailable"
    assert any("ledger unreachable" in r.getMessage() for r in caplog.records)
