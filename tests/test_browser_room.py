"""The auction-room page in a real browser: Debian's headless Chromium, driven
over the Chrome DevTools protocol on its own WebSocket (aiohttp's client; no
browser-automation package). Two bidders on phone-sized pages: one bids, the
other sees the new price, the first sees that it is winning; one sets a maximum
with the keyboard alone and its proxy answers the other's bids on both pages.

Screenshots of a bidder's page are written to /tmp/dealer360-room-phone.png and
/tmp/dealer360-room-max-phone.png."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.roles import PLATFORM_USER_ID
from tests.png_pixels import read_png
from tests.ws_helpers import RoomClient, make_world, serving
from web.keys import ROOMS, SEQUENCER
from web.rooms import RoomTuning

SCREENSHOT = Path("/tmp/dealer360-room-phone.png")
MAX_SCREENSHOT = Path("/tmp/dealer360-room-max-phone.png")
SIGN_IN_LINE = "Sign in to bid; anyone can watch."
#: The room knows this page's bidder (its snapshot had `you`).
SIGNED_IN = "!document.getElementById('who').hidden"
START = 100_000_000
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


class Browser:
    """One headless Chromium and the DevTools connection to it."""

    def __init__(self, process: asyncio.subprocess.Process, ws: aiohttp.ClientWebSocketResponse):
        self.process = process
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout=15)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def page(self, url: str, *, before: str | None = None) -> Page:
        """A phone-sized page at `url`; `before` runs in it ahead of the page's own script."""
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Page(self, attached["sessionId"])
        await page.call("Page.enable")
        await page.call("Emulation.setDeviceMetricsOverride", **PHONE)
        if before is not None:
            await page.call("Page.addScriptToEvaluateOnNewDocument", source=before)
        await page.call("Page.navigate", url=url)
        await page.wait_for("location.href !== 'about:blank' && document.readyState === 'complete'")
        return page


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.call(method, self.session, **params)

    async def js(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def text(self, element_id: str) -> str:
        value = await self.js(f"document.getElementById({element_id!r}).textContent")
        return str(value)

    async def wait_for(self, expression: str, seconds: float = 10) -> None:
        """Until `expression` is true in the page (checked there, every 20 ms; one
        that throws, as on a document not loaded yet, counts as false)."""
        waiting = (
            "new Promise((done) => { const check = () => { let ok = false; "
            f"try {{ ok = Boolean({expression}); }} catch (err) {{}} "
            "ok ? done(true) : setTimeout(check, 20); }; check(); })"
        )
        async with asyncio.timeout(seconds):
            while True:
                try:
                    await self.call(
                        "Runtime.evaluate",
                        expression=waiting,
                        awaitPromise=True,
                        returnByValue=True,
                    )
                    return
                except AssertionError as err:
                    if "context" not in str(err):
                        raise
                    # The document was replaced while waiting (a navigation): ask the new one.
                    await asyncio.sleep(0.02)

    async def wait_text(self, element_id: str, expected: str, seconds: float = 10) -> None:
        try:
            await self.wait_for(
                f"document.getElementById({element_id!r}).textContent === {expected!r}", seconds
            )
        except TimeoutError:
            raise AssertionError(
                f"#{element_id} shows {await self.text(element_id)!r}, not {expected!r}"
            ) from None

    async def addresses(self) -> list[str]:
        """Every address in the tab's history, the current one last."""
        history = await self.call("Page.getNavigationHistory")
        return [str(entry["url"]) for entry in history["entries"]]

    async def press_enter(self) -> None:
        await self.press("Enter", 13, text="\r")

    async def press(self, key: str, key_code: int, *, text: str | None = None) -> None:
        """One key pressed and released, as the keyboard sends it."""
        for kind in ("keyDown", "keyUp"):
            await self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=key,
                windowsVirtualKeyCode=key_code,
                **({"text": text} if kind == "keyDown" and text is not None else {}),
            )

    async def type_text(self, text: str) -> None:
        """Typed a key at a time into the focused element."""
        for char in text:
            for kind in ("keyDown", "keyUp"):
                await self.call(
                    "Input.dispatchKeyEvent",
                    type=kind,
                    key=char,
                    **({"text": char} if kind == "keyDown" else {}),
                )

    async def tab_to(self, element_id: str, presses: int = 20) -> list[str]:
        """Tab from the top of the page until `element_id` has the focus; the ids
        focused on the way, in order (fails if Tab never reaches it)."""
        await self.js("document.activeElement.blur()")
        visited: list[str] = []
        for _ in range(presses):
            await self.press("Tab", 9)
            visited.append(str(await self.js("document.activeElement.id")))
            if visited[-1] == element_id:
                return visited
        raise AssertionError(f"Tab never reached #{element_id}: {visited}")

    async def clear_focused(self) -> None:
        """Empty the focused input with the keyboard: End, then Backspace over it."""
        length = int(await self.js("document.activeElement.value.length"))
        await self.press("End", 35)
        for _ in range(length):
            await self.press("Backspace", 8)

    async def feed(self) -> list[list[Any]]:
        """The feed as shown, newest first: [amount, bidder, proxy tag or None, label]."""
        items = await self.js(_FEED)
        assert isinstance(items, list)
        return items

    async def wait_feed(self, newest: list[list[Any]], seconds: float = 10) -> None:
        """Until the feed's newest items are `newest` (as `feed` gives them)."""
        shown = json.dumps(newest, ensure_ascii=False, separators=(",", ":"))
        try:
            await self.wait_for(
                f"JSON.stringify({_FEED}.slice(0, {len(newest)})) === {json.dumps(shown)}",
                seconds,
            )
        except TimeoutError:
            raise AssertionError(f"the feed shows {await self.feed()}, not {newest}") from None


