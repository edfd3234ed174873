"""The internal HTTP API (API.md "Internal HTTP"): the remaining platform's calls.

Every route needs the platform's service token. Users, wallets, vehicles and
auctions are written here; staff actions (`/internal/admin/...`, web/admin_api.py)
and settlement payments (web/settlement_api.py) have their own modules.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from engine import auctions, users, vehicles, wallet
from engine.auctions import BidHistory, NewAuction
from engine.sequencer import Sequencer
from engine.users import UserUpsert
from engine.vehicles import VehicleCreate
from engine.wallet import WalletChange
from web.auth import require_service
from web.errors import ApiError
from web.keys import CLOCK, DATABASE, MEMBERSHIP, SEQUENCER, SETTINGS
from web.messages import (
    AuctionEnvelope,
    ClusterBody,
    InternalAuctionCreate,
    UserEnvelope,
    VehicleEnvelope,
    json_response,
    path_uuid,
    read_json,
)


def _service(request: web.Request) -> tuple[asyncpg.Pool, Sequencer]:
    require_service(request, request.app[SETTINGS].internal_api_token)
    return request.app[DATABASE].pool, request.app[SEQUENCER]


async def put_user(request: web.Request) -> web.Response:
    pool, sequencer = _service(request)
    user_id = path_uuid(request)
    spec = await read_json(request, UserUpsert)
    user, created = await users.upsert_user(pool, sequencer, user_id, spec)
    await sequencer.settled(user_id)  # in effect on every node (API.md "Several nodes")
    return json_response(UserEnvelope(user), 201 if created else 200)


async def get_wallet(request: web.Request) -> web.Response:
    pool, sequencer = _service(request)
    return json_response(await wallet.read_wallet(pool, sequencer, path_uuid(request)))


async def post_credit(request: web.Request) -> web.Response:
    pool, sequencer = _service(request)
    user_id = path_uuid(request)
    change = await read_json(request, WalletChange)
    movement, new = await wallet.credit(pool, sequencer, user_id, change)
    await sequencer.settled(user_id)
    return json_response(movement, 201 if new else 200)


async def post_debit(request: web.Request) -> web.Response:
    pool, sequencer = _service(request)
    user_id = path_uuid(request)
    change = await read_json(request, WalletChange)
    movement, new = await wallet.debit(pool, sequencer, user_id, change)
    await sequencer.settled(user_id)
    return json_response(movement, 201 if new else 200)


async def post_vehicle(request: web.Request) -> web.Response:
    pool, _ = _service(request)
    spec = await read_json(request, VehicleCreate)
    vehicle = await vehicles.create_vehicle(pool, spec, request.app[CLOCK].now_ms())
    return json_response(VehicleEnvelope(vehicle), 201)


async def post_auction(request: web.Request) -> web.Response:
    pool, sequencer = _service(request)
    spec = await read_json(request, InternalAuctionCreate)
    new = NewAuction(fields=spec, created_by=spec.created_by, status=spec.status)
    auction = await auctions.create_auction(pool, sequencer, new, request.app[CLOCK].now_ms())
    return json_response(AuctionEnvelope(auction), 201)


async def get_bids(request: web.Request) -> web.Response:
    pool, _ = _service(request)
    history = await auctions.bid_history(pool, path_uuid(request))
    if history is None:
        raise ApiError(404, "not_found", "No auction has this id.")
    return json_response(BidHistory(history))


async def get_cluster(request: web.Request) -> web.Response:
    """The nodes and who holds each partition's lease, as the database has it now."""
    _service(request)
    membership = request.app[MEMBERSHIP]
    view = await membership.table.view()
    return json_response(ClusterBody(membership.node_id, view.nodes, view.partitions))


def install(app: web.Application) -> None:
    app.router.add_put("/internal/users/{id}", put_user)
    app.router.add_get("/internal/users/{id}/wallet", get_wallet)
    app.router.add_post("/internal/users/{id}/wallet/credits", post_credit)
    app.router.add_post("/internal/users/{id}/wallet/debits", post_debit)
    app.router.add_post("/internal/vehicles", post_vehicle)
    app.router.add_post("/internal/auctions", post_auction)
    app.router.add_get("/internal/auctions/{id}/bids", get_bids)
    app.router.add_get("/internal/cluster", get_cluster)
