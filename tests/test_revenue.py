"""The platform's commission at settlement and the revenue report, on the real
database: which rate applies (the seed's `commission_rates`, fixed at the end),
the commission's rounding, the `commission_earned` transaction, and
`GET /internal/admin/revenue` by UTC day on hand-computed cases."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

import bidcore
from engine.clock import ManualClock, to_datetime, to_ms
from engine.commission import SERVICE_TYPE, choose_rate, commission_kobo
from engine.metrics import OUTCOMES_TODAY, REVENUE_TODAY
from engine.money import kobo_to_naira, naira_to_kobo
from engine.revenue import RevenueDay
from engine.roles import PLATFORM_USER_ID
from jobs.revenue import RevenueToday
from tests.factories import create_auction, create_user
from tests.http_helpers import PRICE, STEP
from tests.test_ifbid import make_world as make_if_bid_world
from tests.test_settlement import FUNDS, World, deposit, make_world

DAY = 86_400_000
MARCH_1 = to_ms(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))


def rates(base: str, rules: list[dict[str, Any]] | None = None, **bounds: str) -> dict[str, Any]:
    """A commission_rates row as asyncpg gives it."""
    return {
        "base_rate": Decimal(base),
        "min_rate": Decimal(bounds["min_rate"]) if "min_rate" in bounds else None,
        "max_rate": Decimal(bounds["max_rate"]) if "max_rate" in bounds else None,
        "rules": json.dumps(rules or []),
    }


async def set_rates(pool: Any, base: str, rules: list[dict[str, Any]] | None = None) -> None:
    await pool.execute(
        "INSERT INTO commission_rates (service_type, base_rate, rules) VALUES ($1, $2, $3::jsonb)"
        " ON CONFLICT (service_type) DO UPDATE SET base_rate = EXCLUDED.base_rate,"
        " rules = EXCLUDED.rules",
        SERVICE_TYPE,
        Decimal(base),
        json.dumps(rules or []),
    )


# ---- which rate -------------------------------------------------------------------------


RULES = [
    {"rate": "0.0400", "seller_role": "dealer"},
    {"rate": "0.0300", "seller_role": "dealer", "body_type": "SUV"},
    {"rate": "0.0200", "body_type": "suv"},
    {"rate": "0.0100", "seller_role": "dealer", "body_type": "suv"},  # as specific, later: loses
]


@pytest.mark.parametrize(
    ("role", "body", "expected"),
    [
        ("dealer", "sedan", "0.0400"),  # role only
        ("dealer", "suv", "0.0300"),  # role and body type beat either (case aside)
        ("manager", "SUV", "0.0200"),  # body type only
        ("admin", "sedan", "0.0500"),  # no rule: the base rate
        ("admin", None, "0.0500"),
    ],
)
def test_the_most_specific_matching_rule_sets_the_rate(
    role: str, body: str | None, expected: str
) -> None:
    assert choose_rate(rates("0.0500", RULES), role, body, MARCH_1) == Decimal(expected)


def test_a_rule_with_dates_applies_to_auctions_ending_within_them() -> None:
    promotion = [{"rate": "0.0100", "from_ms": MARCH_1, "until_ms": MARCH_1 + DAY}]
    row = rates("0.0500", promotion)
    assert [
        choose_rate(row, "dealer", None, at) for at in (MARCH_1 - 1, MARCH_1, MARCH_1 + DAY)
    ] == [
        Decimal("0.0500"),
        Decimal("0.0100"),
        Decimal("0.0500"),
    ]


def test_the_rate_stays_within_the_row_s_bounds_and_a_bad_rules_value_means_the_base() -> None:
    low = [{"rate": "0.0010"}]
    assert choose_rate(rates("0.0500", low, min_rate="0.0200"), "dealer", None, 0) == Decimal(
        "0.0200"
    )
    assert choose_rate(rates("0.0900", max_rate="0.0600"), "dealer", None, 0) == Decimal("0.0600")
    broken = {**rates("0.0500"), "rules": '[{"rate": "x", "colour": 1}]'}
    assert choose_rate(broken, "dealer", None, 0) == Decimal("0.0500")
    assert choose_rate(None, "dealer", None, 0) == 0  # no row: no commission


@pytest.mark.parametrize(
    ("price", "rate", "expected"),
    [
        (100_000_000, "0.0350", 3_500_000),
        (100_000_001, "0.0350", 3_500_000),  # 3,500,000.035 kobo: the fraction is the seller's
        (99_999_999, "0.0001", 9_999),  # 9,999.9999
        (123_456_789, "0.0000", 0),
        (123_456_789, "1.0000", 123_456_789),
    ],
)
def test_the_commission_is_the_floor_of_price_times_rate(
    price: int, rate: str, expected: int
) -> None:
    assert commission_kobo(price, Decimal(rate)) == expected


# ---- at settlement ------------------------------------------------------------------------


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any) -> World:
    return await make_world(database_url, aiohttp_client)


async def test_a_settled_sale_credits_the_platform_its_commission(world: World) -> None:
    await set_rates(world.pool, "0.0500", [{"rate": "0.0350", "seller_role": "dealer"}])
    winner = await world.api.bidder(FUNDS)
    price = PRICE + 3 * STEP + 1  # an odd kobo: the commission rounds down
    held = bidcore.deposit(price, 2000)
    auction = await world.won([(winner, price)])

    paid = await world.pay(auction, price - held)

    assert paid.body["settlement"]["status"] == "settled", paid.text
    commission = price * 350 // 10_000
    (earned,) = await world.transactions(PLATFORM_USER_ID, "commission_earned")
    assert (naira_to_kobo(earned["amount"]), naira_to_kobo(earned["balance_after"])) == (
        commission,
        commission,
    )
    assert (earned["reference_id"], earned["idempotency_key"], earned["status"]) == (
        auction,
        f"commission:{auction}",
        "completed",
    )
    offer = await world.offer(auction, winner)
    assert naira_to_kobo(offer["commission"]) == commission
    await world.assert_balances({PLATFORM_USER_ID: commission, winner: FUNDS - held})


async def test_the_rate_is_the_one_in_force_when_the_auction_ended(world: World) -> None:
    await set_rates(world.pool, "0.0200")
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    await set_rates(world.pool, "0.0900")  # changed between the end and the payment

    await world.pay(auction, PRICE - deposit(PRICE))

    (earned,) = await world.transactions(PLATFORM_USER_ID, "commission_earned")
    assert naira_to_kobo(earned["amount"]) == PRICE * 200 // 10_000


async def test_without_a_rate_no_commission_is_taken(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])

    await world.pay(auction, PRICE - deposit(PRICE))

    assert await world.transactions(PLATFORM_USER_ID) == []
    assert naira_to_kobo((await world.offer(auction, winner))["commission"]) == 0


async def test_a_deposit_of_the_whole_price_settles_with_its_commission_at_the_end(
    world: World,
) -> None:
    await set_rates(world.pool, "0.0100")
    winner = await world.api.bidder(2 * PRICE)
    auction = await world.won([(winner, PRICE)], deposit_pct_bp=10_000)

    row = await world.auction(auction)
    (earned,) = await world.transactions(PLATFORM_USER_ID, "commission_earned")
    assert row["status"] == "settled"
    assert naira_to_kobo(earned["amount"]) == PRICE // 100
    await world.assert_balances({PLATFORM_USER_ID: PRICE // 100})


# ---- the report -------------------------------------------------------------------------------


async def offer_row(
    pool: Any,
    auction: uuid.UUID,
    user: uuid.UUID,
    *,
    closed_ms: int,
    amount: int,
    outcome: str,
    deposit_status: str,
    commission: int | None = None,
) -> None:
    await pool.execute(
        "INSERT INTO settlement_offers (auction_id, user_id, amount, deposit, deposit_status,"
        " deadline, outcome, closed_at, commission) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        auction,
        user,
        kobo_to_naira(amount),
        kobo_to_naira(deposit(amount)),
        deposit_status,
        to_datetime(closed_ms),
        outcome,
        to_datetime(closed_ms),
        kobo_to_naira(commission) if commission is not None else None,
    )


async def report(world: World, query: str) -> Any:
    return await world.api.service("GET", f"/internal/admin/revenue{query}")


async def test_the_report_adds_up_by_utc_day_to_the_kobo(world: World) -> None:
    pool = world.pool
    seller = await create_user(pool, role="dealer")
    buyer = await create_user(pool)
    auctions = [
        await create_auction(pool, seller=seller, start_ms=MARCH_1 - DAY, end_ms=MARCH_1, status=s)
        for s in ("settled", "settled", "pending_settlement", "unsold", "relisted", "unsold")
    ]
    sold_a, sold_b, defaulted, unsold_a, unsold_b, before = auctions
    # 1 March: two sales, one a millisecond before midnight.
    await offer_row(
        pool,
        sold_a,
        buyer,
        closed_ms=MARCH_1 + 10 * 3_600_000,
        amount=100_000_000,
        outcome="paid",
        deposit_status="applied",
        commission=3_500_000,
    )
    await offer_row(
        pool,
        sold_b,
        buyer,
        closed_ms=MARCH_1 + DAY - 1,
        amount=250_000_050,
        outcome="paid",
        deposit_status="applied",
        commission=None,
    )  # before rates
    # 2 March, midnight exactly: a deposit forfeited; noon: two auctions unsold.
    await offer_row(
        pool,
        defaulted,
        buyer,
        closed_ms=MARCH_1 + DAY,
        amount=150_000_000,
        outcome="defaulted",
        deposit_status="forfeited",
    )
    # A voided offer is not revenue.
    await offer_row(
        pool,
        defaulted,
        seller,
        closed_ms=MARCH_1 + DAY,
        amount=140_000_000,
        outcome="voided",
        deposit_status="released",
    )
    for auction, at in (
        (unsold_a, MARCH_1 + DAY + 43_200_000),
        (unsold_b, MARCH_1 + DAY + 1),
        (before, MARCH_1 - 1),
    ):
        await pool.execute(
            "UPDATE auctions SET unsold_at = $2 WHERE id = $1", auction, to_datetime(at)
        )

    whole = await report(world, f"?from_ms={MARCH_1}&to_ms={MARCH_1 + 3 * DAY}")
    part = await report(world, f"?from_ms={MARCH_1 + 12 * 3_600_000}&to_ms={MARCH_1 + DAY + 1}")

    assert whole.status == 200, whole.text
    day = {
        "gmv_kobo": 0,
        "commissions_kobo": 0,
        "forfeited_deposits_kobo": 0,
        "sold": 0,
        "unsold": 0,
    }
    first = {
        **day,
        "day": "2026-03-01",
        "from_ms": MARCH_1,
        "gmv_kobo": 350_000_050,
        "commissions_kobo": 3_500_000,
        "sold": 2,
    }
    second = {
        **day,
        "day": "2026-03-02",
        "from_ms": MARCH_1 + DAY,
        "forfeited_deposits_kobo": 30_000_000,
        "unsold": 2,
    }
    third = {**day, "day": "2026-03-03", "from_ms": MARCH_1 + 2 * DAY}
    assert whole.body == {
        "from_ms": MARCH_1,
        "to_ms": MARCH_1 + 3 * DAY,
        "gmv_kobo": 350_000_050,
        "commissions_kobo": 3_500_000,
        "forfeited_deposits_kobo": 30_000_000,
        "sold": 2,
        "unsold": 2,
        "days": [first, second, third],
    }
    # From noon on 1 March to the first millisecond of 2 March: sale B, the forfeit.
    assert [
        (d["day"], d["gmv_kobo"], d["sold"], d["forfeited_deposits_kobo"], d["unsold"])
        for d in part.body["days"]
    ] == [
        ("2026-03-01", 250_000_050, 1, 0, 0),
        ("2026-03-02", 0, 0, 30_000_000, 0),
    ]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?from_ms=0",
        "?to_ms=10",
        "?from_ms=x&to_ms=10",
        "?from_ms=-5&to_ms=10",
        "?from_ms=1.5&to_ms=10",
        "?from_ms=10&to_ms=10",
        "?from_ms=20&to_ms=10",
        f"?from_ms=0&to_ms={367 * DAY}",
        "?from_ms=0&to_ms=9999999999999999",
    ],
)
async def test_a_bad_range_is_refused(world: World, query: str) -> None:
    reply = await report(world, query)
    assert (reply.status, reply.code) == (422, "invalid_range"), reply.text


async def test_the_report_needs_the_service_token(world: World) -> None:
    staff = await world.api.user(role="admin")
    path = f"/internal/admin/revenue?from_ms=0&to_ms={DAY}"
    assert (await world.api.call("GET", path)).status == 401
    assert (await world.api.as_user(staff, "GET", path, role="admin")).status == 401


async def test_today_s_sales_forfeits_and_unsold_reach_the_report_and_the_gauges(
    world: World,
) -> None:
    await set_rates(world.pool, "0.0250")
    winner, late, rival = [await world.api.bidder(FUNDS) for _ in range(3)]
    sold = await world.won([(winner, PRICE)])
    await world.pay(sold, PRICE - deposit(PRICE))
    defaulted = await world.won([(rival, PRICE), (late, PRICE + STEP)])
    await world.pass_deadline(defaulted)  # late forfeits; rival is offered it
    await world.won([])  # no bid: unsold
    now = to_ms(await world.pool.fetchval("SELECT now()"))
    today = now // DAY * DAY

    reply = await report(world, f"?from_ms={today}&to_ms={today + DAY}")
    gauges = await RevenueToday(world.pool, ManualClock(now)).run()  # the database's day

    assert (
        reply.body["gmv_kobo"],
        reply.body["commissions_kobo"],
        reply.body["forfeited_deposits_kobo"],
        reply.body["sold"],
        reply.body["unsold"],
    ) == (PRICE, PRICE * 250 // 10_000, deposit(PRICE + STEP), 1, 1)
    earned = await world.transactions(PLATFORM_USER_ID, "commission_earned")
    assert sorted(naira_to_kobo(e["amount"]) for e in earned) == sorted(
        [PRICE * 250 // 10_000, deposit(PRICE + STEP)]  # the commission, and the forfeit
    )
    assert gauges is not None and gauges.days == reply_days(reply.body)
    assert REVENUE_TODAY.labels("gmv")._value.get() == PRICE
    assert REVENUE_TODAY.labels("commissions")._value.get() == PRICE * 250 // 10_000
    assert REVENUE_TODAY.labels("forfeited_deposits")._value.get() == deposit(PRICE + STEP)
    assert OUTCOMES_TODAY.labels("sold")._value.get() == 1
    assert OUTCOMES_TODAY.labels("unsold")._value.get() == 1


def reply_days(body: dict[str, Any]) -> list[Any]:
    return [RevenueDay(**day) for day in body["days"]]


async def test_an_accepted_if_bid_pays_commission_on_its_agreed_price(
    database_url: str, aiohttp_client: Any
) -> None:
    deciding = await make_if_bid_world(database_url, aiohttp_client)
    await set_rates(deciding.pool, "0.0300")
    bidder = await deciding.api.bidder(FUNDS)
    auction = await deciding.deciding([(bidder, PRICE)])
    seller = await deciding.seller_of(auction)
    agreed = PRICE + 6 * STEP
    assert (await deciding.answer(seller, auction, "counter", agreed, "dealer")).status == 200
    assert (await deciding.answer(bidder, auction, "accept")).status == 200

    payment = {"payer_id": str(bidder), "amount_kobo": agreed - deposit(agreed), "reference": "p1"}
    paid = await deciding.api.service("POST", f"/internal/auctions/{auction}/payments", payment)

    assert paid.body["settlement"]["status"] == "settled", paid.text
    earned = await deciding.pool.fetchval(
        "SELECT amount FROM transactions WHERE type = 'commission_earned' AND reference_id = $1",
        auction,
    )
    assert naira_to_kobo(earned) == agreed * 300 // 10_000


async def test_the_last_day_there_is_can_be_reported(world: World) -> None:
    last = bidcore.MAX_TIME_MS  # 9999-12-31T23:59:59.999Z
    reply = await report(world, f"?from_ms={last - DAY}&to_ms={last}")
    assert reply.status == 200, reply.text
    assert [day["day"] for day in reply.body["days"]] == ["9999-12-30", "9999-12-31"]
