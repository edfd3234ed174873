"""Running the server: uvloop, the app, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable

import uvloop
from aiohttp import web

from engine.config import Settings
from engine.gcpolicy import GcPolicy, running
from server.app import create_app, with_node_identity

logger = logging.getLogger(__name__)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    on_ready: Callable[[web.Application], None] | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; aiohttp then runs the cleanup contexts
    backwards: bids stop, the ledger is flushed, sockets close (1001).

    Raises ConfigError, before anything starts, for a development secret on an
    address beyond loopback."""
    settings.check_secrets_for(host)
    settings = with_node_identity(settings, host, port)
    app = create_app(settings)
    app.cleanup_ctx.append(functools.partial(_gc_policy, GcPolicy(settings.gc_full_interval_s)))
    if on_ready is not None:

        async def ready(app: web.Application) -> None:
            on_ready(app)

        app.on_startup.append(ready)
    if settings.uses_dev_secrets:
        logger.warning(
            "serving on %s with development secrets: set JWT_SECRET and INTERNAL_API_TOKEN", host
        )
    web.run_app(
        app,
        host=host,
        port=port,
        loop=uvloop.new_event_loop(),
        access_log=None,
        shutdown_timeout=10,
        # aiohttp rounds timers longer than this up to a whole second, so every
        # socket opened within one second would send its heartbeat ping in the same
        # loop iteration: thousands at once, a stall every heartbeat (bench/README.md,
        # "rooms"). Timers up to a minute stay exact.
        timeout_ceil_threshold=60,
        print=lambda message: logger.info("%s", message),
    )
    return 0


async def _gc_policy(policy: GcPolicy, app: web.Application) -> AsyncIterator[None]:
    """The serving process's garbage collection (engine/gcpolicy.py), on a timer."""
    async with running(policy):
        yield
