"""Hostile strings in every text field: SQL-looking text, Unicode edges (RTL
overrides, zero-width and combining marks, emoji and other 4-byte characters,
noncharacters), control characters and NUL, and lengths at, over and far over each
limit. Each is stored and returned verbatim (trimmed of surrounding whitespace
where the field is trimmed), or refused with a 422 naming the field — never
executed, never a 500, and a refusal leaves the ledger as it was."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest

from tests.factories import random_vin
from tests.http_helpers import PRICE, STEP, Api, Reply, start, token_for
from tests.test_hostile_ledger import changed, fingerprint
from tests.test_hostile_requests import assert_api_error
from tests.ws_helpers import RoomClient

SQL = [
    "'; DROP TABLE users; --",
    "Robert'); DELETE FROM bids WHERE ('1'='1",
    "' UNION SELECT email, NULL FROM users --",
    '" OR ""="',
    "1; UPDATE users SET wallet_balance = 1e12",
    "$1 $2 %s %(x)s {0} ${jndi:ldap://x/a}",
    "\\x00 \\u0000 \\\\'",
    "</script><script>alert(1)</script>",
]
UNICODE = [
    "\u202eevil.exe\u202c",  # right-to-left override
    "\u200f\u200eab\u200b\u200d\u2060",  # marks, zero-width space and joiners
    "\ufeffbom",
    "🚗💨 Lagos",
    "👨\u200d👩\u200d👧\u200d👦",
    "𝕏𝔸𝕄 𐍈 𠜎",
    "Z\u0334\u0321\u031ba\u0337l\u0336g\u0335o\u0338",  # combining marks
    "中文 العربية עברית",
    "\U0010fffd \U0010ffff \ufffe \uffff",  # a private-use and noncharacters
    "\u0085\u00a0middle\u2028line",  # C1 NEL, NBSP, line separator (trimmed at the ends)
]
#: Refused wherever text is checked: control characters never reach the ledger
#: (at either end, the whitespace among them is trimmed away like any other).
CONTROL = ["\x00", "a\x00b", "line\nbreak", "tab\there", "\x1b[31mred", "del\x7f", "a\rb"]


def trimmed(value: str) -> str:
    """What a trimmed field keeps (Python's idea of whitespace, as the engine's)."""
    return value.strip()


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url, rate_limit_ip_per_min=100_000)


async def refused(api: Api, send: Any, *codes: str, case: Any = None) -> Reply:
    """`send()` is refused with a 422 and one of `codes`, the ledger untouched."""
    before = await fingerprint(api.pool)
    reply: Reply = await send()
    assert_api_error(reply, 422, case=case)
    assert reply.code in codes, (case, reply.code, reply.text)
    assert changed(before, await fingerprint(api.pool)) == set(), case
    return reply


def lengths(limit: int) -> tuple[list[str], list[str]]:
    """Texts of exactly `limit` characters (kept) and of more (refused): counted in
    code points, as PostgreSQL counts a VARCHAR's."""
    at = ["😀" * limit, "e" + "\u0301" * (limit - 1), "a" * limit]
    over = ["😀" * (limit + 1), "e" + "\u0301" * limit, "x" * 10_000]
    return at, over


# ---- users --------------------------------------------------------------------------------------


async def test_user_email_and_display_name_are_verbatim_or_refused(api: Api) -> None:
    emails = [
        "o'brien+tag@example.com",
        "';--@x.ng",
        "用户@例子.广告",
        "😀@😀.ng",
        "a\u202e@b.ng",
        "😀" * (255 - len("@x.ng")) + "@x.ng",
    ]
    names = [*SQL, *UNICODE, *lengths(100)[0]]
    for i, text in enumerate([*emails, *names]):
        email = text if i < len(emails) else f"name{i}@example.test"
        name = None if i < len(emails) else text
        user = uuid.uuid4()
        body = {"email": email, "role": "user", "kyc_status": "none", "display_name": name}
        reply = await api.service("PUT", f"/internal/users/{user}", body)
        assert reply.status == 201, (text, reply.text)
        assert reply.body["user"]["email"] == email
        assert reply.body["user"]["display_name"] == (None if name is None else trimmed(name))
        row = await api.pool.fetchrow("SELECT email, display_name FROM users WHERE id = $1", user)
        assert (row["email"], row["display_name"]) == (email, reply.body["user"]["display_name"])

    for text in [*CONTROL, *lengths(100)[1]]:
        body = {"email": "ok@x.ng", "role": "user", "kyc_status": "none", "display_name": text}
        await refused(
            api, lambda b=body: api.service("PUT", f"/internal/users/{uuid.uuid4()}", b), "invalid"
        )
    for email in [*CONTROL, "😀" * (256 - len("@x.ng")) + "@x.ng", "no-at-sign", "a b@c.ng"]:
        body = {"email": email, "role": "user", "kyc_status": "none"}
        await refused(
            api,
            lambda b=body: api.service("PUT", f"/internal/users/{uuid.uuid4()}", b),
            "invalid",
            "invalid_email",
            case=email,
        )
    for role in ["admin' --", "ADMIN", "admin\x00", "system"]:
        body = {"email": "r@x.ng", "role": role, "kyc_status": "approved"}
        await refused(
            api,
            lambda b=body: api.service("PUT", f"/internal/users/{uuid.uuid4()}", b),
            "invalid_role",
        )


