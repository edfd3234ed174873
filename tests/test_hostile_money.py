"""Money at its edges in every amount field — bids over REST and the socket,
credits, debits, payments, auction prices, increments, reserves and deposits,
vehicle prices: 0, 1, 10^15 − 1, 10^15, negatives, numbers as strings, fractions
(1.5), integral numbers written with a fraction or an exponent (1.0, 1e3: the
integers they equal), booleans, null and integers past 2^64. Each gets its
documented code and status, and every refusal leaves the ledger exactly as it was."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.factories import random_vin
from tests.http_helpers import PRICE, Api, Reply, start, token_for
from tests.test_hostile_ledger import changed, fingerprint
from tests.test_hostile_requests import assert_api_error
from tests.ws_helpers import RoomClient

MAX = 10**15 - 1

#: Whole numbers outside 1 ≤ amount ≤ 10^15 − 1 (JSON text, sent as is).
OUT_OF_RANGE = {
    "zero": "0",
    "minus zero": "-0",
    "negative": "-1",
    "very negative": "-100000000",
    "10^15": "1000000000000000",
    "2^63": "9223372036854775808",
    "2^64": "18446744073709551616",
    "10^40": "1" + "0" * 40,
    "-2^64": "-18446744073709551616",
    "1e400": "1e400",  # an integer, written with an exponent
}
#: Anything that is not a whole JSON number.
NOT_WHOLE = {
    "a string": '"100000000"',
    "an empty string": '""',
    "1.5": "1.5",
    "true": "true",
    "false": "false",
    "null": "null",
    "a list": "[100000000]",
    "an object": '{"kobo": 100000000}',
}
HOSTILE = {**OUT_OF_RANGE, **NOT_WHOLE}
#: Whole numbers written with a fraction or an exponent: JSON's (and JSON Schema's)
#: integers, each taken as the integer it equals.
INTEGRAL = {"1.0": 1, "1e3": 1000, "1E8": 100_000_000}


def with_amount(fields: dict[str, Any], name: str, raw: str) -> str:
    """The JSON body with `name` set to the raw JSON text `raw`."""
    return json.dumps({**fields, name: "\x00amount"}).replace('"\\u0000amount"', raw)


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(
        aiohttp_client,
        database_url,
        rate_limit_ip_per_min=100_000,
        ws_bids_per_s=1_000,
        ws_frames_per_s=1_000,  # a socket sends every hostile amount back to back
    )


async def unchanged(api: Api, send: Callable[[], Awaitable[Reply]]) -> Reply:
    before = await fingerprint(api.pool)
    reply = await send()
    assert changed(before, await fingerprint(api.pool)) == set(), reply.text
    return reply


async def assert_refused(
    api: Api, send: Callable[[], Awaitable[Reply]], status: int, code: str, case: Any
) -> None:
    reply = await unchanged(api, send)
    assert_api_error(reply, status, case=case)
    assert reply.code == code, (case, reply.code, reply.text)


# ---- bids ------------------------------------------------------------------------------------


async def test_rest_bid_amounts_get_invalid_amount_or_their_rule(api: Api) -> None:
    bidder = await api.bidder()
    auction = await api.live_auction()
    fields = {"auction_id": str(auction), "client_bid_id": "edge"}
    token = token_for(bidder)

    def bid(raw: str, by: str = token) -> Callable[[], Awaitable[Reply]]:
        body = with_amount({**fields, "client_bid_id": f"edge-{raw[:40]}"}, "amount_kobo", raw)
        return lambda: api.call("POST", "/api/bids", token=by, data=body)

    for case, raw in HOSTILE.items():
        await assert_refused(api, bid(raw), 422, "invalid_amount", case)
    await assert_refused(api, bid("1"), 409, "below_minimum", "1")
    await assert_refused(api, bid(str(MAX)), 409, "insufficient_buying_power", "10^15 - 1")
    assert (
        await api.call("POST", "/api/bids", token=token, data=bid_body(fields, PRICE))
    ).status == 201
    rival = token_for(await api.bidder())
    for raw in INTEGRAL:  # the integers they equal, all below the next minimum
        await assert_refused(api, bid(raw, by=rival), 409, "below_minimum", raw)


def bid_body(fields: dict[str, Any], amount: int) -> str:
    return json.dumps({**fields, "client_bid_id": "valid", "amount_kobo": amount})


async def test_an_integral_amount_is_the_integer_it_equals_over_rest_and_the_socket(
    api: Api,
) -> None:
    auction = await api.live_auction()
    token = token_for(await api.bidder())

    def bid(raw: str, client_bid_id: str) -> Callable[[], Awaitable[Reply]]:
        body = with_amount(
            {"auction_id": str(auction), "client_bid_id": client_bid_id}, "amount_kobo", raw
        )
        return lambda: api.call("POST", "/api/bids", token=token, data=body)

    await assert_refused(api, bid("1.5", "fraction"), 422, "invalid_amount", "1.5")
    await assert_refused(api, bid("1e3", "small"), 409, "below_minimum", "1e3")  # 1000 kobo
    reply = await bid("152655220.0", "rest")()
    assert (reply.status, reply.body["bid"]["amount_kobo"]) == (201, 152655220), reply.text

    url = str(api.client.make_url(f"/ws/auctions/{auction}")).replace("http", "ws", 1)
    async with aiohttp.ClientSession() as session:
        client = await RoomClient.connect(session, url, token=token_for(await api.bidder()))
        await client.ws.send_str('{"type": "bid", "client_bid_id": "f", "amount_kobo": 1.5}')
        assert (await client.expect("error"))["code"] == "malformed"
        await client.ws.send_str('{"type": "bid", "client_bid_id": "s", "amount_kobo": 1e3}')
        result = await client.expect("bid_result", client_bid_id="s")
        assert (result["status"], result["code"]) == ("rejected", "below_minimum")
        await client.ws.send_str(
            '{"type": "bid", "client_bid_id": "ws", "amount_kobo": 1.5765522e8}'
        )
        result = await client.expect("bid_result", client_bid_id="ws")
        assert (result["status"], result["bid"]["amount_kobo"]) == ("accepted", 157655220)
        await client.close()
    history = await api.service("GET", f"/internal/auctions/{auction}/bids")
    assert [bid["amount_kobo"] for bid in history.body["bids"]] == [152655220, 157655220]


async def test_socket_bid_amounts_get_invalid_amount_or_malformed(api: Api) -> None:
    bidder = await api.bidder()
    auction = await api.live_auction()
    url = str(api.client.make_url(f"/ws/auctions/{auction}")).replace("http", "ws", 1)
    before = await fingerprint(api.pool)
    async with aiohttp.ClientSession() as session:
        client = await RoomClient.connect(session, url, token=token_for(bidder))
        for case, raw in HOSTILE.items():
            client_bid_id = f"ws-{case}"
            frame = f'{{"type": "bid", "client_bid_id": "{client_bid_id}", "amount_kobo": {raw}}}'
            await client.ws.send_str(frame)
            if case in OUT_OF_RANGE:  # a whole number: the core's rule 9
                result = await client.expect("bid_result", client_bid_id=client_bid_id)
                assert (result["status"], result["code"]) == ("rejected", "invalid_amount"), case
            else:  # not one: the frame is malformed
                assert (await client.expect("error"))["code"] == "malformed", case
        assert (await client.bid(1))["code"] == "below_minimum"
        assert (await client.bid(MAX))["code"] == "insufficient_buying_power"
        assert changed(before, await fingerprint(api.pool)) == set()
        assert (await client.bid(PRICE))["status"] == "accepted"
        await client.close()
        rival = await RoomClient.connect(session, url, token=token_for(await api.bidder()))
        for raw in INTEGRAL:  # the integers they equal, all below the next minimum
            frame = f'{{"type": "bid", "client_bid_id": "ws-{raw}", "amount_kobo": {raw}}}'
            await rival.ws.send_str(frame)
            result = await rival.expect("bid_result", client_bid_id=f"ws-{raw}")
            assert (result["status"], result["code"]) == ("rejected", "below_minimum"), raw
        await rival.close()


# ---- wallets ----------------------------------------------------------------------------------


def wallet_change(
    api: Api, user: uuid.UUID, kind: str, raw: str, reference: str
) -> Callable[[], Awaitable[Reply]]:
    body = with_amount({"reference": reference}, "amount_kobo", raw)
    return lambda: api.service("POST", f"/internal/users/{user}/wallet/{kind}", data=body)


@pytest.mark.parametrize("kind", ["credits", "debits"])
async def test_wallet_amounts_are_refused_with_their_code(api: Api, kind: str) -> None:
    user = await api.bidder(balance_kobo=PRICE)
    for case, raw in OUT_OF_RANGE.items():
        await assert_refused(
            api, wallet_change(api, user, kind, raw, f"r-{case}"), 422, "invalid_amount", case
        )
    for case, raw in NOT_WHOLE.items():  # the body does not fit the struct: the field is named
        send = wallet_change(api, user, kind, raw, f"r-{case}")
        await assert_refused(api, send, 422, "invalid", case)
        assert "amount_kobo" in (await send()).body["error"]["message"]
    balance = PRICE
    for raw, integer in INTEGRAL.items():  # the integers they equal
        reply = await wallet_change(api, user, kind, raw, f"r-{raw}")()
        if kind == "debits" and integer > balance:
            assert (reply.status, reply.code) == (409, "insufficient_funds"), raw
            continue
        assert (reply.status, reply.body["transaction"]["amount_kobo"]) == (201, integer), raw
        balance += integer if kind == "credits" else -integer
    assert (await api.wallet(user))["balance_kobo"] == balance


async def test_a_wallet_holds_up_to_10_15_minus_1_kobo(api: Api) -> None:
    user = await api.bidder(balance_kobo=0)
    assert (await wallet_change(api, user, "credits", str(MAX), "all")()).status == 201
    await assert_refused(
        api, wallet_change(api, user, "credits", "1", "one-more"), 422, "balance_limit", "+1"
    )
    await assert_refused(
        api,
        wallet_change(api, user, "debits", str(MAX + 1), "too-much"),
        422,
        "invalid_amount",
        "-",
    )
    assert (await wallet_change(api, user, "debits", str(MAX), "all-out")()).status == 201
    await assert_refused(
        api, wallet_change(api, user, "debits", "1", "empty"), 409, "insufficient_funds", "empty"
    )
    assert (await api.wallet(user))["balance_kobo"] == 0


async def test_a_reference_reused_with_another_amount_is_a_conflict(api: Api) -> None:
    user = await api.bidder(balance_kobo=0)
    assert (await wallet_change(api, user, "credits", "100", "same")()).status == 201
    for raw in ("101", '"100"'):
        reply = await unchanged(api, wallet_change(api, user, "credits", raw, "same"))
        assert reply.status in (409, 422), reply.text
    # 100.0 is the integer 100: the same credit again, answered with the first one.
    reply = await unchanged(api, wallet_change(api, user, "credits", "100.0", "same"))
    assert reply.status == 200, reply.text
    assert (await wallet_change(api, user, "credits", "100", "same")()).status == 200


# ---- payments ---------------------------------------------------------------------------------


async def test_payment_amounts_are_refused_with_their_code(api: Api) -> None:
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

    def pay(raw: str, reference: str) -> Callable[[], Awaitable[Reply]]:
        body = with_amount({"payer_id": str(bidder), "reference": reference}, "amount_kobo", raw)
        return lambda: api.service("POST", f"/internal/auctions/{auction}/payments", data=body)

    for case, raw in OUT_OF_RANGE.items():
        await assert_refused(api, pay(raw, f"p-{case}"), 422, "invalid_amount", case)
    for case, raw in NOT_WHOLE.items():
        await assert_refused(api, pay(raw, f"p-{case}"), 422, "invalid", case)
    for raw, integer in INTEGRAL.items():  # the integers they equal; less than PRICE is due
        reply = await pay(raw, f"p-{raw}")()
        if integer < PRICE // 2:
            assert (reply.status, reply.body["payment"]["amount_kobo"]) == (201, integer), raw
        else:
            assert (reply.status, reply.code) == (409, "overpayment"), raw
    await assert_refused(api, pay(str(MAX), "everything"), 409, "overpayment", "10^15 - 1")
    assert (await pay("1", "one kobo")()).status == 201


# ---- auctions and vehicles --------------------------------------------------------------------

AUCTION_AMOUNTS = {
    "start_price_kobo": "invalid_price",
    "reserve_price_kobo": "invalid_price",
    "bid_increment_kobo": "invalid_increment",
}


@pytest.mark.parametrize("route", ["internal", "public"])
async def test_auction_amounts_are_refused_with_their_code(api: Api, route: str) -> None:
    manager = await api.user(role="manager")
    vehicle = await api.vehicle(manager)

    def create(field: str, raw: str, on: uuid.UUID = vehicle) -> Callable[[], Awaitable[Reply]]:
        fields = api.auction_body(on)
        if route == "internal":
            body = with_amount({**fields, "created_by": str(manager)}, field, raw)
            return lambda: api.service("POST", "/internal/auctions", data=body)
        body = with_amount(fields, field, raw)
        return lambda: api.call(
            "POST", "/api/auctions", token=token_for(manager, "manager"), data=body
        )

    for field, code in AUCTION_AMOUNTS.items():
        for case, raw in OUT_OF_RANGE.items():
            await assert_refused(api, create(field, raw), 422, code, (field, case))
        for case, raw in NOT_WHOLE.items():
            if (field, raw) == ("reserve_price_kobo", "null"):
                continue  # no reserve: valid
            await assert_refused(api, create(field, raw), 422, "invalid", (field, case))
    for raw in ("-1", "10001", "2147483648", "18446744073709551616"):
        await assert_refused(api, create("deposit_pct_bp", raw), 422, "invalid_deposit", raw)
    for raw in ("1.5", '"2000"', "null"):
        await assert_refused(api, create("deposit_pct_bp", raw), 422, "invalid", raw)
    for field in AUCTION_AMOUNTS:
        for raw, integer in INTEGRAL.items():  # the integers they equal
            reply = await create(field, raw, on=await api.vehicle(manager))()
            assert (reply.status, reply.body["auction"][field]) == (201, integer), (field, raw)


async def test_auction_amounts_at_their_bounds_are_taken(api: Api) -> None:
    manager = await api.user(role="manager")
    for field, value in [
        ("start_price_kobo", 1),
        ("start_price_kobo", MAX),
        ("bid_increment_kobo", 1),
        ("bid_increment_kobo", MAX),
        ("reserve_price_kobo", MAX),
        ("deposit_pct_bp", 0),
        ("deposit_pct_bp", 10_000),
    ]:
        vehicle = await api.vehicle(manager)
        body = api.auction_body(vehicle, created_by=str(manager), **{field: value})
        reply = await api.service("POST", "/internal/auctions", body)
        assert reply.status == 201, (field, value, reply.text)
        assert reply.body["auction"][field] == value


async def test_vehicle_numbers_are_refused_with_their_code(api: Api) -> None:
    seller = await api.seller()
    fields = {"vin": "1HGBH41JXMN109186", "year": 2019, "make": "Kia", "model": "Rio"}
    fields["listed_by"] = str(seller)

    def create(field: str, raw: str) -> Callable[[], Awaitable[Reply]]:
        body = with_amount(fields, field, raw)
        return lambda: api.service("POST", "/internal/vehicles", data=body)

    for raw in ("-1", "1000000000000000", "18446744073709551616", "-18446744073709551616"):
        await assert_refused(api, create("price_kobo", raw), 422, "invalid_price", raw)
    for raw in ("-1", "2147483648", "18446744073709551616"):
        await assert_refused(api, create("mileage_km", raw), 422, "invalid_mileage", raw)
    for raw in ("0", "1885", "18446744073709551616", "-1"):
        await assert_refused(api, create("year", raw), 422, "invalid_year", raw)
    for field in ("price_kobo", "mileage_km", "year"):
        for raw in ("1.5", '"5"', "true", "[1]"):
            await assert_refused(api, create(field, raw), 422, "invalid", (field, raw))
    # 1e3 is the integer 1000: a price and a mileage, but no car's year.
    await assert_refused(api, create("year", "1e3"), 422, "invalid_year", "1e3")
    for field in ("price_kobo", "mileage_km"):
        body = with_amount({**fields, "vin": random_vin()}, field, "1e3")
        reply = await api.service("POST", "/internal/vehicles", data=body)
        assert (reply.status, reply.body["vehicle"][field]) == (201, 1000), (field, reply.text)
    taken = await create("price_kobo", "0")()
    assert (taken.status, taken.body["vehicle"]["price_kobo"]) == (201, 0)


async def test_an_extension_to_an_impossible_time_is_refused(api: Api) -> None:
    manager = await api.user(role="manager")
    auction = await api.live_auction()
    token = token_for(manager, "manager")

    def extend(raw: str) -> Callable[[], Awaitable[Reply]]:
        body = with_amount({"reason": "edge"}, "end_time_ms", raw)
        path = f"/internal/admin/auctions/{auction}/extend"
        return lambda: api.call("POST", path, token=token, data=body)

    for raw in ("0", "-1", "253402300800000", "9223372036854775808", "18446744073709551616"):
        await assert_refused(api, extend(raw), 422, "invalid_end_time", raw)
    for raw in ("1.5", '"tomorrow"', "true", "[1]"):
        await assert_refused(api, extend(raw), 422, "invalid", raw)
    await assert_refused(api, extend("null"), 422, "invalid_end_time", "null")
