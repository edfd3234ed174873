"""The admin's commission rates over the internal API, on the real database: who may
read and set them, what a rate and a rule must be (refused, nothing stored), the
audit row, and when a rate applies — to auctions that end after the change, never
to one that ended before it, whenever that one is end-processed or settled."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import hypothesis
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bidcore
from engine.clock import to_ms
from engine.commission import SERVICE_TYPE, Rule, choose_rate, rates_at, read_rules
from engine.commission_rates import (
    RULE_ROLES,
    CommissionRule,
    RateChange,
    check_rules_apply,
    checked_change,
)
from engine.errors import Refused
from engine.money import naira_to_kobo
from engine.roles import PLATFORM_USER_ID
from engine.users import ROLES
from tests.http_helpers import PRICE, SERVICE_TOKEN, STEP, Reply, token_for
from tests.test_openapi import check_against_document
from tests.test_settlement import FUNDS, World, deposit, make_world
from web.openapi import find_operation

RATES = "/internal/admin/commission-rates"
DAY = 86_400_000
REASON = "Board decision: new price list"


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any) -> World:
    return await make_world(database_url, aiohttp_client)


@pytest.fixture
async def admin(world: World) -> uuid.UUID:
    return await world.api.user(role="admin")


async def documented(reply: Reply, method: str, template: str) -> Reply:
    """The reply, held to the status and body /openapi.json documents for it."""
    operation = find_operation(method, template)
    assert operation is not None
    check_against_document(operation, reply)
    return reply


async def put(
    world: World,
    body: Any,
    *,
    token: str | None = None,
    service_type: str = SERVICE_TYPE,
    data: str | None = None,
) -> Reply:
    reply = await world.api.call(
        "PUT", f"{RATES}/{service_type}", token=token, json_body=body, data=data
    )
    return await documented(reply, "PUT", f"{RATES}/{{service_type}}")


async def set_by(world: World, admin: uuid.UUID, **fields: Any) -> Reply:
    """An admin's PUT of `fields` with a reason; it must succeed."""
    reply = await put(world, {"reason": REASON, **fields}, token=token_for(admin, "admin"))
    assert reply.status == 200, reply.text
    return reply


async def listed(world: World, token: str | None) -> Reply:
    return await documented(await world.api.call("GET", RATES, token=token), "GET", RATES)


async def stored(world: World) -> list[dict[str, Any]]:
    rows = await world.pool.fetch("SELECT * FROM commission_rates ORDER BY service_type")
    return [dict(row) for row in rows]


async def audit_rows(world: World) -> list[dict[str, Any]]:
    rows = await world.pool.fetch(
        "SELECT * FROM admin_audit_log WHERE target_type = 'commission_rate' ORDER BY created_at"
    )
    return [dict(row) for row in rows]


async def assert_nothing_changed(world: World, rows: list[dict[str, Any]], audits: int) -> None:
    assert await stored(world) == rows
    assert len(await audit_rows(world)) == audits


async def earned(world: World, auction: uuid.UUID) -> int:
    amount = await world.pool.fetchval(
        "SELECT amount FROM transactions WHERE type = 'commission_earned' AND reference_id = $1",
        auction,
    )
    return naira_to_kobo(amount)


# ---- setting and reading ---------------------------------------------------------------


async def test_an_admin_sets_a_rate_and_staff_and_the_platform_read_it(
    world: World, admin: uuid.UUID
) -> None:
    rules = [{"rate": "0.03", "seller_role": "dealer", "body_type": " SUV ", "until_ms": None}]
    before = world.clock.now_ms()

    reply = await set_by(
        world, admin, base_rate="0.035", min_rate="0.01", max_rate="0.1", rules=rules
    )

    row = {
        "service_type": "auction_sale",
        "base_rate": "0.0350",
        "min_rate": "0.0100",
        "max_rate": "0.1000",
        # Stored as the engine reads it: four decimals, trimmed, no null field.
        "rules": [{"rate": "0.0300", "seller_role": "dealer", "body_type": "SUV"}],
        "updated_by": str(admin),
        "updated_at_ms": before,
    }
    assert reply.body == {"commission_rate": row}
    manager = await world.api.user(role="manager")
    for token in (token_for(manager, "manager"), token_for(admin, "admin"), SERVICE_TOKEN):
        shown = await listed(world, token)
        assert (shown.status, shown.body) == (200, {"commission_rates": [row]})
    (kept,) = await stored(world)
    assert read_rules(kept["rules"]) == [Rule(Decimal("0.0300"), "dealer", "SUV")]