# ---- wallets and payments -----------------------------------------------------------------------


async def test_wallet_references_are_verbatim_or_refused(api: Api) -> None:
    user = await api.bidder(balance_kobo=10**9)
    for kind in ("credits", "debits"):
        for text in [*SQL, *UNICODE, *lengths(100)[0]]:
            reference = f"{kind}:{text}"[:100] if len(text) < 90 else text
            if kind == "debits" and reference == text:
                reference = text[:-1] + "d"  # not the credit's own reference
            reply = await api.service(
                "POST",
                f"/internal/users/{user}/wallet/{kind}",
                {"amount_kobo": 1, "reference": reference},
            )
            assert reply.status == 201, (reference, reply.text)
            assert reply.body["transaction"]["reference"] == trimmed(reference)
            again = await api.service(
                "POST",
                f"/internal/users/{user}/wallet/{kind}",
                {"amount_kobo": 1, "reference": reference},
            )
            assert (again.status, again.body["transaction"]["id"]) == (
                200,
                reply.body["transaction"]["id"],
            )
        for text in [*CONTROL, *lengths(100)[1], "", "   "]:
            change = {"amount_kobo": 1, "reference": text}
            await refused(
                api,
                lambda c=change, k=kind: api.service(
                    "POST", f"/internal/users/{user}/wallet/{k}", c
                ),
                "invalid",
                "invalid_reference",
                case=(kind, text[:20]),
            )


async def test_payment_references_are_verbatim_or_refused(api: Api) -> None:
    manager, bidder = await api.user(role="manager"), await api.bidder()
    auction = await api.live_auction()
    assert (await api.bid(bidder, auction, PRICE)).status == 201
    ended = await api.call(
        "POST",
        f"/internal/admin/auctions/{auction}/force-end",
        token=token_for(manager, "manager"),
        json_body={"reason": "ended for the test"},
    )
    assert ended.status == 200, ended.text
    path = f"/internal/auctions/{auction}/payments"
    for text in [*SQL, *UNICODE[:4], lengths(100)[0][0]]:
        payment = {"payer_id": str(bidder), "amount_kobo": 1, "reference": text}
        reply = await api.service("POST", path, payment)
        assert reply.status == 201, (text, reply.text)
        assert reply.body["payment"]["reference"] == trimmed(text)
    for text in [*CONTROL, *lengths(100)[1], ""]:
        payment = {"payer_id": str(bidder), "amount_kobo": 1, "reference": text}
        await refused(
            api, lambda p=payment: api.service("POST", path, p), "invalid", "invalid_reference"
        )


# ---- vehicles -----------------------------------------------------------------------------------

VEHICLE_LIMITS = {"make": 50, "model": 100, "location": 100, "body_type": 30, "color": 30}


async def test_vehicle_text_is_verbatim_or_refused(api: Api) -> None:
    seller = await api.seller()
    for field, limit in VEHICLE_LIMITS.items():
        for text in [*SQL, *UNICODE, *lengths(limit)[0]]:
            if len(text) > limit:
                continue
            body = {"vin": random_vin(), "year": 2019, "make": "Kia", "model": "Rio", field: text}
            reply = await api.service(
                "POST", "/internal/vehicles", {**body, "listed_by": str(seller)}
            )
            assert reply.status == 201, (field, text, reply.text)
            assert reply.body["vehicle"][field] == trimmed(text), (field, text)
            stored = await api.pool.fetchval(
                "SELECT row_to_json(v)::text FROM vehicles v WHERE id = $1",
                uuid.UUID(reply.body["vehicle"]["id"]),
            )
            assert json.loads(stored)[field] == trimmed(text)
        for text in [*CONTROL, *lengths(limit)[1]]:
            body = {"vin": random_vin(), "year": 2019, "make": "Kia", "model": "Rio", field: text}
            body["listed_by"] = str(seller)
            await refused(
                api,
                lambda b=body: api.service("POST", "/internal/vehicles", b),
                "invalid",
                case=field,
            )
    for field in ("make", "model"):
        body = {"vin": random_vin(), "year": 2019, "make": "Kia", "model": "Rio", field: "  "}
        body["listed_by"] = str(seller)
        await refused(api, lambda b=body: api.service("POST", "/internal/vehicles", b), "invalid")


