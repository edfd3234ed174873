"""`/healthz` (the process runs), `/readyz` (recovered and the ledger takes
writes), `/metrics` (Prometheus text format)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.errors import UNREACHABLE_OR_REFUSED
from web.keys import DATABASE, SEQUENCER


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready while the ledger takes writes: the writer has not given up, and the
    database answers now (the writer only notices an outage when it writes).

    An auction whose bid log does not verify is suspended on its own and leaves
    the node ready: every other auction is served, and another node would find
    the same rows. The body counts them (`bid_logs_broken`), as the metric does."""
    sequencer = request.app.get(SEQUENCER)
    database = request.app.get(DATABASE)
    if sequencer is None or database is None or not sequencer.available:
        return _unavailable()
    try:
        async with asyncio.timeout(1.0):
            await database.pool.fetchval("SELECT 1")
    except UNREACHABLE_OR_REFUSED:
        return _unavailable()
    return web.json_response({"status": "ready", "bid_logs_broken": len(sequencer.broken_logs)})


def _unavailable() -> web.Response:
    return web.json_response({"status": "unavailable"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def install(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
