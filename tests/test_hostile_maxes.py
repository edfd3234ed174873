"""Hostile maximums, over REST and the room socket: below the minimum, at or below
the bidder's own maximum, past 10^15 − 1, fractions, strings and other JSON, on an
ended, their own or an unknown auction, without KYC, beyond buying power, under
an id that named a bid. Each gets its documented code (409 with the rule's, 422
`invalid_amount`; on the socket a rejected `bid_result` with the same code), and
each leaves the ledger (every table) and the core (the auction, every bidder's
balance and exposure) exactly as they were."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.http_helpers import PRICE, RICH, STEP, Api, start, token_for
from tests.test_hostile_ledger import changed, fingerprint
from tests.test_hostile_requests import assert_api_error
from tests.ws_helpers import RoomClient

MAX = PRICE + 10 * STEP  # alice's maximum on the live auction


@dataclass
class World:
    api: Api
    live: uuid.UUID  # alice leads on her maximum, bob's bid was answered by it
    ended: uuid.UUID
    seller: uuid.UUID
    alice: uuid.UUID
    bob: uuid.UUID
    pending: uuid.UUID  # KYC not approved
    poor: uuid.UUID  # nothing in the wallet


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any) -> World:
    api = await start(
        aiohttp_client,
        database_url,
        rate_limit_ip_per_min=100_000,
        ws_bids_per_s=1_000,
        ws_frames_per_s=1_000,
    )
    seller = await api.seller()
    alice, bob = await api.bidder(), await api.bidder()
    live = await api.live_auction(seller)
    max_body = {"max_kobo": MAX, "client_bid_id": "alice-max"}
    assert (await api.as_user(alice, "POST", f"/api/auctions/{live}/max", max_body)).status == 201
    assert (await api.bid(bob, live, PRICE + STEP, "bob-bid")).status == 201  # answered
    ended = await api.live_auction(seller)
    assert (await api.bid(bob, ended, PRICE)).status == 201
    manager = await api.user(role="manager")
    forced = await api.as_user(
        manager, "POST", f"/internal/admin/auctions/{ended}/force-end", {"reason": "t"}
    )
    assert forced.status == 200, forced.text
    return World(
        api=api,
        live=live,
        ended=ended,
        seller=seller,
        alice=alice,
        bob=bob,
        pending=await api.user(kyc_status="pending", balance_kobo=RICH),
        poor=await api.bidder(balance_kobo=0),
    )


def cases(w: World) -> list[tuple[str, uuid.UUID, uuid.UUID, str, int, str]]:
    """(case, who, on which auction, the amount's JSON text, status, code)."""
    above_next = str(PRICE + 5 * STEP)  # alice's proxy answered at PRICE + 2 * STEP
    invalid = {
        "zero": "0",
        "negative": "-1",
        "10^15": "1000000000000000",
        "2^64": "18446744073709551616",
        "10^40": "1" + "0" * 40,
        "1.5": "1.5",
        "a fraction of a kobo": "150000000.5",
        "a string": '"150000000"',
        "true": "true",
        "null": "null",
        "a list": "[150000000]",
        "an object": '{"kobo": 150000000}',
    }
    return [
        ("below the minimum", w.bob, w.live, str(PRICE + 2 * STEP), 409, "below_minimum"),
        ("equal to the own maximum", w.alice, w.live, str(MAX), 409, "below_minimum"),
        ("below the own maximum", w.alice, w.live, str(MAX - STEP), 409, "below_minimum"),
        ("on an ended auction", w.bob, w.ended, above_next, 409, "auction_ended"),
        ("on the own auction", w.seller, w.live, above_next, 409, "own_auction"),
        ("without KYC", w.pending, w.live, above_next, 409, "not_eligible"),
        ("beyond buying power", w.poor, w.live, above_next, 409, "insufficient_buying_power"),
        *[(case, w.bob, w.live, raw, 422, "invalid_amount") for case, raw in invalid.items()],
    ]


def role_of(w: World, user: uuid.UUID) -> str:
    return "dealer" if user == w.seller else "user"


def max_frame(raw: str, client_bid_id: str) -> str:
    return f'{{"type": "max", "client_bid_id": {json.dumps(client_bid_id)}, "max_kobo": {raw}}}'


async def core_state(w: World) -> Any:
    """What the core holds of the auctions and the bidders."""
    sequencer = w.api.sequencer
    auctions = []
    for auction in (w.live, w.ended):
        state = sequencer.held(auction)
        auctions.append(
            None
            if state is None
            else (
                state.status,
                state.seq,
                state.leader,
                state.leader_max_kobo,
                state.current_price_kobo,
                state.bid_count,
                state.end_time_ms,
                state.prebids,
            )
        )
    users = []
    for user in (w.alice, w.bob, w.seller, w.pending, w.poor):
        handle = sequencer.registry.user_handle(user)
        found = sequencer.core.user(handle)
        users.append((found.balance_kobo, found.exposure_kobo))
    maxes = [sequencer.max_of(w.live, user) for user in (w.alice, w.bob)]
    return auctions, users, maxes


async def test_hostile_maximums_over_rest_get_their_code_and_change_nothing(world: World) -> None:
    w, api = world, world.api
    for case, who, auction, raw, status, code in cases(w):
        body = max_frame(raw, f"rest-{case}").replace('"type": "max", ', "")
        ledger, core = await fingerprint(api.pool), await core_state(w)
        reply = await api.call(
            "POST",
            f"/api/auctions/{auction}/max",
            token=token_for(who, role_of(w, who)),
            data=body,
        )
        assert_api_error(reply, status, case=case)
        assert reply.code == code, (case, reply.text)
        assert changed(ledger, await fingerprint(api.pool)) == set(), case
        assert await core_state(w) == core, case

    unknown = await api.call(
        "POST",
        f"/api/auctions/{uuid.uuid4()}/max",
        token=token_for(w.bob),
        json_body={"max_kobo": PRICE * 2, "client_bid_id": "nowhere"},
    )
    assert (unknown.status, unknown.code) == (409, "unknown_auction")
    reused = await api.as_user(
        w.bob,
        "POST",
        f"/api/auctions/{w.live}/max",
        {"max_kobo": MAX * 2, "client_bid_id": "bob-bid"},
    )
    assert (reused.status, reused.code) == (409, "client_bid_id_reused")
    assert await api.pool.fetchval("SELECT count(*) FROM max_bids") == 1  # alice's alone


async def test_hostile_maximums_over_the_socket_get_their_code_and_change_nothing(
    world: World,
) -> None:
    w, api = world, world.api
    base = str(api.client.make_url("/ws/auctions/")).replace("http", "ws", 1)
    async with aiohttp.ClientSession() as session:
        sockets: dict[tuple[uuid.UUID, uuid.UUID], RoomClient] = {}
        for case, who, auction, raw, _, code in cases(w):
            if (who, auction) not in sockets:
                sockets[(who, auction)] = await RoomClient.connect(
                    session, f"{base}{auction}", token=token_for(who, role_of(w, who))
                )
            client = sockets[(who, auction)]
            ledger, core = await fingerprint(api.pool), await core_state(w)
            await client.ws.send_str(max_frame(raw, f"ws-{case}"))
            result = await client.expect("bid_result", client_bid_id=f"ws-{case}")
            assert (result["status"], result["code"]) == ("rejected", code), (case, result)
            assert result["message"].strip()
            assert changed(ledger, await fingerprint(api.pool)) == set(), case
            assert await core_state(w) == core, case

        bob = sockets[(w.bob, w.live)]
        await bob.ws.send_str(max_frame(str(MAX * 2), "bob-bid"))
        reused = await bob.expect("bid_result", client_bid_id="bob-bid")
        assert (reused["status"], reused["code"]) == ("rejected", "client_bid_id_reused")
        # An unknown auction has no room: its socket is refused at the handshake.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{base}{uuid.uuid4()}")
        assert refused.value.status == 404
        for client in sockets.values():
            await client.close()
    assert await api.pool.fetchval("SELECT count(*) FROM max_bids") == 1