async def test_a_vin_outside_its_alphabet_is_refused_however_it_upper_cases(api: Api) -> None:
    seller = await api.seller()
    bad = [
        *SQL,
        *UNICODE,
        *CONTROL,
        "1HGBH41JXMN10918\x00",
        "1HGBH41JXMN10918😀",
        "１ＨＧＢＨ４１ＪＸＭＮ１０９１８６",  # full-width
        "1HGBH41JXMN1O9186",  # an O
        "ßßßßßßßß1",  # upper-cases to 17 valid characters: SSSSSSSSSSSSSSSS1
        "ſ" * 17,  # long s: upper-cases to S
        "ﬀ" * 8 + "1",  # the ff ligature: upper-cases to FF
        "1hgbh41jxmn10918ı",  # dotless i: upper-cases to I
    ]
    for vin in bad:
        body = {"vin": vin, "year": 2019, "make": "Kia", "model": "Rio", "listed_by": str(seller)}
        await refused(
            api,
            lambda b=body: api.service("POST", "/internal/vehicles", b),
            "invalid_vin",
            case=vin,
        )
    body = {"vin": " 1hgbh41jxmn109186 ", "year": 2019, "make": "Kia", "model": "Rio"}
    reply = await api.service("POST", "/internal/vehicles", {**body, "listed_by": str(seller)})
    assert (reply.status, reply.body["vehicle"]["vin"]) == (201, "1HGBH41JXMN109186")


# ---- bids ---------------------------------------------------------------------------------------

CLIENT_BID_IDS = [
    *[text[:64] for text in SQL],
    *[text for text in UNICODE if "\u0085" not in text],
    " spaces kept ",
    "😀" * 64,
    "e" + "\u0301" * 63,
]


async def test_client_bid_ids_are_verbatim_or_refused_over_rest_and_the_socket(api: Api) -> None:
    alice, bob = await api.bidder(), await api.bidder()
    auction = await api.live_auction()
    amount = PRICE
    for i, client_bid_id in enumerate(CLIENT_BID_IDS):
        bidder = (alice, bob)[i % 2]
        reply = await api.bid(bidder, auction, amount, client_bid_id)
        assert reply.status == 201, (client_bid_id, reply.text)
        assert reply.body["bid"]["client_bid_id"] == client_bid_id
        again = await api.bid(bidder, auction, amount, client_bid_id)  # idempotent
        assert again.body["bid"]["id"] == reply.body["bid"]["id"]
        amount += STEP
    history = await api.service("GET", f"/internal/auctions/{auction}/bids")
    assert [bid["client_bid_id"] for bid in history.body["bids"]] == CLIENT_BID_IDS

    for client_bid_id in [*CONTROL, "", "😀" * 65, "e" + "\u0301" * 64, "x" * 10_000]:
        body = {"auction_id": str(auction), "amount_kobo": amount, "client_bid_id": client_bid_id}
        await refused(
            api,
            lambda b=body: api.as_user(alice, "POST", "/api/bids", b),
            "invalid_client_bid_id",
            case=client_bid_id[:10],
        )

    url = str(api.client.make_url(f"/ws/auctions/{auction}")).replace("http", "ws", 1)
    before = await fingerprint(api.pool)
    async with aiohttp.ClientSession() as session:
        client = await RoomClient.connect(session, url, token=token_for(alice))
        for client_bid_id in [*CONTROL, "", "😀" * 65]:
            await client.send(type="bid", amount_kobo=amount, client_bid_id=client_bid_id)
            assert (await client.expect("error"))["code"] == "malformed", client_bid_id
        assert changed(before, await fingerprint(api.pool)) == set()
        result = await client.bid(amount, "'; DROP TABLE bids; -- 😀\u202e")
        assert result["bid"]["client_bid_id"] == "'; DROP TABLE bids; -- 😀\u202e"
        await client.close()


