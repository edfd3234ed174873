"""`/openapi.json` stays true: every HTTP route of the app is in it and nothing else,
and real answers — every documented success, and errors of every status — have a
documented status and decode into the struct their schema was generated from."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sys
import uuid
from collections.abc import Callable
from typing import Any

import hypothesis
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import admin, references, text, users, vehicles
from engine.errors import Refused
from server.app import create_app
from tests.http_helpers import PRICE, STEP, Api, Reply, settings, start, token_for
from tests.tcp_proxy import TcpProxy
from web.errors import ErrorEnvelope
from web.openapi import JSON, OPERATIONS, Operation, build_document, find_operation

#: Routes that are not the HTTP API: the room socket, the room page, the seller's
#: page and their files, the node-to-node socket (web/peers.py).
NOT_API = ("/ws/", "/rooms/", "/seller", "/static/", "/internal/peer")


def app_routes() -> set[tuple[str, str]]:
    app = create_app(settings("postgresql://unused"), run_jobs=False)
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path.startswith(NOT_API):
            continue  # HEAD: aiohttp's own twin of every GET
        routes.add((route.method, path))
    return routes


def test_the_document_is_openapi_3_1_with_both_bearer_schemes() -> None:
    document = build_document()
    assert document["openapi"].startswith("3.1.")
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerJWT"] == {**schemes["bearerJWT"], "type": "http", "scheme": "bearer"}
    assert schemes["serviceToken"]["scheme"] == "bearer"
    json.dumps(document)  # JSON all the way down


def test_every_route_of_the_app_is_documented_and_nothing_more() -> None:
    documented = {
        (method.upper(), path)
        for path, item in build_document()["paths"].items()
        for method in item
    }
    assert documented == app_routes()
    assert len(documented) == len(OPERATIONS)


def test_internal_routes_take_the_service_token_and_staff_actions_a_jwt() -> None:
    jwt, service = {"bearerJWT": []}, {"serviceToken": []}
    for path, item in build_document()["paths"].items():
        for method, operation in item.items():
            if path.startswith("/internal/admin/auctions/"):  # the audit log names the person
                assert operation["security"] == [jwt], (method, path)
            elif path.startswith("/internal/admin/commission-rates"):
                # Set by an admin (audited: a JWT); read by staff or by the platform.
                expected = [jwt] if method == "put" else [jwt, service]
                assert operation["security"] == expected, (method, path)
            elif path.startswith("/internal/"):
                assert operation["security"] == [service], (method, path)


def test_every_id_in_a_path_is_a_declared_uuid_and_every_ref_resolves() -> None:
    document = build_document()
    schemas = document["components"]["schemas"]
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for path, item in document["paths"].items():
        for operation in item.values():
            ids = [p for p in operation.get("parameters", ()) if p["in"] == "path"]
            if "{id}" in path:
                assert ids == [{**ids[0], "name": "id", "required": True}]
                assert ids[0]["schema"] == {"type": "string", "format": "uuid"}
            elif "{service_type}" in path:  # the service types the engine reads a rate for
                assert ids == [{**ids[0], "name": "service_type", "required": True}]
                assert ids[0]["schema"] == {"type": "string", "enum": ["auction_sale"]}
            else:
                assert ids == []


def test_bounds_the_struct_cannot_say_are_documented() -> None:
    schemas = build_document()["components"]["schemas"]
    bid = schemas["BidRequest"]["properties"]
    assert (bid["amount_kobo"]["minimum"], bid["amount_kobo"]["maximum"]) == (1, 10**15 - 1)
    assert bid["client_bid_id"]["pattern"].endswith("{1,64}$")
    credit = schemas["WalletChange"]["properties"]["amount_kobo"]
    assert (credit["minimum"], credit["maximum"]) == (1, 10**15 - 1)
    reserve = schemas["InternalAuctionCreate"]["properties"]["reserve_price_kobo"]["anyOf"]
    assert {"type": "integer", "minimum": 1, "maximum": 10**15 - 1} in reserve
    assert schemas["UserUpsert"]["properties"]["role"]["enum"][0] == "user"


# ---- the document's text rules are the checks' own ----------------------------------------


def test_the_whitespace_class_is_what_strip_trims() -> None:
    whitespace = re.compile(f"[{text.WHITESPACE}]")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert bool(whitespace.fullmatch(char)) == char.isspace(), hex(code)


def documented(schema: dict[str, Any], value: str) -> bool:
    """Whether `value` is valid for a string schema of `pattern` and `maxLength`
    (JSON Schema counts characters, as Python does)."""
    if len(value) > schema.get("maxLength", len(value)):
        return False
    return re.fullmatch(schema["pattern"], value) is not None


def taken(check: Callable[[str], object], value: str) -> bool:
    try:
        return check(value) not in (None, "")
    except Refused:
        return False


@functools.cache
def schemas() -> dict[str, Any]:
    found: dict[str, Any] = build_document()["components"]["schemas"]
    return found


def property_schema(component: str, name: str) -> dict[str, Any]:
    prop: dict[str, Any] = schemas()[component]["properties"][name]
    return next((branch for branch in prop.get("anyOf", ()) if "pattern" in branch), prop)


#: Characters around the rules' edges: whitespace that is trimmed (some of it control
#: characters), other control characters, the email's `@`, the VIN's alphabet and the
#: letters it leaves out, and everything else now and then.
EDGES = st.one_of(
    st.sampled_from(
        [" ", "\t", "\n", "\r", "\x0b", "\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000"]
    ),
    st.sampled_from(["\x00", "\x08", "\x1b", "\x7f", "\ufeff", "\u200b", "@", "😀"]),
    st.sampled_from("ABHJNPRZ09ahjnprz" + "IOQioqıſ"),
    st.characters(),
)


def texts(limit: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(EDGES, max_size=limit + 2),
        st.builds(
            lambda pad, body, tail: pad + body + tail,
            st.text(EDGES, max_size=3),
            st.text(EDGES, min_size=max(limit - 3, 0), max_size=limit),
            st.text(EDGES, max_size=3),
        ),
    )


def trimmed_text(limit: int, required: bool) -> Callable[[str], object]:
    def check(value: str) -> object:
        kept = text.check_text("field", value, limit)
        return kept if required else "taken"

    return check


TEXT_RULES: list[tuple[str, str, int, Callable[[str], object]]] = [
    ("UserUpsert", "email", 255, users.checked_email),
    ("UserUpsert", "display_name", 100, trimmed_text(100, required=False)),
    ("WalletChange", "reference", 100, trimmed_text(references.MAX_REFERENCE, required=True)),
    ("PaymentRequest", "reference", 100, trimmed_text(references.MAX_REFERENCE, required=True)),
    ("VehicleCreate", "vin", 20, vehicles.normalize_vin),
    *[
        ("VehicleCreate", name, limit, trimmed_text(limit, required=name in ("make", "model")))
        for name, limit in vehicles.TEXT_LIMITS.items()
    ],
    ("ActionRequest", "reason", 1000, admin.checked_reason),
    ("ExtendRequest", "reason", 1000, admin.checked_reason),
]


@pytest.mark.parametrize(
    ("component", "name", "limit", "check"),
    TEXT_RULES,
    ids=[f"{component}.{name}" for component, name, _, _ in TEXT_RULES],
)
@hypothesis.settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_text_field_s_schema_takes_exactly_what_its_check_takes(
    component: str, name: str, limit: int, check: Callable[[str], object], data: st.DataObject
) -> None:
    schema = property_schema(component, name)
    value = data.draw(texts(limit))
    assert documented(schema, value) == taken(check, value), repr(value)


@pytest.mark.parametrize(
    ("component", "name", "value"),
    [
        ("UserUpsert", "email", " a@b.ng\t"),
        ("UserUpsert", "email", "😀" * 250 + "@x.ng"),
        ("VehicleCreate", "vin", "\u3000 1hgbh41jxmn109186\n"),
        ("VehicleCreate", "make", "\tToyota "),
        ("WalletChange", "reference", "x" * 100),
        ("ActionRequest", "reason", " line one\nline two\ttabbed "),
    ],
)
def test_text_the_checks_take_is_documented(component: str, name: str, value: str) -> None:
    assert documented(property_schema(component, name), value)


@pytest.mark.parametrize(
    ("component", "name", "value"),
    [
        ("UserUpsert", "email", "a b@c.ng"),
        ("UserUpsert", "email", "a@b@c"),
        ("UserUpsert", "email", "😀" * 251 + "@x.ng"),
        ("VehicleCreate", "vin", "1HGBH41JXMN1O9186"),
        ("VehicleCreate", "vin", "ſ" * 17),
        ("VehicleCreate", "make", " \t "),
        ("VehicleCreate", "color", "x" * 31),
        ("WalletChange", "reference", "bad\x00ref"),
        ("WalletChange", "reference", "r" + " " * 100),
        ("ActionRequest", "reason", "carriage\rreturn"),
    ],
)
def test_text_the_checks_refuse_is_not_documented(component: str, name: str, value: str) -> None:
    assert not documented(property_schema(component, name), value)


def test_a_vehicle_s_year_runs_to_next_year_s_models() -> None:
    year = build_document(latest_year=2031)["components"]["schemas"]["VehicleCreate"]
    assert (year["properties"]["year"]["minimum"], year["properties"]["year"]["maximum"]) == (
        vehicles.FIRST_CAR_YEAR,
        2031,
    )


def test_a_staff_action_requires_its_reason_and_only_extend_an_end_time() -> None:
    document = build_document()
    schemas = document["components"]["schemas"]
    assert schemas["ActionRequest"]["required"] == ["reason"]
    assert schemas["ActionRequest"]["properties"]["end_time_ms"]["type"] == "null"
    assert schemas["ExtendRequest"]["required"] == ["end_time_ms", "reason"]
    for path, item in document["paths"].items():
        if path.startswith("/internal/admin/auctions/"):
            body = item["post"]["requestBody"]
            expected = "ExtendRequest" if path.endswith("/extend") else "ActionRequest"
            assert body["required"] is True
            assert body["content"][JSON]["schema"]["$ref"].endswith(f"/{expected}")


# ---- real answers ---------------------------------------------------------------------


class Documented:
    """Calls the app and holds every answer to its documented status and struct."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.seen: set[tuple[str, str, int]] = set()

    async def call(
        self,
        method: str,
        template: str,
        id_: uuid.UUID | None = None,
        *,
        token: str | None = None,
        body: Any = None,
        data: str | None = None,
        query: str = "",
    ) -> Reply:
        path = template.replace("{id}", str(id_)).replace("{service_type}", str(id_)) + query
        reply = await self.api.call(method, path, token=token, json_body=body, data=data)
        operation = find_operation(method, template)
        assert operation is not None, (method, template)
        check_against_document(operation, reply)
        self.seen.add((method, template, reply.status))
        return reply

    async def service(self, method: str, template: str, id_: Any = None, **kw: Any) -> Reply:
        from tests.http_helpers import SERVICE_TOKEN

        return await self.call(method, template, id_, token=SERVICE_TOKEN, **kw)


