"""The aiohttp application: what runs, in what order, and the routes.

Start-up (cleanup contexts, in order): the database (migrated), the sequencer
(recovery: the core rebuilt and verified from the ledger, then the ledger
writer), the event bus and rooms. `/readyz` turns 200 once all of that is up
and the ledger takes writes. Shutdown runs them backwards: stop taking bids,
flush the ledger, close the sockets.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.clock import Clock, SystemClock
from engine.config import Settings
from engine.database import Database, open_database
from engine.sequencer import Sequencer
from web.auth import AuthError, bearer, is_service, verify_token
from web.errors import ApiError, Handler, error_middleware, install_parser_errors
from web.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter, ip_key

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
DATABASE = web.AppKey("database", Database)
SEQUENCER = web.AppKey("sequencer", Sequencer)
LIMITER = web.AppKey("limiter", RateLimiter)

RouteInstaller = Callable[[web.Application], None]
ContextInstaller = Callable[[web.Application], None]

#: Route modules add themselves here (`install(app)`), in order.
ROUTE_MODULES = (
    "web.health",
    "web.public_api",
    "web.internal_api",
    "web.ws",
    "web.room_page",
    "web.settlement_api",
    "web.admin_api",
    "web.vehicles_api",
    "web.openapi",
)


def create_app(
    settings: Settings, *, clock: Clock | None = None, run_jobs: bool = True
) -> web.Application:
    """The engine's app; `run_jobs=False` leaves the timed work (opening and
    ending auctions, reserve protection, settlement deadlines) to the caller."""
    install_parser_errors()
    app = web.Application(
        middlewares=[error_middleware, rate_limit_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_sequencer)
    app.cleanup_ctx.append(_rate_limiter)
    app.cleanup_ctx.append(_rooms)
    app.cleanup_ctx.append(_bids)
    if run_jobs:
        app.cleanup_ctx.append(_jobs)
    for name in ROUTE_MODULES:
        module = __import__(name, fromlist=["install"])
        module.install(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    async with open_database(app[SETTINGS], max_size=20) as database:
        app[DATABASE] = database
        yield


async def _sequencer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    sequencer = await Sequencer.open(
        app[DATABASE].pool,
        clock=app[CLOCK],
        batch_max=settings.ledger_batch_max,
        window_ms=settings.ledger_batch_window_ms,
    )
    app[SEQUENCER] = sequencer
    yield
    await sequencer.close()


async def _bids(app: web.Application) -> AsyncIterator[None]:
    from engine.per_bid_ledger import PerBidLedger
    from web.bidding import BIDS, PublishingBaseline
    from web.ws import ROOMS

    if app[SETTINGS].ledger_mode == "baseline":
        logger.warning("LEDGER_MODE=baseline: one locked transaction per bid, for measurement only")
        baseline = PerBidLedger(app[DATABASE].pool, clock=app[CLOCK])
        app[BIDS] = PublishingBaseline(baseline, app[ROOMS].publish_bids)
    else:
        app[BIDS] = app[SEQUENCER]
    yield


async def _jobs(app: web.Application) -> AsyncIterator[None]:
    # Imported here: the jobs build on the rooms, which build on this module.
    from jobs.scheduler import running_jobs
    from web.admin_api import ADMIN_HOOKS, AdminHooks
    from web.ws import ROOMS

    rooms = app[ROOMS]
    async with running_jobs(app[DATABASE].pool, app[SEQUENCER], app[CLOCK], rooms) as jobs:
        if ADMIN_HOOKS not in app:  # a test may have set its own
            app[ADMIN_HOOKS] = AdminHooks(finisher=jobs.lifecycle, publisher=rooms)
        yield


async def _rate_limiter(app: web.Application) -> AsyncIterator[None]:
    redis_url = app[SETTINGS].redis_url
    if redis_url is None:
        app[LIMITER] = LocalRateLimiter()
        yield
        return
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    app[LIMITER] = RedisRateLimiter(redis)
    yield
    await redis.aclose()


async def _rooms(app: web.Application) -> AsyncIterator[None]:
    # Imported here: web.ws builds on this module's app keys.
    from web.ws import running_rooms

    async with running_rooms(app):
        yield


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """100/min per IP (an IPv6 client per /64; not for the platform's service
    token), 1000/min per user."""
    app = request.app
    settings = app[SETTINGS]
    if LIMITER not in app or request.path in _UNLIMITED:
        return await handler(request)
    if not is_service(request, settings.internal_api_token):
        wait = await app[LIMITER].hit(ip_key(request.remote), settings.rate_limit_ip_per_min, 60)
        _refuse_if_waiting(wait)
        user = _token_subject(request, settings.jwt_secret)
        if user is not None:
            wait = await app[LIMITER].hit(f"user:{user}", settings.rate_limit_user_per_min, 60)
            _refuse_if_waiting(wait)
    return await handler(request)


_UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics"})


def _token_subject(request: web.Request, secret: str) -> str | None:
    token = bearer(request)
    if token is None:
        return None
    try:
        return str(verify_token(token, secret))
    except AuthError:
        return None


def _refuse_if_waiting(wait: float | None) -> None:
    if wait is not None:
        seconds = max(1, round(wait + 0.5))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests; try again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )


def metrics_response() -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