# ---- staff reasons ------------------------------------------------------------------------------


async def test_staff_reasons_are_kept_verbatim_or_refused(api: Api) -> None:
    manager = await api.user(role="manager")
    auction = await api.live_auction()
    end_ms = int(
        (
            await api.pool.fetchval("SELECT end_time FROM auctions WHERE id = $1", auction)
        ).timestamp()
        * 1000
    )
    reasons = [*SQL, *UNICODE, "line one\nline two\ttabbed", *lengths(1000)[0]]
    for reason in reasons:
        end_ms += 60_000
        reply = await api.call(
            "POST",
            f"/internal/admin/auctions/{auction}/extend",
            token=token_for(manager, "manager"),
            json_body={"reason": reason, "end_time_ms": end_ms},
        )
        assert reply.status == 200, (reason[:20], reply.text)
    kept = await api.pool.fetch(
        "SELECT reason FROM admin_audit_log WHERE target_id = $1 ORDER BY created_at", auction
    )
    assert [row["reason"] for row in kept] == [trimmed(reason) for reason in reasons]

    for reason in [
        *[c for c in CONTROL if c not in ("line\nbreak", "tab\there")],
        *lengths(1000)[1],
    ]:
        body = {"reason": reason, "end_time_ms": end_ms + 60_000}
        await refused(
            api,
            lambda b=body: api.call(
                "POST",
                f"/internal/admin/auctions/{auction}/extend",
                token=token_for(manager, "manager"),
                json_body=b,
            ),
            "invalid_reason",
            "reason_required",
            case=reason[:10],
        )
    draft = await api.create_auction(await api.seller(), status="draft")
    rejected = await api.call(
        "POST",
        f"/internal/admin/auctions/{draft.body['auction']['id']}/reject",
        token=token_for(manager, "manager"),
        json_body={"reason": SQL[0]},
    )
    assert rejected.status == 200, rejected.text
    cancel_reason = await api.pool.fetchval(
        "SELECT cancel_reason FROM auctions WHERE id = $1", uuid.UUID(draft.body["auction"]["id"])
    )
    assert cancel_reason == SQL[0]


# ---- limits ------------------------------------------------------------------------------------


async def test_a_length_limit_counts_the_text_as_sent(api: Api) -> None:
    """Padding that trimming would remove still counts: the API's document can then
    say each limit as a `maxLength`."""
    user, seller = await api.bidder(balance_kobo=PRICE), await api.seller()
    manager, auction = await api.user(role="manager"), await api.live_auction()
    padded = " " + "r" * 100
    credits = f"/internal/users/{user}/wallet/credits"
    credit = {"amount_kobo": 1, "reference": padded}
    await refused(api, lambda: api.service("POST", credits, credit), "invalid")
    vehicle = {"vin": random_vin(), "year": 2019, "make": "Kia" + " " * 48, "model": "Rio"}
    vehicle["listed_by"] = str(seller)
    await refused(api, lambda: api.service("POST", "/internal/vehicles", vehicle), "invalid")
    reason = {"reason": "\n" + "x" * 1000}
    await refused(
        api,
        lambda: api.call(
            "POST",
            f"/internal/admin/auctions/{auction}/cancel",
            token=token_for(manager, "manager"),
            json_body=reason,
        ),
        "invalid_reason",
    )
    at_the_limit = {"amount_kobo": 1, "reference": padded[1:]}
    reply = await api.service("POST", credits, at_the_limit)
    assert reply.status == 201, reply.text


# ---- queries and paths --------------------------------------------------------------------------


async def test_sql_in_queries_and_paths_names_nothing(api: Api) -> None:
    before = await fingerprint(api.pool)
    for query in [
        "status=live' OR '1'='1",
        "status=live;DROP TABLE auctions",
        "status=%00",
        "limit=1;DROP TABLE bids",
        "limit=1e3",
        "limit=-1",
        "limit=%F0%9F%98%80",
        "limit=٣",  # an Arabic-Indic digit: isdigit() yet not ASCII
    ]:
        assert_api_error(await api.call("GET", f"/api/auctions?{query}"), 422, case=query)
    for path in [
        "/api/auctions/1' OR '1'='1",
        "/api/vehicles/%27%3B%20DROP%20TABLE%20vehicles%3B--/similar",
        "/internal/auctions/00000000-0000-0000-0000-000000000000' --/bids",
    ]:
        assert_api_error(await api.service("GET", path), 404, case=path)
    assert changed(before, await fingerprint(api.pool)) == set()