async def test_every_row_is_listed_and_none_is_an_empty_list(
    world: World, admin: uuid.UUID
) -> None:
    assert (await listed(world, SERVICE_TOKEN)).body == {"commission_rates": []}
    await world.pool.execute(
        "INSERT INTO commission_rates (service_type, base_rate, rules)"
        " VALUES ('featured_listing', 0.2, '[{\"rate\": 5}]')"
    )  # a row the engine does not read, written in SQL: shown as stored
    await set_by(world, admin, base_rate="0.05")

    body = (await listed(world, SERVICE_TOKEN)).body["commission_rates"]

    assert [(r["service_type"], r["base_rate"], r["rules"]) for r in body] == [
        ("auction_sale", "0.0500", []),
        ("featured_listing", "0.2000", [{"rate": 5}]),
    ]
    assert body[1]["updated_by"] is None


async def test_a_field_left_out_is_cleared(world: World, admin: uuid.UUID) -> None:
    await set_by(
        world, admin, base_rate="0.05", min_rate="0.02", max_rate="0.08", rules=[{"rate": "0.04"}]
    )

    reply = await set_by(world, admin, base_rate="0.06")

    row = reply.body["commission_rate"]
    assert (row["base_rate"], row["min_rate"], row["max_rate"], row["rules"]) == (
        "0.0600",
        None,
        None,
        [],
    )


async def test_each_change_is_audited_with_the_old_and_new_row(
    world: World, admin: uuid.UUID
) -> None:
    first = (await set_by(world, admin, base_rate="0.02")).body["commission_rate"]
    other = await world.api.user(role="admin")
    second = (
        await set_by(
            world, other, base_rate="0.03", rules=[{"rate": "0.01", "seller_role": "admin"}]
        )
    ).body["commission_rate"]

    created, changed = await audit_rows(world)

    row_id = (await stored(world))[0]["id"]
    assert (created["admin_id"], created["action"], created["target_id"]) == (
        admin,
        "set_commission_rate",
        row_id,
    )
    assert created["old_value"] is None
    assert json.loads(created["new_value"]) == first
    assert (changed["admin_id"], changed["reason"], str(changed["ip_address"])) == (
        other,
        REASON,
        "127.0.0.1",
    )
    assert json.loads(changed["old_value"]) == first
    assert json.loads(changed["new_value"]) == second
    assert second["updated_at_ms"] > first["updated_at_ms"]  # every change a later moment


# ---- who may ---------------------------------------------------------------------------


async def test_only_an_admin_s_own_token_sets_a_rate(world: World, admin: uuid.UUID) -> None:
    await set_by(world, admin, base_rate="0.02")
    rows, audits = await stored(world), len(await audit_rows(world))
    body = {"base_rate": "0.09", "reason": REASON}
    manager = await world.api.user(role="manager")
    dealer = await world.api.user(role="dealer")

    refusals = [
        await put(world, body),
        await put(world, body, token=SERVICE_TOKEN),
        await put(world, body, token=token_for(manager, "manager")),
        await put(world, body, token=token_for(dealer, "admin")),  # the row says dealer
    ]

    assert [(r.status, r.code) for r in refusals] == [
        (401, "unauthenticated"),
        (401, "unauthenticated"),
        (403, "forbidden"),
        (403, "forbidden"),
    ]
    assert "service token" in refusals[1].body["error"]["message"]
    await assert_nothing_changed(world, rows, audits)


async def test_reading_takes_staff_or_the_platform(world: World) -> None:
    bidder = await world.api.bidder()
    dealer = await world.api.user(role="dealer")

    assert (await listed(world, None)).status == 401
    assert (await listed(world, "not-a-token")).status == 401
    assert (await listed(world, token_for(bidder))).status == 403
    assert (await listed(world, token_for(dealer, "dealer"))).status == 403


async def test_an_unknown_service_type_is_404_and_nothing_stored(
    world: World, admin: uuid.UUID
) -> None:
    body = {"base_rate": "0.02", "reason": REASON}

    reply = await put(world, body, token=token_for(admin, "admin"), service_type="featured_listing")

    assert (reply.status, reply.code) == (404, "unknown_service_type")
    await assert_nothing_changed(world, [], 0)


