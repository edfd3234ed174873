"""The seller's page in a real browser (Debian's headless Chromium over the
DevTools protocol, as tests/test_browser_room.py drives it), on a phone-sized
page, with the keyboard alone: an if-bid waits for the seller, who counters; the
bidder counters back; the seller accepts; the ledger and the page agree.

Screenshots of the page are written to /tmp/dealer360-seller-decision-phone.png
(the bidder's counter waiting) and /tmp/dealer360-seller-phone.png (accepted)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from engine.tokens import mint_token
from tests.factories import create_user
from tests.test_browser_room import chromium
from tests.ws_helpers import SECRET, make_world, serving

SCREENSHOT = Path("/tmp/dealer360-seller-phone.png")
DECISION_SCREENSHOT = Path("/tmp/dealer360-seller-decision-phone.png")
START = 100_000_000  # the factory's start price
STEP = 5_000_000
RESERVE = START + 10 * STEP


async def test_a_seller_answers_an_if_bid_with_the_keyboard_alone(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=1, auction_type="reserve", reserve_kobo=RESERVE)
    (bidder,) = world.bidders
    auction = world.auction_id
    manager = await create_user(pool, role="manager")
    async with serving(database_url) as served, aiohttp.ClientSession() as session:

        async def post(path: str, token: str, body: dict[str, Any]) -> Any:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{served.base}{path}", json=body, headers=headers) as reply:
                assert reply.status in (200, 201), await reply.text()
                return await reply.json()

        await post(
            "/api/bids",
            world.token(bidder),
            {"auction_id": str(auction), "amount_kobo": START + STEP, "client_bid_id": "b1"},
        )
        staff = mint_token(manager, "manager", SECRET)
        await post(f"/internal/admin/auctions/{auction}/force-end", staff, {"reason": "test"})

        async with chromium(session) as browser:
            page = await browser.page(f"{served.base}/seller#token={world.token(world.seller)}")
            await page.wait_for("document.querySelectorAll('#deciding article').length === 1")
            assert "token=" not in await page.js("location.href")
            card = await page.js("document.querySelector('#deciding article').textContent")
            assert "₦1,050,000.00" in card and "₦1,500,000.00" in card, card
            assert "Your decision" in card
            row = await page.js("document.querySelector('#auctions tbody tr').textContent")
            assert "Awaiting your decision" in row, row

            # Keyboard only: Tab to the counter's field, type it, Enter.
            visited = await page.tab_to(f"counter-{auction}")
            assert f"accept-{auction}" in visited and f"decline-{auction}" in visited
            await page.type_text("1,300,000")
            await page.press_enter()
            await page.wait_for(
                "document.getElementById('message').textContent.startsWith("
                "'Counter of ₦1,300,000.00 sent')"
            )
            await page.wait_for("document.activeElement.id === 'message'")  # the answer said
            await page.wait_for(
                "document.querySelector('#deciding .turn').textContent.startsWith("
                "'Waiting for the bidder to answer your counter of ₦1,300,000.00')"
            )
            assert await page.js(f"document.getElementById('accept-{auction}')") is None

            # The bidder counters back; the seller refreshes with the keyboard.
            await post(
                f"/api/auctions/{auction}/offer",
                world.token(bidder),
                {"action": "counter", "amount_kobo": 120_000_000},
            )
            await page.tab_to("refresh")
            await page.press_enter()
            await page.wait_for(
                "document.querySelector('#deciding .turn').textContent.startsWith("
                "'The bidder countered ₦1,200,000.00: your answer')"
            )

            decision = await page.call("Page.captureScreenshot", format="png")
            await asyncio.to_thread(
                DECISION_SCREENSHOT.write_bytes, base64.b64decode(decision["data"])
            )

            # Accept the bidder's amount, with the keyboard.
            await page.tab_to(f"accept-{auction}")
            assert await page.js("document.activeElement.textContent") == "Accept ₦1,200,000.00"
            await page.press_enter()
            await page.wait_for(
                "document.getElementById('message').textContent.includes("
                "'is sold for ₦1,200,000.00')"
            )
            await page.wait_for("document.querySelectorAll('#deciding article').length === 0")
            row = await page.js("document.querySelector('#auctions tbody tr').textContent")
            assert "Sold, awaiting payment" in row and "₦1,200,000.00" in row, row

            shot = await page.call("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            assert png.startswith(b"\x89PNG") and len(png) > 10_000
            await asyncio.to_thread(SCREENSHOT.write_bytes, png)

    status = await pool.fetchrow(
        "SELECT a.status, a.winner_id, o.amount FROM auctions a"
        " JOIN settlement_offers o ON o.auction_id = a.id WHERE a.id = $1",
        auction,
    )
    assert (status["status"], status["winner_id"]) == ("pending_settlement", bidder)
    assert int(status["amount"] * 100) == 120_000_000
    assert isinstance(world.seller, uuid.UUID)
