"""`GET /seller`: the seller's page (plain HTML, CSS and JavaScript from web/static,
no build step, nothing loaded from elsewhere): their auctions, and the answers
to an if-bid, through the public API with the seller's token."""

from __future__ import annotations

from aiohttp import web

from web.room_page import page_file


async def page(request: web.Request) -> web.Response:
    return page_file(request, "seller.html")


async def script(request: web.Request) -> web.Response:
    return page_file(request, "seller.js")


async def stylesheet(request: web.Request) -> web.Response:
    return page_file(request, "seller.css")


def install(app: web.Application) -> None:
    app.router.add_get("/seller", page)
    app.router.add_get("/static/seller.js", script)
    app.router.add_get("/static/seller.css", stylesheet)