async def test_a_reason_is_required(world: World, admin: uuid.UUID) -> None:
    token = token_for(admin, "admin")

    missing = await put(world, {"base_rate": "0.02"}, token=token)
    blank = await put(world, {"base_rate": "0.02", "reason": " \n "}, token=token)
    empty = await put(world, None, token=token, data="")

    assert [(r.status, r.code) for r in (missing, blank)] == [
        (422, "reason_required"),
        (422, "reason_required"),
    ]
    assert (empty.status, empty.code) == (422, "invalid")  # no base_rate, said first
    await assert_nothing_changed(world, [], 0)


# ---- what a rate is ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("base_rate", 0.035), ("base_rate", 0), ("min_rate", 0.01), ("max_rate", 1)],
)
async def test_a_rate_given_as_a_json_number_is_refused(
    world: World, admin: uuid.UUID, field: str, value: float
) -> None:
    body = {"base_rate": "0.0350", "reason": REASON, field: value}

    reply = await put(world, body, token=token_for(admin, "admin"))

    assert (reply.status, reply.code) == (422, "invalid_rate"), reply.text
    message = reply.body["error"]["message"]
    assert f"`{field}`" in message and "not a JSON number" in message
    await assert_nothing_changed(world, [], 0)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("0", "0.0000"),
        ("0.0001", "0.0001"),
        ("0.035", "0.0350"),
        ("0.9999", "0.9999"),
        ("1", "1.0000"),
        ("1.0000", "1.0000"),
    ],
)
async def test_a_rate_has_at_most_four_decimals_from_0_to_1(
    world: World, admin: uuid.UUID, sent: str, kept: str
) -> None:
    reply = await set_by(world, admin, base_rate=sent)

    assert reply.body["commission_rate"]["base_rate"] == kept
    assert (await stored(world))[0]["base_rate"] == Decimal(kept)


@pytest.mark.parametrize(
    "sent",
    [
        "0.00001",
        "0.03505",
        "1.0001",
        "1.00000",
        "2",
        "-0.1",
        "0.",
        ".5",
        "00.5",
        "+0.5",
        "0.1e-1",
        " 0.5",
        "0.5 ",
        "0,5",
        "١",
        "NaN",
        "",
    ],
)
async def test_a_rate_past_four_decimals_or_outside_0_to_1_is_refused(
    world: World, admin: uuid.UUID, sent: str
) -> None:
    reply = await put(world, {"base_rate": sent, "reason": REASON}, token=token_for(admin, "admin"))

    assert (reply.status, reply.code) == (422, "invalid_rate"), reply.text
    await assert_nothing_changed(world, [], 0)


@pytest.mark.parametrize(
    ("bounds", "said"),
    [
        ({"min_rate": "0.06", "max_rate": "0.04"}, "`min_rate` (0.0600) is above `max_rate`"),
        ({"min_rate": "0.06"}, "`base_rate` (0.0500) is below `min_rate`"),
        ({"max_rate": "0.0499"}, "`base_rate` (0.0500) is above `max_rate`"),
    ],
)
async def test_rates_out_of_order_are_refused(
    world: World, admin: uuid.UUID, bounds: dict[str, str], said: str
) -> None:
    await set_by(world, admin, base_rate="0.02")
    rows = await stored(world)

    reply = await put(
        world, {"base_rate": "0.05", "reason": REASON, **bounds}, token=token_for(admin, "admin")
    )

    assert (reply.status, reply.code) == (422, "invalid_rate_bounds")
    assert said in reply.body["error"]["message"]
    await assert_nothing_changed(world, rows, 1)


async def test_equal_bounds_are_a_fixed_rate(world: World, admin: uuid.UUID) -> None:
    reply = await set_by(world, admin, base_rate="0.05", min_rate="0.05", max_rate="0.05")

    assert reply.body["commission_rate"]["min_rate"] == "0.0500"


# ---- what a rule is -------------------------------------------------------------------------


FAR = bidcore.MAX_TIME_MS  # a rule's bound no test's clock reaches


