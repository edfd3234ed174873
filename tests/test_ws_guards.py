"""What a room socket refuses, and how: bad tokens, guests bidding, malformed and
oversized frames, too many bids, every rejection code, a ledger outage, a silent
peer."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest

from engine.tokens import mint_token
from tests.factories import create_auction, create_user
from tests.tcp_proxy import TcpProxy
from tests.ws_helpers import SECRET, RoomClient, make_world, now_ms, serving
from web.keys import ROOMS
from web.rooms import RoomTuning

START = 100_000_000
STEP = 5_000_000


def _alg_none(user_id: uuid.UUID) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"sub": str(user_id), "role": "user", "exp": int(time.time()) + 3600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_TOKENS: dict[str, Callable[[uuid.UUID], str]] = {
    "wrong signature": lambda user: mint_token(user, "user", "another-secret-of-32-bytes-or-more!"),
    "expired": lambda user: jwt.encode(
        {"sub": str(user), "role": "user", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256"
    ),
    "alg none": _alg_none,
    "unknown user": lambda user: mint_token(uuid.uuid4(), "user", SECRET),
    "not a token": lambda user: "hello",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_a_bad_token_leaves_the_socket_open_as_a_guest(
    pool: Any, database_url: str, kind: str
) -> None:
    world = await make_world(pool, bidders=1)
    token = BAD_TOKENS[kind](world.bidders[0])
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        client = await RoomClient.connect(session, served.room_url(world.auction_id))
        await client.send(type="auth", token=token)
        error = await client.expect("error")
        assert error["code"] == "unauthenticated"
        await client.send(type="ping", client_time_ms=1)
        assert (await client.expect("pong"))["client_time_ms"] == 1  # still open
        await client.send(type="bid", amount_kobo=START, client_bid_id="x")
        assert (await client.expect("error"))["code"] == "unauthenticated"
    assert await pool.fetchval("SELECT count(*) FROM bids") == 0


async def test_a_bad_token_after_a_good_one_makes_the_socket_a_guest(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=1)
    user = world.bidders[0]
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        client = await RoomClient.connect(
            session, served.room_url(world.auction_id), token=world.token(user)
        )
        await client.send(type="auth", token=BAD_TOKENS["expired"](user))
        assert (await client.expect("error"))["code"] == "unauthenticated"
        await client.send(type="bid", amount_kobo=START, client_bid_id="x")
        assert (await client.expect("error"))["code"] == "unauthenticated"


async def test_the_role_comes_from_the_users_row_not_the_token(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=0)
    pending = await create_user(pool, balance_kobo=10**12, kyc_status="pending")
    token = mint_token(pending, "admin", SECRET)  # the token claims more than the row says
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        client = await RoomClient.connect(session, served.room_url(world.auction_id), token=token)
        result = await client.bid(START)
        assert (result["status"], result["code"]) == ("rejected", "not_eligible")


async def test_a_guest_gets_unauthenticated_before_any_other_check(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=0)
    frames = [
        {"type": "bid", "amount_kobo": START, "client_bid_id": "ok"},
        {"type": "bid", "amount_kobo": "lots", "client_bid_id": 5},  # malformed too
        {"type": "bid"},
        {"type": "place_order", "amount": 1},  # not a type at all
    ]
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        guest = await RoomClient.connect(session, served.room_url(world.auction_id))
        for frame in frames:
            await guest.ws.send_str(json.dumps(frame))
            assert (await guest.expect("error"))["code"] == "unauthenticated", frame


async def test_malformed_frames_get_an_error_and_the_socket_stays_open(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=1)
    frames = [
        "not json",
        "[1, 2]",
        '{"no_type": true}',
        '{"type": "teleport"}',
        '{"type": "bid", "amount_kobo": "100", "client_bid_id": "a"}',
        '{"type": "bid", "amount_kobo": 1.5, "client_bid_id": "a"}',
        '{"type": "bid", "amount_kobo": 100}',
        '{"type": "bid", "amount_kobo": 100, "client_bid_id": ""}',
        '{"type": "bid", "amount_kobo": 100, "client_bid_id": "' + "x" * 65 + '"}',
        '{"type": "bid", "amount_kobo": 100, "client_bid_id": "tab\\there"}',
        '{"type": "resume", "last_seq": "3"}',
        '{"type": "ping"}',
        '{"type": "auth", "token": 5}',
    ]
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        client = await RoomClient.connect(
            session, served.room_url(world.auction_id), token=world.token(world.bidders[0])
        )
        for frame in frames:
            await client.ws.send_str(frame)
            error = await client.expect("error")
            assert error["code"] == "malformed", frame
            assert error["message"]
        await client.ws.send_bytes(b"\xff\xfe")
        assert (await client.expect("error"))["code"] == "malformed"
        await client.send(type="ping", client_time_ms=7)
        assert (await client.expect("pong"))["client_time_ms"] == 7
    assert await pool.fetchval("SELECT count(*) FROM bids") == 0


async def test_a_frame_of_64_kib_is_read_and_a_larger_one_closes_with_1009(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=0)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        client = await RoomClient.connect(session, served.room_url(world.auction_id))
        frame = '{"type": "ping", "client_time_ms": 3, "pad": "'
        frame += "x" * (64 * 1024 - len(frame) - 2) + '"}'
        assert len(frame) == 64 * 1024
        await client.ws.send_str(frame)
        assert (await client.expect("pong"))["client_time_ms"] == 3

        await client.ws.send_str(frame + " ")
        message = await client.ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == 1009


async def test_more_bids_than_the_rate_limit_get_rate_limited(pool: Any, database_url: str) -> None:
    world = await make_world(pool, bidders=1)
    async with (
        serving(database_url, ws_bids_per_s=3) as served,
        aiohttp.ClientSession() as session,
    ):
        client = await RoomClient.connect(
            session, served.room_url(world.auction_id), token=world.token(world.bidders[0])
        )
        # Start at the beginning of the limiter's one-second window (same process, same clock).
        await asyncio.sleep(1 - time.monotonic() % 1 + 0.01)
        for i in range(6):
            await client.send(type="bid", amount_kobo=START + i * STEP, client_bid_id=f"b{i}")
        replies = [m for m in await client.silence(1.0) if m["type"] in ("bid_result", "error")]
        limited = [m for m in replies if m["type"] == "error"]
        assert len(limited) == 3
        assert {m["code"] for m in limited} == {"rate_limited"}
        assert "3 a second" in limited[0]["message"]
        assert len([m for m in replies if m["type"] == "bid_result"]) == 3
        await asyncio.sleep(1.0)  # the next second: bids are taken again
        assert (await client.bid(START + 10 * STEP))["status"] in ("accepted", "rejected")
        assert all(m.get("code") != "rate_limited" for m in await client.silence(0.1))


async def test_each_rejection_code_reaches_the_bidder(pool: Any, database_url: str) -> None:
    now = now_ms()
    world = await make_world(pool, bidders=2)
    alice, bob = world.bidders
    seller = world.seller
    poor = await create_user(pool, balance_kobo=0)
    pending = await create_user(pool, balance_kobo=10**12, kyc_status="pending")
    scheduled = await create_auction(
        pool, seller=seller, start_ms=now + 3_600_000, end_ms=now + 7_200_000, status="scheduled"
    )
    over = await create_auction(pool, seller=seller, start_ms=now - 7_200_000, end_ms=now - 1_000)
    gone = await create_auction(
        pool, seller=seller, start_ms=now - 7_200_000, end_ms=now - 1_000, status="ended"
    )
    tokens = {user: mint_token(user, "user", SECRET) for user in (poor, pending)}
    tokens.update(world.tokens)

    async with serving(database_url) as served, aiohttp.ClientSession() as session:

        async def rejection(auction: uuid.UUID, user: uuid.UUID, amount: int) -> dict[str, Any]:
            client = await RoomClient.connect(session, served.room_url(auction), token=tokens[user])
            result = await client.bid(amount)
            await client.close()
            assert result["status"] == "rejected"
            assert result["message"]
            return result

        room = world.auction_id
        a = await RoomClient.connect(session, served.room_url(room), token=tokens[alice])
        assert (await a.bid(START))["status"] == "accepted"
        codes = {
            "invalid_amount": await rejection(room, bob, 0),
            "below_minimum": await rejection(room, bob, START),
            "already_leading": await rejection(room, alice, START + 2 * STEP),
            "own_auction": await rejection(room, seller, START + STEP),
            "not_eligible": await rejection(room, pending, START + STEP),
            "insufficient_buying_power": await rejection(room, poor, START + STEP),
            "auction_not_live": await rejection(scheduled, bob, START),
            "auction_ended": await rejection(over, bob, START),
        }
        for code, result in codes.items():
            assert result["code"] == code
        # Closed in the ledger: ended too (a room exists only for an auction, so
        # `unknown_auction` reaches a socket never; REST tests it).
        assert (await rejection(gone, bob, START))["code"] == "auction_ended"
        assert codes["below_minimum"]["message"] == "Your bid must be at least ₦1,050,000.00."
        assert "{" not in str([r["message"] for r in codes.values()])


async def test_bids_are_refused_as_unavailable_while_the_ledger_is_down(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=1)
    proxy, proxied = await TcpProxy.in_front_of(database_url)
    try:
        async with serving(proxied) as served, aiohttp.ClientSession() as session:
            client = await RoomClient.connect(
                session, served.room_url(world.auction_id), token=world.token(world.bidders[0])
            )
            proxy.cut()
            first = await client.bid(START, "during-outage")  # waits out the writer's retries
            assert (first["status"], first["code"]) == ("rejected", "unavailable")
            # Its outcome is unknown (the batch may have landed): retry with the same id.
            assert "same client_bid_id" in first["message"]
            second = await client.bid(START, "still-down")
            assert second["code"] == "unavailable"
            assert "try again" in second["message"]  # never decided: plainly refused
            proxy.restore()
    finally:
        await proxy.close()


async def test_a_peer_that_does_not_answer_pings_is_dropped(pool: Any, database_url: str) -> None:
    world = await make_world(pool, bidders=0)
    tuning = RoomTuning(heartbeat_s=0.4)
    async with serving(database_url, tuning=tuning) as served, aiohttp.ClientSession() as session:
        # autoping off and never reading: this peer never answers the server's pings.
        silent = await session.ws_connect(served.room_url(world.auction_id), autoping=False)
        alive = await RoomClient.connect(session, served.room_url(world.auction_id))
        room = served.app[ROOMS].room(world.auction_id)
        assert room is not None and len(room) == 2
        await alive.silence(1.5)  # reading: its client answers the pings
        assert len(room) == 1
        await alive.send(type="ping", client_time_ms=1)
        assert (await alive.expect("pong"))["client_time_ms"] == 1
        await silent.close()


async def test_a_sign_in_ends_when_its_token_expires(pool: Any, database_url: str) -> None:
    world = await make_world(pool, bidders=2)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        # Alice leads (bidding over REST with a long-lived token), then watches the
        # room signed in with a token that expires in two or three seconds.
        placed = await session.post(
            f"{served.base}/api/bids",
            json={"auction_id": str(world.auction_id), "amount_kobo": START, "client_bid_id": "a"},
            headers={"Authorization": f"Bearer {world.token(alice)}"},
        )
        assert placed.status == 201
        a = await RoomClient.connect(session, url, token=mint_token(alice, "user", SECRET, 3))
        assert {k: a.snapshot["you"][k] for k in ("handle", "status")} == {
            "handle": "Bidder 1",
            "status": "winning",
        }
        b = await RoomClient.connect(session, url, token=world.token(bob))

        expired = await a.expect("error", wait_s=6)  # unprompted: the socket sent nothing
        assert expired["code"] == "unauthenticated"
        assert "expired" in expired["message"] and "guest" in expired["message"]

        assert (await b.bid(START + STEP))["status"] == "accepted"
        heard = await a.silence(0.5)
        assert [m["type"] for m in heard] == ["bid"]  # the room's event, no `you` outbid
        await a.send(type="bid", amount_kobo=START + 2 * STEP, client_bid_id="late")
        assert (await a.expect("error"))["code"] == "unauthenticated"
        assert await pool.fetchval("SELECT count(*) FROM bids") == 2

        await a.send(type="auth", token=world.token(alice))  # a fresh token works again
        you = (await a.expect("snapshot"))["you"]
        assert (you["handle"], you["status"]) == ("Bidder 1", "outbid")
        assert (await a.bid(START + 2 * STEP, "again"))["status"] == "accepted"
