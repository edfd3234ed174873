"""Maximum (proxy) bids in the auction room, as API.md gives them: the `max` frame
and its `bid_result`, `is_proxy` on the room's `bid` events and in `recent_bids`,
`you.max_kobo` and `you.available_kobo` in the snapshot and the private `you`
messages, and the vehicle in the snapshot. The whole app on a real socket, the
real embedded PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from engine.standing import standing
from engine.tokens import mint_token
from tests.factories import create_auction, create_user
from tests.ws_helpers import SECRET, RoomClient, make_world, now_ms, serving

START = 100_000_000  # the factory's start price, kobo
STEP = 5_000_000  # the factory's increment, kobo
BALANCE = 10**12  # make_world's bidders'


def deposit(amount: int) -> int:
    return -(-amount // 5)  # 20 %, rounded up


async def send_max(client: RoomClient, max_kobo: Any, client_bid_id: str | None = None) -> Any:
    client_bid_id = client_bid_id or uuid.uuid4().hex
    await client.send(type="max", max_kobo=max_kobo, client_bid_id=client_bid_id)
    return await client.expect("bid_result", client_bid_id=client_bid_id)


async def test_a_max_is_answered_with_where_it_stands_and_its_row_shows_as_a_proxy(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    alice = world.bidders[0]
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        result = await send_max(a, START + 10 * STEP, "a-max")
        assert result == {
            "type": "bid_result",
            "client_bid_id": "a-max",
            "status": "accepted",
            "max": {"max_kobo": START + 10 * STEP, "leading": True, "price_kobo": START},
        }
        event = await guest.expect("bid")
        assert (event["amount_kobo"], event["bidder"], event["is_proxy"]) == (
            START,
            "Bidder 1",
            True,
        )
        # The same id again: the first outcome, nothing placed twice.
        assert await send_max(a, START + 30 * STEP, "a-max") == result
        assert await guest.silence(0.3) == []
        assert await pool.fetchval("SELECT count(*) FROM max_bids") == 1


async def test_a_bid_under_the_leaders_max_is_answered_in_order_and_its_bidder_told_outbid(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        b = await RoomClient.connect(session, url, token=world.token(bob))
        assert (await send_max(a, START + 10 * STEP))["status"] == "accepted"
        await guest.expect("bid")

        result = await b.bid(START + 2 * STEP)
        assert result["status"] == "accepted"  # accepted, then answered by the proxy
        trigger, answer = await guest.expect("bid"), await guest.expect("bid")
        assert answer["seq"] == trigger["seq"] + 1
        assert (trigger["bidder"], trigger["amount_kobo"], trigger["is_proxy"]) == (
            "Bidder 2",
            START + 2 * STEP,
            False,
        )
        assert (answer["bidder"], answer["amount_kobo"], answer["is_proxy"]) == (
            "Bidder 1",
            START + 3 * STEP,  # min(max, bid + increment)
            True,
        )
        assert await b.expect("you", status="outbid") == {
            "type": "you",
            "status": "outbid",
            "max_kobo": None,
            "available_kobo": BALANCE,
        }
        assert await a.expect("you", status="winning") == {
            "type": "you",
            "status": "winning",
            "max_kobo": START + 10 * STEP,
            "available_kobo": BALANCE - deposit(START + 10 * STEP),  # exposed on the max
        }

        # The room's memory keeps is_proxy and the vehicle, and says what the ledger says.
        await guest.send(type="resume", last_seq=-1)
        remembered = await guest.expect("snapshot")
        ledger = await (await session.get(f"{served.base}/api/auctions/{world.auction_id}")).json()
        for field in ("seq", "auction", "vehicle", "recent_bids"):
            assert remembered[field] == ledger[field], field
        assert [(bid["amount_kobo"], bid["is_proxy"]) for bid in ledger["recent_bids"]] == [
            (START + 3 * STEP, True),
            (START + 2 * STEP, False),
            (START, True),
        ]


async def test_you_carries_the_bidders_max_and_buying_power_and_keeps_them_current(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        other = await RoomClient.connect(session, url, token=world.token(alice))  # a 2nd tab
        assert a.snapshot["you"] == {
            "handle": None,
            "status": None,
            "max_kobo": None,
            "available_kobo": BALANCE,
        }
        await send_max(a, START + 10 * STEP)
        # A raise by the leader places no row: the bidder's other sockets hear it.
        raised = await send_max(a, START + 20 * STEP)
        assert raised["max"] == {
            "max_kobo": START + 20 * STEP,
            "leading": True,
            "price_kobo": START,
        }
        assert await other.expect("you", max_kobo=START + 20 * STEP) == {
            "type": "you",
            "status": "winning",
            "max_kobo": START + 20 * STEP,
            "available_kobo": BALANCE - deposit(START + 20 * STEP),
        }
        # Set over REST: the sockets hear it too.
        reply = await session.post(
            f"{served.base}/api/auctions/{world.auction_id}/max",
            json={"max_kobo": START + 40 * STEP, "client_bid_id": "rest-raise"},
            headers={"Authorization": f"Bearer {world.token(alice)}"},
        )
        assert reply.status == 201, await reply.text()
        await a.expect("you", max_kobo=START + 40 * STEP)
        for client in (a, other):  # each socket's own `you`, from memory
            await client.send(type="resume", last_seq=-1)
            assert (await client.expect("snapshot"))["you"] == {
                "handle": "Bidder 1",
                "status": "winning",
                "max_kobo": START + 40 * STEP,
                "available_kobo": BALANCE - deposit(START + 40 * STEP),
            }

        # Passed by a higher maximum: outbid, their last maximum still shown.
        b = await RoomClient.connect(session, url, token=world.token(bob))
        assert (await send_max(b, START + 50 * STEP))["max"]["leading"] is True
        outbid = await a.expect("you", status="outbid")
        assert (outbid["max_kobo"], outbid["available_kobo"]) == (START + 40 * STEP, BALANCE)
        fresh = await RoomClient.connect(session, url, token=world.token(alice))
        expected = {
            "handle": "Bidder 1",
            "status": "outbid",
            "max_kobo": START + 40 * STEP,
            "available_kobo": BALANCE,
        }
        assert fresh.snapshot["you"] == expected  # looked up in the core
        ledger = await standing(pool, world.auction_id, alice)  # the ledger agrees
        assert (ledger.handle, ledger.status, ledger.max_kobo) == (
            "Bidder 1",
            "outbid",
            START + 40 * STEP,
        )


async def test_a_pre_bid_is_a_max_without_a_handle_until_the_auction_opens(
    pool: Any, database_url: str
) -> None:
    seller = await create_user(pool, role="dealer")
    start = now_ms() + 3_600_000
    auction = await create_auction(
        pool, seller=seller, start_ms=start, end_ms=start + 3_600_000, status="scheduled"
    )
    alice, bob = [await create_user(pool, balance_kobo=BALANCE) for _ in range(2)]
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(auction)
        a = await RoomClient.connect(session, url, token=mint_token(alice, "user", SECRET))
        b = await RoomClient.connect(session, url, token=mint_token(bob, "user", SECRET))
        first = await send_max(a, START + 4 * STEP)
        assert first["max"] == {"max_kobo": START + 4 * STEP, "leading": True, "price_kobo": START}
        second = await send_max(b, START + 2 * STEP)
        assert second["max"] == {
            "max_kobo": START + 2 * STEP,
            "leading": False,
            "price_kobo": START + 3 * STEP,  # where the pre-bids would open
        }
        assert await a.silence(0.3) == []  # no row, no room event before the opening
        await b.send(type="resume", last_seq=-1)
        assert (await b.expect("snapshot"))["you"] == {
            "handle": None,
            "status": None,
            "max_kobo": START + 2 * STEP,
            "available_kobo": BALANCE,  # only the would-be leader is exposed
        }
        again = await RoomClient.connect(session, url, token=mint_token(alice, "user", SECRET))
        assert again.snapshot["you"] == {
            "handle": None,
            "status": None,
            "max_kobo": START + 4 * STEP,
            "available_kobo": BALANCE - deposit(START + 4 * STEP),
        }


async def test_the_snapshot_shows_the_vehicle_over_rest_and_the_socket_alike(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=1)
    vehicle_id = await pool.fetchval(
        "SELECT vehicle_id FROM auctions WHERE id = $1", world.auction_id
    )
    await pool.execute(
        "UPDATE vehicles SET mileage_km = 42000, color = 'Silver', condition = 'excellent',"
        " location = 'Lagos' WHERE id = $1",
        vehicle_id,
    )
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        client = await RoomClient.connect(session, served.room_url(world.auction_id))
        rest = await (await session.get(f"{served.base}/api/auctions/{world.auction_id}")).json()
        expected = {
            "id": str(vehicle_id),
            "year": 2019,
            "make": "Toyota",
            "model": "Camry",
            "body_type": "sedan",
            "mileage_km": 42000,
            "color": "Silver",
            "condition": "excellent",
            "location": "Lagos",
        }
        assert client.snapshot["vehicle"] == rest["vehicle"] == expected


async def test_a_guest_max_is_unauthenticated_and_a_max_counts_as_a_bid(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    alice = world.bidders[0]
    async with (
        serving(database_url, ws_bids_per_s=2) as served,
        aiohttp.ClientSession() as session,
    ):
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        await guest.send(type="max", max_kobo=START, client_bid_id="guest")
        assert (await guest.expect("error"))["code"] == "unauthenticated"
        await guest.send(type="max", max_kobo="lots", client_bid_id="guest")  # still: first
        assert (await guest.expect("error"))["code"] == "unauthenticated"

        a = await RoomClient.connect(session, url, token=world.token(alice))
        assert (await a.bid(START, "bid-1"))["status"] == "accepted"
        await a.send(type="max", max_kobo=START + 10 * STEP, client_bid_id="max-1")
        await a.send(type="max", max_kobo=START + 20 * STEP, client_bid_id="max-2")
        limited = await a.expect("error")
        assert limited["code"] == "rate_limited"  # the third bid in a second
        assert (await a.expect("bid_result", client_bid_id="max-1"))["status"] == "accepted"
        assert not [m for m in await a.silence(0.3) if m.get("client_bid_id") == "max-2"]
    maxes = await pool.fetch("SELECT max_amount FROM max_bids")
    assert len(maxes) == 1