@pytest.mark.parametrize(
    ("rules", "code", "said"),
    [
        ([{"rate": "0.03", "colour": "red"}], "invalid", ["`rules[0]`", "colour"]),
        ([{"rate": 0.03}], "invalid_rule", ["Rule 1 (`rules[0]`)", "not a JSON number"]),
        ([{"rate": "0.030001"}], "invalid_rule", ["Rule 1", "`rate`", "four decimals"]),
        ([{"rate": "0.01"}], "invalid_rule", ["Rule 1", "below `min_rate`"]),
        ([{"rate": "0.2"}], "invalid_rule", ["Rule 1", "above `max_rate`"]),
        (
            [{"rate": "0.03"}, {"rate": "0.04", "seller_role": "bidder"}],
            "invalid_rule",
            ["Rule 2 (`rules[1]`)", "`seller_role`"],
        ),
        ([{"rate": "0.03", "seller_role": 3}], "invalid", ["`rules[0].seller_role`"]),
        ([{"rate": "0.03", "body_type": " \t"}], "invalid_rule", ["Rule 1", "`body_type`"]),
        ([{"rate": "0.03", "body_type": "x" * 31}], "invalid_rule", ["Rule 1", "`body_type`"]),
        ([{"rate": "0.03", "body_type": "SUV\x00"}], "invalid_rule", ["Rule 1", "`body_type`"]),
        ([{"rate": "0.03", "from_ms": "soon"}], "invalid", ["`rules[0].from_ms`"]),
        ([{"rate": "0.03", "from_ms": -1}], "invalid_rule", ["Rule 1", "`from_ms`"]),
        ([{"rate": "0.03", "until_ms": FAR + 1}], "invalid_rule", ["Rule 1", "`until_ms`"]),
        (
            [{"rate": "0.03", "from_ms": FAR - 5, "until_ms": FAR - 5}],
            "invalid_rule",
            ["Rule 1", "`from_ms` must be before `until_ms`"],
        ),
        (
            [{"rate": "0.03", "until_ms": 1_000}],
            "invalid_rule",
            ["Rule 1", "`until_ms` has passed"],
        ),
        (
            [{"rate": "0.03", "seller_role": "dealer"}, {"rate": "0.04", "seller_role": "dealer"}],
            "invalid_rule",
            ["Rule 2 (`rules[1]`)", "never set a rate"],
        ),
        (
            [{"rate": "0.03", "body_type": "suv"}, {"rate": "0.04", "body_type": "SUV"}],
            "invalid_rule",
            ["Rule 2", "never set a rate"],  # body types compare without case
        ),
        (
            [
                {"rate": "0.03", "seller_role": "dealer"},
                {"rate": "0.04", "seller_role": "dealer", "until_ms": FAR},
            ],
            "invalid_rule",
            ["Rule 2", "never set a rate"],
        ),
        (
            [
                {"rate": "0.03", "seller_role": role, "body_type": "suv"}
                for role in ("dealer", "manager", "admin")
            ]
            + [
                {"rate": "0.04", "seller_role": "dealer", "body_type": "SUV"},
            ],
            "invalid_rule",
            ["Rule 4 (`rules[3]`)", "never set a rate"],
        ),
        ([{"rate": "0.03"}] * 51, "too_many_rules", ["at most 50 rules"]),
        ("dealer", "invalid", ["`rules`"]),
    ],
)
async def test_a_rule_the_engine_would_not_use_as_written_is_refused_and_nothing_stored(
    world: World, admin: uuid.UUID, rules: Any, code: str, said: list[str]
) -> None:
    await set_by(world, admin, base_rate="0.05")
    rows = await stored(world)
    body = {"base_rate": "0.05", "min_rate": "0.02", "max_rate": "0.1", "rules": rules}

    reply = await put(world, {**body, "reason": REASON}, token=token_for(admin, "admin"))

    assert (reply.status, reply.code) == (422, code), reply.text
    message = reply.body["error"]["message"]
    assert all(part in message for part in said), message
    await assert_nothing_changed(world, rows, 1)


@pytest.mark.parametrize(
    "rules",
    [
        # More specific first or later: both used.
        [
            {"rate": "0.03", "seller_role": "dealer"},
            {"rate": "0.04", "seller_role": "dealer", "body_type": "suv"},
        ],
        [{"rate": "0.03"}, {"rate": "0.04", "seller_role": "dealer"}],
        # A rule with no condition still rates auctions whose creator's role changed since.
        [{"rate": "0.03", "seller_role": role} for role in ("dealer", "manager", "admin")]
        + [{"rate": "0.04"}],
        # Windows: the later one takes over where the first ends.
        [
            {"rate": "0.03", "seller_role": "dealer", "until_ms": FAR - DAY},
            {"rate": "0.04", "seller_role": "dealer"},
        ],
        # As specific, different conditions: each wins where the other does not match.
        [{"rate": "0.03", "seller_role": "dealer"}, {"rate": "0.04", "body_type": "suv"}],
        [{"rate": "0.03", "from_ms": 0, "until_ms": FAR}],  # a window begun already
    ],
)
async def test_rules_that_each_set_some_rate_are_taken(
    world: World, admin: uuid.UUID, rules: list[dict[str, Any]]
) -> None:
    reply = await set_by(world, admin, base_rate="0.05", rules=rules)

    assert len(reply.body["commission_rate"]["rules"]) == len(rules)


