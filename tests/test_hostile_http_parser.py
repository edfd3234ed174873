"""What the HTTP layer itself is sent: bodies whose Content-Encoding lies about
them, encodings the engine cannot read, request lines and query strings over
aiohttp's limits. API.md: every endpoint answers errors in its JSON shape with a
fitting 4xx — never a 500, never a message about the server's own libraries —
and nothing reaches the ledger."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import aiohttp
import pytest

from tests.http_helpers import SERVICE_TOKEN, Api, Reply, start
from tests.test_hostile_ledger import changed, fingerprint
from tests.test_hostile_requests import assert_api_error


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


async def fresh_call(api: Api, method: str, path: str, **kwargs: Any) -> Reply:
    """On its own connection: a refused request may close the one it came on."""
    url = str(api.client.make_url(path))
    headers = {"Authorization": f"Bearer {SERVICE_TOKEN}", **kwargs.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as response,
    ):
        text = await response.text()
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = None
        return Reply(response.status, body, response.headers, text)


USER = b'{"email": "enc@example.test", "role": "user", "kyc_status": "none"}'

LYING_BODIES = {
    "gzip that is not": (b"\x1f\x8b this is not gzip", "gzip"),
    "deflate that is not": (b"plain text", "deflate"),
    "gzip cut short": (gzip.compress(USER)[:12], "gzip"),
}


@pytest.mark.parametrize("kind", list(LYING_BODIES))
async def test_a_body_its_content_encoding_lies_about_is_400_malformed(api: Api, kind: str) -> None:
    data, encoding = LYING_BODIES[kind]
    before = await fingerprint(api.pool)
    reply = await fresh_call(
        api,
        "PUT",
        f"/internal/users/{uuid.uuid4()}",
        data=data,
        headers={"Content-Encoding": encoding},
    )
    assert_api_error(reply, 400, case=kind)
    assert reply.code == "malformed"
    assert changed(before, await fingerprint(api.pool)) == set()


async def test_a_gzipped_body_is_read_and_a_gzip_bomb_is_413(api: Api) -> None:
    zipped = await fresh_call(
        api,
        "PUT",
        f"/internal/users/{uuid.uuid4()}",
        data=gzip.compress(USER),
        headers={"Content-Encoding": "gzip"},
    )
    assert zipped.status == 201, zipped.text
    bomb = gzip.compress(b'{"email": "' + b"a" * 10_000_000 + b'"}')
    reply = await fresh_call(
        api,
        "PUT",
        f"/internal/users/{uuid.uuid4()}",
        data=bomb,
        headers={"Content-Encoding": "gzip"},
    )
    assert_api_error(reply, 413)


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_an_encoding_the_engine_cannot_read_is_refused_in_the_error_shape(
    api: Api, encoding: str
) -> None:
    reply = await fresh_call(
        api,
        "PUT",
        f"/internal/users/{uuid.uuid4()}",
        data=USER,
        headers={"Content-Encoding": encoding},
    )
    assert_api_error(reply, 400, 415, case=encoding)
    assert "install" not in reply.text  # nothing about the server's own libraries


@pytest.mark.parametrize(
    "path",
    ["/api/auctions?" + "status=live&" * 1_000, "/api/auctions/" + "a" * 9_000],
    ids=["long query", "long path"],
)
async def test_a_request_line_over_the_limit_is_refused_in_the_error_shape(
    api: Api, path: str
) -> None:
    reply = await fresh_call(api, "GET", path)
    assert_api_error(reply, 400, 404, 414, case=path[:20])
    assert "status=live&status" not in reply.text and "aaaa" not in reply.text  # not echoed