# The feed's items as `Page.feed` gives them.
_FEED = (
    "[...document.querySelectorAll('#feed li')].map((li) => ["
    "li.querySelector('.amount').textContent,"
    "li.querySelector('.who-bid').firstChild.textContent,"
    "li.querySelector('.tag') ? li.querySelector('.tag').textContent : null,"
    "li.getAttribute('aria-label')])"
)


@contextlib.asynccontextmanager
async def chromium(session: aiohttp.ClientSession) -> AsyncIterator[Browser]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="d360-chromium-")
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while True:
                line = (await process.stderr.readline()).decode()
                if not line:
                    raise AssertionError("chromium exited before DevTools listened")
                if line.startswith("DevTools listening on "):
                    address = line.split(" on ", 1)[1].strip()
                    break
        ws = await session.ws_connect(address, max_msg_size=64 * 1024 * 1024)
        browser = Browser(process, ws)
        try:
            yield browser
        finally:
            with contextlib.suppress(Exception):
                await browser.call("Browser.close")
            await ws.close()
            browser._reader.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def test_two_bidders_see_the_room_live_on_phone_sized_pages(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=2)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        room = f"{served.base}/rooms/{world.auction_id}"
        async with chromium(session) as browser:
            first = await browser.page(f"{room}#token={world.token(alice)}")
            second = await browser.page(f"{room}#token={world.token(bob)}")
            for page in (first, second):
                await page.wait_text("connection", "Live")
                await page.wait_for(SIGNED_IN)
                await page.wait_text("price", "No bids yet · starts at ₦1,000,000.00")
                assert await page.js("document.getElementById('amount').value") == "1,000,000"
                assert "token=" not in await page.js("location.href")  # out of the address bar

            # Keyboard only: focus the prefilled amount and press Enter.
            await first.js("document.getElementById('amount').focus()")
            await first.press_enter()
            await second.wait_text("price", "₦1,000,000.00")
            await first.wait_text("you", "You are winning")
            assert await first.js("document.getElementById('you').dataset.status") == "winning"
            assert await second.text("bidder-count") == "1"
            assert "Bidder 1" in await second.text("feed")

            # The server's refusal, shown as it is.
            await first.js("document.getElementById('amount').value = '1,200,000'")
            await first.js("document.getElementById('bid-button').click()")
            await first.wait_text("bid-message", "You already have the highest bid.")

            # The second bidder takes the lead with the prefilled minimum.
            await second.wait_for("document.getElementById('amount').value === '1,050,000'")
            await second.js("document.getElementById('bid-button').click()")
            await first.wait_text("you", "You have been outbid")
            await second.wait_text("you", "You are winning")
            await first.wait_text("price", "₦1,050,000.00")

            # A reserve-protection bid is labelled as such.
            sequencer = served.app[SEQUENCER]
            await sequencer.place_bid(
                world.auction_id, PLATFORM_USER_ID, 110_000_000, platform=True
            )
            await first.wait_for(
                "document.getElementById('feed').textContent.includes('Reserve protection')"
            )
            await first.wait_text("price", "₦1,100,000.00")
            await first.wait_for("document.getElementById('amount').value === '1,150,000'")

            # Countdown runs from the server's clock: about an hour left.
            countdown = await first.text("countdown")
            assert countdown.startswith(("59:", "1:00:")), countdown

            assert await first.text("who") == "You bid here as Bidder 1."
            await first.js("document.getElementById('bid-message').textContent = ''")
            await first.js("document.activeElement.blur()")
            shot = await first.call("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            assert png.startswith(b"\x89PNG") and len(png) > 10_000
            await asyncio.to_thread(SCREENSHOT.write_bytes, png)


# Every frame the page receives, in `window.received` (installed before its script runs).
_RECEIVED = """
window.received = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (event) => window.received.push(JSON.parse(event.data)));
  }
};
"""
CAR = {
    "Body": "Sedan",
    "Mileage": "84,500 km",
    "Colour": "Silver",
    "Condition": "Excellent",
    "Location": "Ikeja, Lagos",
}
INCREMENT = 5_000_000  # the factory's default, ₦50,000


async def test_a_maximum_set_by_keyboard_answers_bids_live_on_phone_sized_pages(
    pool: Any, database_url: str
) -> None:
    # ₦10,000,000 each; a deposit is 20 % of the amount it covers.
    world = await make_world(pool, bidders=2, balance_kobo=1_000_000_000)
    alice, bob = world.bidders
    await pool.execute(
        "UPDATE vehicles SET mileage_km = 84500, color = 'silver', condition = 'excellent',"
        " location = 'Ikeja, Lagos' WHERE id = (SELECT vehicle_id FROM auctions WHERE id = $1)",
        world.auction_id,
    )
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        room = f"{served.base}/rooms/{world.auction_id}"
        async with chromium(session) as browser:
            first = await browser.page(f"{room}#token={world.token(alice)}", before=_RECEIVED)
            second = await browser.page(f"{room}#token={world.token(bob)}", before=_RECEIVED)
            for page in (first, second):
                await page.wait_text("connection", "Live")
                await page.wait_for(SIGNED_IN)
                # The car, at the top: the page's first card, above the price.
                await page.wait_text("vehicle-title", "2019 Toyota Camry")
                assert await page.js(_CAR_FACTS) == CAR
                first_card = "document.querySelector('main > :not([hidden])').id"
                assert await page.js(first_card) == "vehicle"
                assert await page.js(
                    "document.getElementById('vehicle').getBoundingClientRect().bottom"
                    " <= document.getElementById('price').getBoundingClientRect().top"
                )
                await page.wait_text("buying-power", "Your buying power: ₦10,000,000.00")
                assert await page.text("max-current") == "You have not set a maximum."
                assert await page.js("document.documentElement.scrollWidth") <= 390

            # Alice sets her maximum with the keyboard alone: Tab to it, type, Enter.
            visited = await first.tab_to("max-amount")
            assert visited == ["amount", "bid-button", "max-amount"], visited
            focus_ring = await first.js("getComputedStyle(document.activeElement).outlineStyle")
            assert focus_ring not in ("none", ""), focus_ring
            # Below the start price: refused with the server's sentence, nothing changes.
            await first.type_text("900,000")
            await first.press_enter()
            await first.wait_text("max-message", "Your maximum must be at least ₦1,000,000.00.")
            assert await first.js("document.getElementById('max-message').dataset.kind") == "error"
            assert await first.text("max-current") == "You have not set a maximum."
            assert await first.text("buying-power") == "Your buying power: ₦10,000,000.00"
            assert await first.text("feed") == ""
            assert await first.js("document.getElementById('max-amount').value") == "900,000"
            await first.clear_focused()
            await first.type_text("1,800,000")
            await first.press_enter()
            # Alone, her maximum leads at the start price, through a proxy bid.
            await first.wait_text(
                "max-message", "Your maximum: ₦1,800,000.00. It leads, at ₦1,000,000.00."
            )
            await first.wait_text("you", "You are winning")
            await first.wait_text("max-current", f"Your maximum: ₦1,800,000.00{LEADING}")
            # Her buying power less the deposit of her maximum (20 %: ₦360,000).
            await first.wait_text("buying-power", "Your buying power: ₦9,640,000.00")
            for page, alice_is in ((first, "Bidder 1 · you"), (second, "Bidder 1")):
                await page.wait_text("price", "₦1,000,000.00")
                await page.wait_feed([_proxy("₦1,000,000.00", alice_is)])

            # Bob bids the prefilled minimum with the keyboard: her proxy answers at
            # min(max, bid + increment) = ₦1,100,000, on both pages as it happens.
            await second.wait_for("document.getElementById('amount').value === '1,050,000'")
            assert (await second.tab_to("amount"))[-1] == "amount"
            await second.press_enter()
            await second.wait_text("bid-message", "Bid placed: ₦1,050,000.00.")
            for page, alice_is, bob_is in _names(first, second):
                await page.wait_text("price", "₦1,100,000.00")
                await page.wait_feed(
                    [_proxy("₦1,100,000.00", alice_is), _bid("₦1,050,000.00", bob_is)]
                )
            await second.wait_text("you", "You have been outbid")
            assert await first.text("you") == "You are winning"
            assert await first.text("buying-power") == "Your buying power: ₦9,640,000.00"
            assert await second.text("buying-power") == "Your buying power: ₦10,000,000.00"
            # Her maximum is hers alone: Bob's page does not show it.
            assert "1,800,000" not in await second.js("document.body.innerText")
            assert await second.text("max-current") == "You have not set a maximum."

            # Bob types ₦1,780,000: the proxy answers at her maximum, not past it.
            await second.wait_for("document.getElementById('amount').value === '1,150,000'")
            await second.clear_focused()
            await second.type_text("1,780,000")
            await second.press_enter()
            await second.wait_text("bid-message", "Bid placed: ₦1,780,000.00.")
            for page, alice_is, bob_is in _names(first, second):
                await page.wait_text("price", "₦1,800,000.00")
                await page.wait_feed(
                    [_proxy("₦1,800,000.00", alice_is), _bid("₦1,780,000.00", bob_is)]
                )
            await second.wait_text("you", "You have been outbid")

            # Past her maximum Bob leads, unanswered, and her deposit is hers again.
            await second.wait_for("document.getElementById('amount').value === '1,850,000'")
            await second.press_enter()
            for page, _, bob_is in _names(first, second):
                await page.wait_text("price", "₦1,850,000.00")
                await page.wait_feed([_bid("₦1,850,000.00", bob_is)])
            await first.wait_text("you", "You have been outbid")
            await first.wait_text("max-current", f"Your maximum: ₦1,800,000.00{OUTBID}")
            await first.wait_text("buying-power", "Your buying power: ₦10,000,000.00")
            await second.wait_text("buying-power", "Your buying power: ₦9,630,000.00")
            assert await first.text("max-message") == ""  # "It leads" is no longer said

            # Every proxy bid reached both pages live, marked; the maximum reached Bob never.
            for page in (first, second):
                proxies = await page.js(
                    "window.received.filter((f) => f.type === 'bid' && f.is_proxy)"
                    ".map((f) => f.amount_kobo)"
                )
                assert proxies == [100_000_000, 110_000_000, 180_000_000]
            frames = await second.js("window.received")
            assert not [f for f in frames if f.get("max") or (f.get("you") or {}).get("max_kobo")]
            assert all(f.get("max_kobo") is None for f in frames if f["type"] == "you")
            assert await second.text("max-current") == "You have not set a maximum."

            await first.js("document.activeElement.blur(); window.scrollTo(0, 0)")
            shot = await first.call(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True
            )
            png = base64.b64decode(shot["data"])
            await asyncio.to_thread(MAX_SCREENSHOT.write_bytes, png)
            image = await asyncio.to_thread(read_png, png)
            assert image.width == 390 * 2  # the phone's width at its pixel ratio
            assert image.height >= 844 * 2
            colours = {pixel for row in range(0, image.height, 8) for pixel in image.pixels(row)}
            assert len(colours) >= 16, f"{len(colours)} colours: a blank page?"
            uniform = [line == line[: image.channels] * image.width for line in image.rows]
            assert uniform.count(False) >= image.height // 4, "mostly blank rows"


LEADING, OUTBID = "\u00a0·\u00a0leading", "\u00a0·\u00a0outbid"
_CAR_FACTS = (
    "Object.fromEntries([...document.querySelectorAll('#vehicle-facts div')].map((d) =>"
    " [d.querySelector('dt').textContent, d.querySelector('dd').textContent]))"
)


def _names(first: Page, second: Page) -> list[tuple[Page, str, str]]:
    """Each page with Alice's and Bob's names in its feed (a bidder's own: "· you")."""
    return [(first, "Bidder 1 · you", "Bidder 2"), (second, "Bidder 1", "Bidder 2 · you")]


def _proxy(amount: str, bidder: str) -> list[Any]:
    """A feed item of a bid placed for a maximum."""
    return [amount, bidder, "Auto-bid", f"{amount} by {bidder}, an automatic bid for a maximum"]


def _bid(amount: str, bidder: str) -> list[Any]:
    return [amount, bidder, None, f"{amount} by {bidder}"]


async def test_the_page_is_served_with_its_assets_and_a_strict_policy(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=0)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        page = await session.get(f"{served.base}/rooms/{world.auction_id}")
        assert page.status == 200
        assert page.content_type == "text/html"
        html = await page.text()
        assert 'src="/static/room.js"' in html and "http" not in html.replace("http-equiv", "")
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        for asset, kind in (("room.js", "text/javascript"), ("room.css", "text/css")):
            response = await session.get(f"{served.base}/static/{asset}")
            assert (response.status, response.content_type) == (200, kind)


# Every frame the page sends, kept in `window.sentFrames` (installed before its script runs).
_SPY = """
window.sentFrames = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  window.sentFrames.push(JSON.parse(data));
  return send.call(this, data);
};
"""


async def test_the_page_resumes_after_a_gap_and_reconnects_after_a_restart(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=2)
    alice, bob = world.bidders
    async with aiohttp.ClientSession() as session, chromium(session) as browser:
        async with serving(database_url, tuning=RoomTuning(reorder_hold_s=0.1)) as served:
            port = int(served.base.rsplit(":", 1)[1])
            url = f"{served.base}/rooms/{world.auction_id}"
            target = await browser.call("Target.createTarget", url="about:blank")
            attached = await browser.call(
                "Target.attachToTarget", targetId=target["targetId"], flatten=True
            )
            page = Page(browser, attached["sessionId"])
            await page.call("Page.enable")
            await page.call("Page.addScriptToEvaluateOnNewDocument", source=_SPY)
            await page.call("Page.navigate", url=url)
            await page.wait_text("connection", "Live")
            bidder = await RoomClient.connect(
                session, served.room_url(world.auction_id), token=world.token(alice)
            )
            await bidder.bid(START)
            await page.wait_text("price", "₦1,000,000.00")
            seq = bidder.snapshot["seq"] + 1

            # An event after a gap (seq + 2, never seq + 1): the page asks to resume.
            end = bidder.snapshot["auction"]["end_time_ms"]
            served.app[ROOMS].publish_state(world.auction_id, seq + 2, "live", end)
            await page.wait_for(
                f"window.sentFrames.some(f => f.type === 'resume' && f.last_seq === {seq})"
            )
            await page.wait_text("connection", "Live")  # a fresh snapshot answered it

        # The server went away (1001): the page says so and tries again.
        await page.wait_for("document.getElementById('connection').dataset.state === 'lost'")
        assert "Reconnecting" in await page.text("connection")
        async with serving(database_url, port=port) as served:
            await page.wait_text("connection", "Live", seconds=20)
            assert await page.text("price") == "₦1,000,000.00"  # the snapshot after reconnecting
            other = await RoomClient.connect(
                session, served.room_url(world.auction_id), token=world.token(bob)
            )
            await other.bid(START + 5_000_000)
            await page.wait_text("price", "₦1,050,000.00")


# What the page shows that asks its reader to sign in, recorded as it appears
# (installed before the page's script runs): the lines of `#bid-message` in
# `window.shown`, `window.formShown` once the sign-in form is visible; and every
# socket the page opens, in `window.sockets`.
_WATCH = """
window.shown = [];
window.formShown = false;
new MutationObserver(() => {
  const line = document.getElementById("bid-message");
  if (line && window.shown[window.shown.length - 1] !== line.textContent) {
    window.shown.push(line.textContent);
  }
  const form = document.getElementById("sign-in");
  if (form && !form.hidden) window.formShown = true;
}).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
window.sockets = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) { super(...args); window.sockets.push(this); }
};
"""


async def test_only_a_guest_is_asked_to_sign_in(pool: Any, database_url: str) -> None:
    world = await make_world(pool, bidders=1)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        room = f"{served.base}/rooms/{world.auction_id}"
        async with chromium(session) as browser:
            guest = await browser.page(room)
            bidder = await browser.page(
                f"{room}#token={world.token(world.bidders[0])}", before=_WATCH
            )
            await guest.wait_text("connection", "Live")
            await guest.wait_text("bid-message", SIGN_IN_LINE)
            assert not await guest.js("document.getElementById('sign-in').hidden")
            # A guest has no maximum to set and no buying power to show.
            assert await guest.js("document.getElementById('max-card').hidden") is True
            assert await guest.js("document.getElementById('buying-power').hidden") is True

            await bidder.wait_for(SIGNED_IN)
            # A lost connection, then a new one: the bidder is signed in again, not asked to.
            await bidder.js("window.sockets[0].close()")
            await bidder.wait_for(f"window.sockets.length === 2 && {SIGNED_IN}")
            await bidder.wait_text("connection", "Live")
            assert SIGN_IN_LINE not in await bidder.js("window.shown")
            assert await bidder.js("window.formShown") is False


async def test_a_token_in_the_fragment_signs_in_and_leaves_the_address(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=1)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        room = f"{served.base}/rooms/{world.auction_id}"
        async with chromium(session) as browser:
            page = await browser.page(f"{room}#token={world.token(world.bidders[0])}")
            await page.wait_for(SIGNED_IN)
            assert await page.text("who") == "Signed in: you have not bid here yet."
            assert await page.js("location.href") == room
            assert not any("token" in address for address in await page.addresses())


async def test_a_sign_in_link_opened_on_the_room_signs_in_without_a_reload(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=1)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        room = f"{served.base}/rooms/{world.auction_id}"
        async with chromium(session) as browser:
            page = await browser.page(room)
            await page.wait_text("connection", "Live")
            await page.wait_text("bid-message", SIGN_IN_LINE)
            await page.js("window.loadedOnce = true")
            await page.js(f"location.hash = 'token={world.token(world.bidders[0])}'")
            await page.wait_for(SIGNED_IN)
            assert await page.js("window.loadedOnce") is True  # the same document
            assert await page.text("bid-message") == ""
            assert not any("token" in address for address in await page.addresses())


async def test_a_token_in_the_query_string_does_not_sign_in(pool: Any, database_url: str) -> None:
    world = await make_world(pool, bidders=1)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        room = f"{served.base}/rooms/{world.auction_id}"
        async with chromium(session) as browser:
            page = await browser.page(f"{room}?token={world.token(world.bidders[0])}", before=_SPY)
            await page.wait_text("connection", "Live")  # after `auth`, had it been sent
            assert await page.js("window.sentFrames.map((f) => f.type)") == ["ping"]
            assert await page.text("bid-message") == SIGN_IN_LINE
            assert await page.js(SIGNED_IN) is False
            # Not kept in the address bar either, though it has reached the server.
            assert not any("token" in address for address in await page.addresses())