def check_against_document(operation: Operation, reply: Reply) -> None:
    where = (operation.method, operation.path, reply.status, reply.text[:300])
    assert reply.status in operation.responses, where
    kind = operation.responses[reply.status]
    content_type = reply.headers["Content-Type"]
    if reply.status < 300 and operation.content != JSON:
        assert content_type.startswith(operation.content), where
        return
    assert content_type.startswith(JSON), where
    if kind is None:
        envelope = msgspec.json.decode(reply.text, type=ErrorEnvelope, strict=True)
        assert envelope.error.message.strip(), where
        if operation.conflict is not None and envelope.error.code == "duplicate_vin":
            msgspec.json.decode(reply.text, type=operation.conflict, strict=True)
        if reply.status == 429:
            assert int(reply.headers["Retry-After"]) >= 1
        return
    msgspec.json.decode(reply.text, type=kind, strict=True)


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url, rate_limit_ip_per_min=10_000)


async def test_served_document_is_the_built_one(api: Api) -> None:
    reply = await Documented(api).call("GET", "/openapi.json")
    assert reply.status == 200
    assert reply.body == json.loads(json.dumps(build_document()))


async def test_every_documented_success_matches_its_struct(api: Api) -> None:
    doc = Documented(api)
    manager = await api.user(role="manager")
    staff = token_for(manager, "manager")
    bidder = await api.bidder()
    seller = await api.seller()

    for path in ("/openapi.json", "/healthz", "/readyz", "/metrics"):
        assert (await doc.call("GET", path)).status == 200

    user = uuid.uuid4()
    upsert = {"email": f"{user.hex[:10]}@example.test", "role": "user", "kyc_status": "approved"}
    assert (await doc.service("PUT", "/internal/users/{id}", user, body=upsert)).status == 201
    assert (await doc.service("PUT", "/internal/users/{id}", user, body=upsert)).status == 200
    for kind in ("credits", "debits"):
        change = {"amount_kobo": 1_000, "reference": f"ref-{kind}"}
        template = f"/internal/users/{{id}}/wallet/{kind}"
        assert (await doc.service("POST", template, user, body=change)).status == 201
        assert (await doc.service("POST", template, user, body=change)).status == 200
    assert (await doc.service("GET", "/internal/users/{id}/wallet", user)).status == 200

    vehicle_body = {"vin": "1HGBH41JXMN109186", "year": 2020, "make": "Kia", "model": "Rio"}
    vehicle = await doc.service(
        "POST", "/internal/vehicles", body={**vehicle_body, "listed_by": str(seller)}
    )
    assert vehicle.status == 201
    vehicle_id = uuid.UUID(vehicle.body["vehicle"]["id"])
    created = api.auction_body(vehicle_id, created_by=str(seller), status="draft")
    draft = await doc.service("POST", "/internal/auctions", body=created)
    assert draft.status == 201
    own = api.auction_body(await api.vehicle(manager))
    assert (await doc.call("POST", "/api/auctions", token=staff, body=own)).status == 201

    live = await api.live_auction(seller)
    bid = {"auction_id": str(live), "amount_kobo": PRICE, "client_bid_id": "first"}
    assert (await doc.call("POST", "/api/bids", token=token_for(bidder), body=bid)).status == 201
    rival = token_for(await api.bidder())
    proxy = {"max_kobo": PRICE + 10 * STEP, "client_bid_id": "rival-max"}
    other = await api.live_auction(seller)
    assert (
        await doc.call("POST", "/api/auctions/{id}/max", other, token=rival, body=proxy)
    ).status == 201
    assert (await doc.call("GET", "/api/me/bids", token=rival, query="?limit=5")).status == 200
    assert (await doc.call("GET", "/api/me/wallet", token=rival)).status == 200
    assert (await doc.call("GET", "/api/auctions", query="?status=live")).status == 200
    assert (await doc.call("GET", "/api/auctions/{id}", live)).status == 200
    assert (await doc.service("GET", "/internal/auctions/{id}/bids", live)).status == 200
    assert (await doc.service("GET", "/internal/cluster")).status == 200
    assert (await doc.call("GET", "/api/vehicles/{id}/similar", vehicle_id)).status == 200

    async def act(action: str, auction: uuid.UUID, **extra: Any) -> int:
        body = {"reason": "Checked with the seller", **extra}
        template = f"/internal/admin/auctions/{{id}}/{action}"
        return (await doc.call("POST", template, auction, token=staff, body=body)).status

    assert await act("approve", uuid.UUID(draft.body["auction"]["id"])) == 200
    other_draft = await api.create_auction(seller, status="draft")
    assert await act("reject", uuid.UUID(other_draft.body["auction"]["id"])) == 200
    spare = await api.live_auction(seller)
    end = await api.pool.fetchval("SELECT end_time FROM auctions WHERE id = $1", spare)
    assert await act("extend", spare, end_time_ms=int(end.timestamp() * 1000) + 60_000) == 200
    assert await act("cancel", spare) == 200
    assert await act("force-end", live) == 200
    below = await api.live_auction(
        seller, auction_type="reserve", reserve_price_kobo=PRICE + 10 * STEP
    )
    low = {"auction_id": str(below), "amount_kobo": PRICE, "client_bid_id": "below"}
    assert (await doc.call("POST", "/api/bids", token=token_for(bidder), body=low)).status == 201
    assert await act("force-end", below) == 200  # below the reserve: the seller decides
    dealer = token_for(seller, "dealer")
    offer = "/api/auctions/{id}/offer"
    assert (await doc.call("GET", offer, below, token=dealer)).status == 200
    counter = {"action": "counter", "amount_kobo": PRICE + 5 * STEP}
    assert (await doc.call("POST", offer, below, token=dealer, body=counter)).status == 200
    empty = await api.live_auction(seller)
    assert await act("force-end", empty) == 200  # no bid: unsold
    again = api.auction_body(uuid.uuid4())
    times = {"start_time_ms": again["start_time_ms"], "end_time_ms": again["end_time_ms"]}
    relisted = await doc.call("POST", "/api/auctions/{id}/relist", empty, token=dealer, body=times)
    assert relisted.status == 201
    assert (await doc.call("GET", "/api/me/auctions", token=dealer, query="?limit=5")).status == 200
    report = "?from_ms=0&to_ms=86400000"
    assert (await doc.service("GET", "/internal/admin/revenue", query=report)).status == 200
    admin_token = token_for(await api.user(role="admin"), "admin")
    rates = {"base_rate": "0.0350", "reason": "The board's new price list"}
    template = "/internal/admin/commission-rates/{service_type}"
    assert (
        await doc.call("PUT", template, "auction_sale", token=admin_token, body=rates)
    ).status == 200
    assert (await doc.call("GET", "/internal/admin/commission-rates", token=staff)).status == 200
    assert (await doc.service("GET", "/internal/admin/commission-rates")).status == 200
    assert (await doc.call("GET", "/api/auctions/{id}/log", live)).status == 200
    bidder_token = token_for(bidder)
    assert (
        await doc.call("GET", "/api/auctions/{id}/log/me", live, token=bidder_token)
    ).status == 200
    assert (await doc.call("GET", "/api/log-keys")).status == 200

    payment = {"payer_id": str(bidder), "amount_kobo": 1_000, "reference": "pay-1"}
    template = "/internal/auctions/{id}/payments"
    assert (await doc.service("POST", template, live, body=payment)).status == 201
    assert (await doc.service("POST", template, live, body=payment)).status == 200
    assert (await doc.service("GET", "/internal/auctions/{id}/settlement", live)).status == 200
    assert await act("void", live) == 200

    successes = {
        (operation.method, operation.path, status)
        for operation in OPERATIONS
        for status, kind in operation.responses.items()
        if status < 300
    }
    assert successes <= doc.seen, successes - doc.seen


