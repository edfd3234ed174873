"""`/healthz` (the process runs), `/readyz` (recovered and the ledger takes
writes), `/metrics` (Prometheus text format)."""

from __future__ import annotations

from aiohttp import web

from web.app import SEQUENCER, metrics_response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    sequencer = request.app.get(SEQUENCER)
    if sequencer is None or not sequencer.available:
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    return metrics_response()


def install(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
