"""`GET /rooms/{id}`: the auction-room page (plain HTML, CSS and JavaScript from
web/static, no build step, nothing loaded from elsewhere)."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page_file(request: web.Request, name: str) -> web.Response:
    """A file of web/static, with headers that keep the page to its own origin."""
    path = STATIC / name
    return web.Response(
        body=path.read_bytes(),
        content_type=_TYPES[path.suffix],
        charset="utf-8",
        headers={**_HEADERS, "Content-Security-Policy": _policy(request.host)},
    )


def _policy(host: str) -> str:
    """The page talks to its own origin only: these files and its WebSocket
    (named outright: older WebKit does not count ws: as 'self')."""
    sockets = f" ws://{host} wss://{host}" if _HOST.fullmatch(host) else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


async def room(request: web.Request) -> web.Response:
    # The id is read by the page from its own address; an unknown one shows a
    # message there (the room's socket answers 404).
    return page_file(request, "room.html")


async def script(request: web.Request) -> web.Response:
    return page_file(request, "room.js")


async def stylesheet(request: web.Request) -> web.Response:
    return page_file(request, "room.css")


def install(app: web.Application) -> None:
    app.router.add_get("/rooms/{id}", room)
    app.router.add_get("/static/room.js", script)
    app.router.add_get("/static/room.css", stylesheet)