# ---- what the engine reads, as a property --------------------------------------------------


FIRST_MS = 1_000  # the first end the row would apply to
MOMENTS = st.one_of(st.none(), st.integers(0, 3_000))


@st.composite
def rule_lists(draw: st.DrawFn) -> list[CommissionRule]:
    """Rules on few roles, body types and moments, so that they overlap; each with its
    own rate (0.0001, 0.0002…) so that a rate names its rule."""
    count = draw(st.integers(1, 6))
    rules = []
    for index in range(count):
        start, end = draw(MOMENTS), draw(MOMENTS)
        if start is not None and end is not None:  # a window: from before until
            start, end = min(start, end), max(start, end) + (start == end)
        rules.append(
            CommissionRule(
                rate=f"0.{index + 1:04d}",
                seller_role=draw(st.one_of(st.none(), st.sampled_from(RULE_ROLES))),
                body_type=draw(st.one_of(st.none(), st.sampled_from(["suv", "SUV", "sedan"]))),
                from_ms=start,
                until_ms=end,
            )
        )
    return rules


def rates_seen(stored_rules: str) -> set[Decimal]:
    """Every rate the engine's own reading gives over a grid of cases chosen here,
    independently of the check: every role a user may have, the rules' body types in
    other cases, none, and one no rule names; every bound, either side of it."""
    rules = read_rules(stored_rules)
    row = {
        "base_rate": Decimal("0.5000"),
        "min_rate": None,
        "max_rate": None,
        "rules": stored_rules,
    }
    bodies: list[str | None] = [None, "hatchback"]
    for rule in rules:
        if rule.body_type is not None:
            bodies += [rule.body_type, rule.body_type.swapcase()]
    bounds = [m for r in rules for m in (r.from_ms, r.until_ms) if m is not None]
    moments = {FIRST_MS, 10_000, *(m + d for m in bounds for d in (-1, 0, 1) if m + d >= FIRST_MS)}
    return {choose_rate(row, role, body, at) for role in ROLES for body in bodies for at in moments}


@hypothesis.settings(max_examples=400, deadline=None)
@given(rules=rule_lists())
def test_stored_rules_read_back_as_taken_and_each_sets_a_rate_exactly_when_taken(
    rules: list[CommissionRule],
) -> None:
    checked = checked_change(RateChange(base_rate="0.5", rules=rules))
    encoded = msgspec.json.encode(checked.rules).decode()  # as the row's `rules` is written
    seen = rates_seen(encoded)
    try:
        check_rules_apply(checked.rules, FIRST_MS)
    except Refused as refused:
        index = int(refused.message.split("`rules[")[1].split("]")[0])
        assert refused.code == "invalid_rule"
        assert checked.rules[index].rate not in seen, (rules, refused.message)
    else:
        assert read_rules(encoded) == checked.rules
        assert {rule.rate for rule in checked.rules} <= seen, rules


# ---- when a rate applies -------------------------------------------------------------------


async def test_a_sale_ending_after_the_change_earns_its_rate_in_the_revenue_report(
    world: World, admin: uuid.UUID
) -> None:
    await set_by(
        world, admin, base_rate="0.05", rules=[{"rate": "0.0375", "seller_role": "dealer"}]
    )
    assert (await listed(world, SERVICE_TOKEN)).body["commission_rates"][0]["rules"] == [
        {"rate": "0.0375", "seller_role": "dealer"}
    ]
    winner = await world.api.bidder(FUNDS)
    price = PRICE + 3 * STEP + 7  # 115,000,007 kobo
    auction = await world.won([(winner, price)])  # a dealer's auction, ending after the change

    paid = await world.pay(auction, price - bidcore.deposit(price, 2000))

    assert paid.body["settlement"]["status"] == "settled", paid.text
    # 115,000,007 × 0.0375 = 4,312,500.262 5 kobo: the seller keeps the fraction.
    assert await earned(world, auction) == 4_312_500
    now = to_ms(await world.pool.fetchval("SELECT now()"))
    today = now // DAY * DAY
    report = await world.api.service(
        "GET", f"/internal/admin/revenue?from_ms={today}&to_ms={today + DAY}"
    )
    assert (report.body["gmv_kobo"], report.body["commissions_kobo"]) == (price, 4_312_500)


