"""LEDGER_MODE=baseline: the server takes bids through the seed's per-bid
transaction (for side-by-side measurement) and the room still hears of them."""

from __future__ import annotations

import time
from typing import Any

from engine.tokens import mint_token
from server.app import PublishingPerBidLedger, create_app
from tests.factories import create_auction, create_user
from tests.http_helpers import SECRET, settings
from web.keys import BIDS

PRICE = 100_000_000


async def test_baseline_mode_places_bids_by_the_per_bid_transaction(
    pool: Any, database_url: str, aiohttp_client: Any
) -> None:
    now = time.time_ns() // 1_000_000
    seller = await create_user(pool, role="dealer")
    auction = await create_auction(pool, seller=seller, start_ms=now - 1000, end_ms=now + 3_600_000)
    bidder = await create_user(pool, balance_kobo=10**12)
    app = create_app(settings(database_url, ledger_mode="baseline"), run_jobs=False)
    client = await aiohttp_client(app)
    assert isinstance(app[BIDS], PublishingPerBidLedger)
    token = mint_token(bidder, "user", SECRET)
    async with client.ws_connect(f"/ws/auctions/{auction}") as watcher:
        snapshot = await watcher.receive_json()
        reply = await client.post(
            "/api/bids",
            json={"auction_id": str(auction), "amount_kobo": PRICE, "client_bid_id": "b1"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status == 201, await reply.text()
        event = await watcher.receive_json(timeout=5)
    assert (event["type"], event["seq"], event["amount_kobo"]) == (
        "bid",
        snapshot["seq"] + 1,
        PRICE,
    )
    row = await pool.fetchrow(
        "SELECT user_id, client_bid_id FROM bids WHERE auction_id = $1", auction
    )
    assert (row["user_id"], row["client_bid_id"]) == (bidder, "b1")


async def test_baseline_mode_refuses_maximums_and_writes_nothing(
    pool: Any, database_url: str, aiohttp_client: Any
) -> None:
    """The per-bid path has no maximums: one set beside it in the core would
    decide apart from its bids."""
    now = time.time_ns() // 1_000_000
    seller = await create_user(pool, role="dealer")
    auction = await create_auction(pool, seller=seller, start_ms=now - 1000, end_ms=now + 3_600_000)
    bidder = await create_user(pool, balance_kobo=10**12)
    client = await aiohttp_client(
        create_app(settings(database_url, ledger_mode="baseline"), run_jobs=False)
    )
    headers = {"Authorization": f"Bearer {mint_token(bidder, 'user', SECRET)}"}

    reply = await client.post(
        f"/api/auctions/{auction}/max",
        json={"max_kobo": 5 * PRICE, "client_bid_id": "m1"},
        headers=headers,
    )
    body = await reply.json()
    async with client.ws_connect(f"/ws/auctions/{auction}", headers=headers) as ws:
        await ws.receive_json()  # snapshot
        await ws.send_json({"type": "auth", "token": headers["Authorization"][7:]})
        await ws.receive_json()  # the bidder's snapshot
        await ws.receive_json()  # and `you`
        await ws.send_json({"type": "max", "max_kobo": 5 * PRICE, "client_bid_id": "m2"})
        frame = await ws.receive_json(timeout=5)

    assert (reply.status, body["error"]["code"]) == (409, "maximums_not_offered")
    assert (frame["type"], frame["status"], frame["code"]) == (
        "bid_result",
        "rejected",
        "maximums_not_offered",
    )
    assert await pool.fetchval("SELECT count(*) FROM max_bids") == 0
    assert await pool.fetchval("SELECT count(*) FROM bids") == 0