async def test_errors_have_documented_statuses_and_the_envelope(api: Api) -> None:
    doc = Documented(api)
    bidder = await api.bidder()
    seller = await api.seller()
    live = await api.live_auction(seller)
    nobody = uuid.uuid4()
    vin = "JH4KA8260MC000123"
    await api.vehicle(seller, vin=vin)
    statuses = [
        (await doc.service("POST", "/internal/vehicles", data="vin=ABC")).status,
        (await doc.call("POST", "/api/bids", body={})).status,
        (await doc.call("GET", "/internal/users/{id}/wallet", bidder)).status,
        (await doc.call("POST", "/api/auctions", token=token_for(bidder), body={})).status,
        (
            await doc.call(
                "POST",
                "/internal/admin/auctions/{id}/cancel",
                live,
                token=token_for(bidder, "admin"),  # the row says user
                body={"reason": "no"},
            )
        ).status,
        (await doc.call("GET", "/api/auctions/{id}", nobody)).status,
        (await doc.service("GET", "/internal/users/{id}/wallet", nobody)).status,
        (await doc.service("GET", "/internal/auctions/{id}/settlement", live)).status,
        (await doc.call("GET", "/api/vehicles/{id}/similar", nobody)).status,
        (
            await doc.service(
                "POST",
                "/internal/vehicles",
                body={
                    "vin": vin,
                    "year": 2019,
                    "make": "A",
                    "model": "B",
                    "listed_by": str(seller),
                },
            )
        ).status,
        (
            await doc.call(
                "POST",
                "/api/bids",
                token=token_for(bidder),
                body={"auction_id": str(live), "amount_kobo": 1, "client_bid_id": "low"},
            )
        ).status,
        (
            await doc.service(
                "POST",
                "/internal/users/{id}/wallet/debits",
                bidder,
                body={"amount_kobo": 10**14, "reference": "too-much"},
            )
        ).status,
        (
            await doc.service(
                "PUT",
                "/internal/users/{id}",
                nobody,
                data=json.dumps({"email": "a@b.ng", "pad": "x" * 70_000}),
            )
        ).status,
        (await doc.call("GET", "/api/auctions", query="?status=draft")).status,
        (await doc.call("GET", "/api/auctions", query="?limit=0")).status,
        (await doc.call("GET", "/api/me/bids", token=token_for(bidder), query="?limit=0")).status,
        (await doc.call("GET", "/api/me/wallet")).status,
        (
            await doc.call(
                "POST",
                "/api/auctions/{id}/max",
                live,
                token=token_for(bidder),
                body={"max_kobo": 1.5, "client_bid_id": "fraction"},
            )
        ).status,
        (
            await doc.call(
                "POST",
                "/api/auctions/{id}/max",
                nobody,
                token=token_for(bidder),
                body={"max_kobo": PRICE, "client_bid_id": "nowhere"},
            )
        ).status,
        (await doc.call("GET", "/api/vehicles/{id}/similar", nobody, query="?limit=x")).status,
    ]
    assert set(statuses) == {400, 401, 403, 404, 409, 413, 422}, statuses


