"""Running the server: uvloop, the app, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from collections.abc import Callable

import uvloop
from aiohttp import web

from engine.config import Settings
from web.app import create_app

logger = logging.getLogger(__name__)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    on_ready: Callable[[web.Application], None] | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; aiohttp then runs the cleanup contexts
    backwards: bids stop, the ledger is flushed, sockets close (1001)."""
    app = create_app(settings)
    if on_ready is not None:

        async def ready(app: web.Application) -> None:
            on_ready(app)

        app.on_startup.append(ready)
    if settings.uses_dev_secrets:
        logger.warning("serving with development secrets: set JWT_SECRET and INTERNAL_API_TOKEN")
    web.run_app(
        app,
        host=host,
        port=port,
        loop=uvloop.new_event_loop(),
        access_log=None,
        shutdown_timeout=10,
        print=lambda message: logger.info("%s", message),
    )
    return 0