async def test_an_auction_ended_before_the_change_keeps_its_rate_at_settlement(
    world: World, admin: uuid.UUID
) -> None:
    await set_by(world, admin, base_rate="0.02")
    winner = await world.api.bidder(FUNDS)
    ended = await world.won([(winner, PRICE)])
    await set_by(world, admin, base_rate="0.09")
    later = await world.won([(await world.api.bidder(FUNDS), PRICE)])

    for auction in (ended, later):
        paid = await world.pay(auction, PRICE - deposit(PRICE))
        assert paid.body["settlement"]["status"] == "settled", paid.text

    assert await earned(world, ended) == 2_000_000  # ₦1,000,000 × 2 %
    assert await earned(world, later) == 9_000_000  # × 9 %


async def test_an_auction_ended_before_the_change_and_end_processed_after_it_keeps_the_old_rate(
    world: World, admin: uuid.UUID
) -> None:
    await set_by(world, admin, base_rate="0.02")
    winner = await world.api.bidder(FUNDS)
    auction, end = await world.live()
    assert (await world.api.bid(winner, auction, PRICE)).status == 201
    world.clock.set(end)
    await world.api.sequencer.close_auction(auction)  # ended; its end processing not yet run
    changed = await set_by(world, admin, base_rate="0.09")
    assert changed.body["commission_rate"]["updated_at_ms"] >= end

    result = await world.lifecycle.end(auction, winner)  # the next tick, or the sweep

    assert result is not None and result.sold
    assert await world.pool.fetchval(
        "SELECT commission_rate FROM auctions WHERE id = $1", auction
    ) == Decimal("0.0200")
    await world.pay(auction, PRICE - deposit(PRICE))
    assert await earned(world, auction) == 2_000_000


async def test_an_auction_ended_before_rates_were_kept_is_rated_for_its_end_at_settlement(
    world: World, admin: uuid.UUID
) -> None:
    await set_by(world, admin, base_rate="0.02", rules=[{"rate": "0.03", "seller_role": "dealer"}])
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    # As an auction ended before the column existed: no rate kept on it.
    await world.pool.execute("UPDATE auctions SET commission_rate = NULL WHERE id = $1", auction)
    await set_by(world, admin, base_rate="0.09")

    await world.pay(auction, PRICE - deposit(PRICE))

    assert await earned(world, auction) == 3_000_000  # the dealer's rule as it stood at the end


async def test_a_row_first_made_after_an_auction_ended_charges_it_nothing(
    world: World, admin: uuid.UUID
) -> None:
    winner = await world.api.bidder(FUNDS)
    auction, end = await world.live()
    assert (await world.api.bid(winner, auction, PRICE)).status == 201
    world.clock.set(end)
    await world.api.sequencer.close_auction(auction)
    await set_by(world, admin, base_rate="0.09")

    await world.lifecycle.end(auction, winner)
    await world.pay(auction, PRICE - deposit(PRICE))

    assert (
        await world.pool.fetchval(
            "SELECT count(*) FROM transactions WHERE user_id = $1", PLATFORM_USER_ID
        )
        == 0
    )


async def test_a_change_waits_for_an_end_processing_reading_the_rates(
    world: World, admin: uuid.UUID
) -> None:
    """End processing shares the rates' lock: a change made meanwhile commits after it,
    so the moment it records is never before a reading of the old row."""
    await set_by(world, admin, base_rate="0.02")
    async with world.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        row = await rates_at(conn, SERVICE_TYPE, world.clock.now_ms() + 1)
        assert row is not None and row["base_rate"] == Decimal("0.0200")
        change = asyncio.create_task(set_by(world, admin, base_rate="0.09"))
        await asyncio.sleep(0.3)
        assert not change.done()
        assert (await stored(world))[0]["base_rate"] == Decimal("0.0200")
        await transaction.commit()
    assert (await change).body["commission_rate"]["base_rate"] == "0.0900"