async def test_a_rate_limited_answer_is_documented(database_url: str, aiohttp_client: Any) -> None:
    doc = Documented(await start(aiohttp_client, database_url, rate_limit_ip_per_min=2))
    replies = [await doc.call("GET", "/api/auctions") for _ in range(3)]
    assert [reply.status for reply in replies] == [200, 200, 429]
    assert (await doc.call("GET", "/healthz")).status == 200  # probes are never limited


async def test_answers_while_the_ledger_is_unreachable_are_documented(
    database_url: str, aiohttp_client: Any
) -> None:
    proxy, proxied = await TcpProxy.in_front_of(database_url)
    try:
        api = await start(aiohttp_client, proxied)
        bidder = await api.bidder()
        live = await api.live_auction()
        doc = Documented(api)
        proxy.cut()
        bid = {"auction_id": str(live), "amount_kobo": PRICE + STEP, "client_bid_id": "outage"}
        assert (
            await doc.call("POST", "/api/bids", token=token_for(bidder), body=bid)
        ).status == 503
        assert (await doc.call("GET", "/api/auctions/{id}", live)).status == 503
        proxy_bid = {"max_kobo": PRICE + 9 * STEP, "client_bid_id": "outage-max"}
        assert (
            await doc.call(
                "POST", "/api/auctions/{id}/max", live, token=token_for(bidder), body=proxy_bid
            )
        ).status == 503
        for path in ("/api/me/bids", "/api/me/wallet"):
            assert (await doc.call("GET", path, token=token_for(bidder))).status == 503
        assert (await doc.service("GET", "/internal/users/{id}/wallet", bidder)).status == 503
        proxy.restore()
    finally:
        await proxy.close()


async def test_readyz_answers_503_while_the_ledger_is_unreachable(
    database_url: str, aiohttp_client: Any
) -> None:
    """API.md: 200 once the ledger takes writes, else 503 — even when nobody has
    tried to write yet."""
    proxy, proxied = await TcpProxy.in_front_of(database_url)
    try:
        api = await start(aiohttp_client, proxied)
        assert (await api.call("GET", "/readyz")).status == 200
        proxy.cut()
        deadline = asyncio.get_running_loop().time() + 5
        while (reply := await api.call("GET", "/readyz")).status == 200:
            now = asyncio.get_running_loop().time()
            assert now < deadline, "/readyz still says ready 5 s after the ledger went away"
            await asyncio.sleep(0.25)
        operation = find_operation("GET", "/readyz")
        assert operation is not None
        check_against_document(operation, reply)
        assert reply.status == 503
        proxy.restore()
    finally:
        await proxy.close()
