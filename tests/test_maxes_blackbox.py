"""Maximum (proxy) bids as a client sees them, written from API.md and RULES.md
alone: the engine runs as its own server process with its timed jobs, and this
test talks to it only as the platform (the internal API, with the service
token), bidders (JWTs minted as API.md describes them, the public API and the
room sockets) and a guest watcher do. Nothing in it reads the engine's code or
database.

- RULES.md: "a single bid of amount `a` against a leader whose max is `m`: if
  `a <= m`, the leader's proxy answers at `min(m, a + increment)`"; API.md: the
  trigger's and the answer's `bid` events come in that order, the answer with
  `is_proxy`, and the bidder who was answered gets `you` `outbid`.
- RULES.md: "Equal maxes: the one set earlier leads, at that amount."
- RULES.md: "Pre-bids resolve when the auction goes live ... (one pre-bid alone
  leads at `start_price`)"; the scheduler opens an auction at its start time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.blackbox import Client, bearer_for, engine_process, now_ms
from tests.ws_helpers import RoomClient

START = 200_000_000  # ₦2,000,000
STEP = 5_000_000  # ₦50,000, API.md's default increment
FUNDS = 10**11  # ₦1,000,000,000: enough buying power for every maximum here


class Engine(Client):
    async def user(self, role: str = "user", funds: int = 0) -> uuid.UUID:
        return await self.new_user(role, funds)

    async def auction(self, *, starts_in_ms: int) -> uuid.UUID:
        """A scheduled auction of a dealer's vehicle; the scheduler opens it."""
        dealer = await self.user(role="dealer")
        vehicle = await self.new_vehicle(dealer, "Lexus", "RX 350", 2020)
        start = now_ms() + starts_in_ms
        created = await self.platform(
            "POST",
            "/internal/auctions",
            {
                "vehicle_id": vehicle,
                "created_by": str(dealer),
                "status": "scheduled",
                "start_time_ms": start,
                "end_time_ms": start + 3_600_000,
                "start_price_kobo": START,
                "bid_increment_kobo": STEP,
            },
        )
        return uuid.UUID(created["auction"]["id"])

    async def room(self, auction: uuid.UUID, user: uuid.UUID | None = None) -> RoomClient:
        token = bearer_for(user) if user is not None else None
        return await RoomClient.connect(self.http, self.server.room_url(auction), token=token)

    async def live(self, auction: uuid.UUID) -> None:
        """Wait for the scheduler to open it (RULES.md: within 1 s of its start)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            async with self.http.get(f"{self.server.base}/api/auctions/{auction}") as reply:
                if (await reply.json())["auction"]["status"] == "live":
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"auction {auction} did not open")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with engine_process(database_url) as (server, http):
        yield Engine(server, http)


async def send_max(client: RoomClient, max_kobo: int, client_bid_id: str) -> dict[str, Any]:
    await client.send(type="max", max_kobo=max_kobo, client_bid_id=client_bid_id)
    return await client.expect("bid_result", client_bid_id=client_bid_id)


async def test_a_maximum_answers_a_rivals_bid_at_one_increment_above_it_up_to_the_max(
    engine: Engine,
) -> None:
    auction = await engine.auction(starts_in_ms=1000)
    alice, bob = await engine.user(funds=FUNDS), await engine.user(funds=FUNDS)
    await engine.live(auction)
    guest = await engine.room(auction)
    a, b = await engine.room(auction, alice), await engine.room(auction, bob)

    top = START + 10 * STEP
    set_over_rest = await engine.call(
        "POST",
        f"/api/auctions/{auction}/max",
        bearer_for(alice),
        {"max_kobo": top, "client_bid_id": "a1"},
    )
    assert set_over_rest == (201, {"max": {"max_kobo": top, "leading": True, "price_kobo": START}})
    opening = await guest.expect("bid")
    assert (opening["amount_kobo"], opening["is_proxy"]) == (START, True)
    alice_handle = opening["bidder"]

    for bid in (START + 3 * STEP, top):  # under the max, then exactly at it
        result = await b.bid(bid, f"b-{bid}")
        assert result["status"] == "accepted", result
        trigger, answer = await guest.expect("bid"), await guest.expect("bid")
        assert answer["seq"] == trigger["seq"] + 1  # in that order, one after the other
        assert (trigger["amount_kobo"], trigger["is_proxy"]) == (bid, False)
        assert trigger["bidder"] != alice_handle
        assert (answer["amount_kobo"], answer["is_proxy"]) == (min(top, bid + STEP), True)
        assert answer["bidder"] == alice_handle
        assert (await b.expect("you", status="outbid"))["status"] == "outbid"
    snapshot = await engine.call("GET", f"/api/auctions/{auction}", bearer_for(bob))
    assert snapshot[1]["auction"]["current_price_kobo"] == top  # a == m: the earlier max leads

    # Past the maximum: the rival's bid leads at its own amount, the max is spent.
    result = await b.bid(top + STEP, "b-past")
    assert result["status"] == "accepted"
    passing = await guest.expect("bid")
    assert (passing["amount_kobo"], passing["is_proxy"]) == (top + STEP, False)
    assert await guest.silence(0.5) == []  # no answer
    assert (await a.expect("you", status="outbid"))["max_kobo"] == top


async def test_equal_maximums_resolve_to_the_one_set_earlier(engine: Engine) -> None:
    auction = await engine.auction(starts_in_ms=1000)
    alice, bob = await engine.user(funds=FUNDS), await engine.user(funds=FUNDS)
    await engine.live(auction)
    guest = await engine.room(auction)
    a, b = await engine.room(auction, alice), await engine.room(auction, bob)

    same = START + 8 * STEP
    first = await send_max(a, same, "a-max")
    assert first["max"] == {"max_kobo": same, "leading": True, "price_kobo": START}
    alice_handle = (await guest.expect("bid"))["bidder"]
    second = await send_max(b, same, "b-max")
    assert second["status"] == "accepted"
    assert second["max"] == {"max_kobo": same, "leading": False, "price_kobo": same}

    rows = await guest.silence(0.5)
    assert rows and rows[-1]["type"] == "bid"
    assert (rows[-1]["bidder"], rows[-1]["amount_kobo"]) == (alice_handle, same)
    outbid = await b.expect("you", status="outbid")
    assert outbid["max_kobo"] == same
    status, snapshot = await engine.call("GET", f"/api/auctions/{auction}", bearer_for(alice))
    assert status == 200 and snapshot["auction"]["current_price_kobo"] == same
    status, mine = await engine.call("GET", "/api/me/bids", bearer_for(alice))
    assert status == 200
    assert mine["auctions"][0]["you"]["status"] == "winning"
    assert mine["auctions"][0]["you"]["max_kobo"] == same


async def test_a_pre_bid_leads_at_the_start_price_when_the_auction_opens(engine: Engine) -> None:
    auction = await engine.auction(starts_in_ms=3000)
    alice = await engine.user(funds=FUNDS)
    guest = await engine.room(auction)
    assert guest.snapshot["auction"]["status"] == "scheduled"
    a = await engine.room(auction, alice)

    prebid = START + 6 * STEP
    result = await send_max(a, prebid, "pre")
    assert result["max"] == {"max_kobo": prebid, "leading": True, "price_kobo": START}
    assert (await guest.silence(0.3)) == []  # nothing placed before the opening
    status, wallet = await engine.call("GET", "/api/me/wallet", bearer_for(alice))
    assert status == 200 and wallet["available_kobo"] < FUNDS  # the pre-bid binds

    opened = await guest.expect("state", wait_s=10)  # the scheduler opens it at its start
    assert opened["status"] == "live"
    row = await guest.expect("bid")
    assert row["seq"] == opened["seq"] + 1
    assert (row["amount_kobo"], row["is_proxy"], row["bid_count"]) == (START, True, 1)
    assert (await a.expect("you", status="winning"))["max_kobo"] == prebid
    await a.send(type="resume", last_seq=-1)
    you = (await a.expect("snapshot"))["you"]
    assert (you["handle"], you["status"], you["max_kobo"]) == (row["bidder"], "winning", prebid)
