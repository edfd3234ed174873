"""Wallets over the internal API: idempotent credits and debits, each one ledger
transaction with balance_after, committed capital, and the core following."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest

from engine.money import kobo_to_naira
from tests.http_helpers import PRICE, STEP, Api, start


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


async def transactions(api: Api, user_id: uuid.UUID) -> list[Any]:
    return await api.pool.fetch(
        "SELECT type, amount, balance_after, status, paystack_ref FROM transactions"
        " WHERE user_id = $1 ORDER BY created_at",
        user_id,
    )


async def test_wallet_of_a_new_user_is_all_zero(api: Api) -> None:
    user_id = await api.user()
    assert await api.wallet(user_id) == {
        "user_id": str(user_id),
        "balance_kobo": 0,
        "exposure_kobo": 0,
        "available_kobo": 0,
        "held_kobo": 0,
        "due_kobo": 0,
    }


async def test_wallet_of_an_unknown_user_is_404(api: Api) -> None:
    reply = await api.service("GET", f"/internal/users/{uuid.uuid4()}/wallet")
    assert (reply.status, reply.code) == (404, "unknown_user")


async def test_credit_writes_one_deposit_with_balance_after(api: Api) -> None:
    user_id = await api.user(balance_kobo=1_000)

    reply = await api.credit(user_id, 250_050, "paystack-abc")

    assert reply.status == 201, reply.text
    assert reply.body["balance_kobo"] == 251_050
    assert reply.body["transaction"]["type"] == "deposit"
    assert reply.body["transaction"]["balance_after_kobo"] == 251_050
    assert reply.body["transaction"]["reference"] == "paystack-abc"
    last = (await transactions(api, user_id))[-1]
    assert (last["type"], last["status"], last["paystack_ref"]) == (
        "deposit",
        "completed",
        "paystack-abc",
    )
    assert (last["amount"], last["balance_after"]) == (Decimal("2500.50"), Decimal("2510.50"))
    assert await api.pool.fetchval(
        "SELECT wallet_balance FROM users WHERE id = $1", user_id
    ) == kobo_to_naira(251_050)


async def test_same_reference_twice_credits_once(api: Api) -> None:
    user_id = await api.user()

    first = await api.credit(user_id, 500_000, "webhook-1")
    again = await api.credit(user_id, 500_000, "webhook-1")

    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert again.body["balance_kobo"] == 500_000
    assert len(await transactions(api, user_id)) == 1


async def test_concurrent_deliveries_of_one_reference_credit_once(api: Api) -> None:
    user_id = await api.user()
    replies = await asyncio.gather(*(api.credit(user_id, 700, "webhook-x") for _ in range(8)))
    assert sorted(reply.status for reply in replies) == [200] * 7 + [201]
    assert (await api.wallet(user_id))["balance_kobo"] == 700
    assert len(await transactions(api, user_id)) == 1


async def test_concurrent_withdrawals_never_overdraw(api: Api) -> None:
    user_id = await api.user(balance_kobo=1_000)
    replies = await asyncio.gather(*(api.debit(user_id, 400) for _ in range(6)))
    statuses = sorted(reply.status for reply in replies)
    assert statuses == [201, 201, 409, 409, 409, 409]
    assert (await api.wallet(user_id))["balance_kobo"] == 200
    registry = api.sequencer.registry
    assert registry.core.user(registry.user_handle(user_id)).balance_kobo == 200


async def test_same_reference_with_another_amount_or_user_is_409(api: Api) -> None:
    user_id, other = await api.user(), await api.user()
    assert (await api.credit(user_id, 500_000, "webhook-2")).status == 201

    other_amount = await api.credit(user_id, 600_000, "webhook-2")
    other_user = await api.credit(other, 500_000, "webhook-2")

    assert (other_amount.status, other_amount.code) == (409, "reference_conflict")
    assert (other_user.status, other_user.code) == (409, "reference_conflict")
    assert (await api.wallet(other))["balance_kobo"] == 0


async def test_credit_raises_buying_power_in_the_core(api: Api) -> None:
    auction = await api.live_auction()
    user_id = await api.user()
    assert (await api.bid(user_id, auction, PRICE)).code == "insufficient_buying_power"

    await api.credit(user_id, PRICE // 5)  # the 20 % deposit, exactly

    assert (await api.bid(user_id, auction, PRICE)).status == 201


async def test_credit_amount_out_of_range_is_422_invalid_amount(api: Api) -> None:
    user_id = await api.user()
    for amount in [0, -1, 10**15, 2**70]:
        reply = await api.credit(user_id, amount)
        assert (reply.status, reply.code) == (422, "invalid_amount"), amount
    assert (await api.wallet(user_id))["balance_kobo"] == 0


async def test_credit_amount_of_another_type_is_422(api: Api) -> None:
    user_id = await api.user()
    for amount in [1.5, "100", None, True, [1]]:
        reply = await api.credit(user_id, amount)
        assert (reply.status, reply.code) == (422, "invalid"), amount


async def test_credit_reference_must_be_1_to_100_printable_characters(api: Api) -> None:
    user_id = await api.user()
    for reference in ["", " ", "r" * 101, "bad\u0000ref"]:
        reply = await api.credit(user_id, 100, reference)
        assert (reply.status, reply.code) == (
            422,
            "invalid_reference" if reference.strip() == "" else "invalid",
        ), reference
    assert (await api.credit(user_id, 100, "r" * 100)).status == 201


async def test_credit_past_the_largest_balance_is_422(api: Api) -> None:
    user_id = await api.user(balance_kobo=10**15 - 10)
    reply = await api.credit(user_id, 11)
    assert (reply.status, reply.code) == (422, "balance_limit")


async def test_credit_to_an_unknown_user_is_404(api: Api) -> None:
    reply = await api.credit(uuid.uuid4(), 100)
    assert (reply.status, reply.code) == (404, "unknown_user")


async def test_debit_writes_one_withdrawal_and_lowers_the_core(api: Api) -> None:
    user_id = await api.user(balance_kobo=PRICE)

    reply = await api.debit(user_id, PRICE - PRICE // 5 + 1, "payout-1")

    assert reply.status == 201, reply.text
    assert reply.body["balance_kobo"] == PRICE // 5 - 1
    last = (await transactions(api, user_id))[-1]
    assert (last["type"], last["balance_after"]) == ("withdrawal", kobo_to_naira(PRICE // 5 - 1))
    auction = await api.live_auction()
    assert (await api.bid(user_id, auction, PRICE)).code == "insufficient_buying_power"


async def test_same_debit_reference_twice_withdraws_once(api: Api) -> None:
    user_id = await api.user(balance_kobo=1_000)
    first = await api.debit(user_id, 400, "payout-2")
    again = await api.debit(user_id, 400, "payout-2")
    assert (first.status, again.status) == (201, 200)
    assert again.body["balance_kobo"] == 600
    assert [row["type"] for row in await transactions(api, user_id)] == ["deposit", "withdrawal"]


async def test_debit_beyond_the_balance_is_409_insufficient_funds(api: Api) -> None:
    user_id = await api.user(balance_kobo=1_000)
    reply = await api.debit(user_id, 1_001)
    assert (reply.status, reply.code) == (409, "insufficient_funds")
    assert "₦10.00" in reply.body["error"]["message"]
    assert (await api.wallet(user_id))["balance_kobo"] == 1_000


async def test_leader_cannot_withdraw_until_outbid(api: Api) -> None:
    auction = await api.live_auction()
    leader = await api.user(balance_kobo=PRICE)
    assert (await api.bid(leader, auction, PRICE)).status == 201
    wallet = await api.wallet(leader)
    assert (wallet["exposure_kobo"], wallet["available_kobo"]) == (PRICE // 5, PRICE - PRICE // 5)

    refused = await api.debit(leader, 1)
    assert (refused.status, refused.code) == (409, "committed_capital")

    assert (await api.bid(await api.bidder(), auction, PRICE + STEP)).status == 201
    allowed = await api.debit(leader, PRICE)
    assert allowed.status == 201, allowed.text
    assert allowed.body["balance_kobo"] == 0


async def test_leader_of_a_zero_deposit_auction_still_cannot_withdraw(api: Api) -> None:
    auction = await api.live_auction(deposit_pct_bp=0)
    leader = await api.user(balance_kobo=1_000)
    assert (await api.bid(leader, auction, PRICE)).status == 201
    reply = await api.debit(leader, 1)
    assert (reply.status, reply.code) == (409, "committed_capital")


async def test_a_deposit_held_for_a_won_auction_is_held_and_committed(api: Api) -> None:
    winner = await api.user(balance_kobo=PRICE)
    auction = await api.live_auction()
    # What end processing writes for a win: the auction awaiting settlement
    # and the deposit moved out of the balance into a hold.
    await api.pool.execute(
        "UPDATE auctions SET status = 'pending_settlement', winner_id = $2 WHERE id = $1",
        auction,
        winner,
    )
    await api.pool.execute(
        "INSERT INTO transactions (user_id, type, amount, balance_after, status, reference_id,"
        " reference_type) VALUES ($1, 'bid_deposit_hold', $2, $3, 'completed', $4, 'auction')",
        winner,
        kobo_to_naira(PRICE // 5),
        kobo_to_naira(PRICE - PRICE // 5),
        auction,
    )
    await api.pool.execute(
        "INSERT INTO settlement_offers (auction_id, user_id, amount, deposit, deposit_status,"
        " deadline) VALUES ($1, $2, $3, $4, 'held', now() + interval '1 day')",
        auction,
        winner,
        kobo_to_naira(PRICE),
        kobo_to_naira(PRICE // 5),
    )

    assert (await api.wallet(winner))["held_kobo"] == PRICE // 5
    reply = await api.debit(winner, 1)
    assert (reply.status, reply.code) == (409, "committed_capital")


async def test_debit_amount_out_of_range_is_422(api: Api) -> None:
    reply = await api.debit(await api.user(balance_kobo=100), 0)
    assert (reply.status, reply.code) == (422, "invalid_amount")


async def test_wallet_unknown_field_is_422(api: Api) -> None:
    user_id = await api.user()
    reply = await api.service(
        "POST",
        f"/internal/users/{user_id}/wallet/credits",
        {"amount_kobo": 100, "reference": "x", "currency": "NGN"},
    )
    assert (reply.status, reply.code) == (422, "invalid")


async def test_wallet_calls_without_a_ledger_are_503_not_500(api: Api) -> None:
    user_id = await api.user(balance_kobo=1_000)
    await api.pool.close()

    for reply in (
        await api.service("GET", f"/internal/users/{user_id}/wallet"),
        await api.credit(user_id, 100),
        await api.debit(user_id, 100),
    ):
        assert (reply.status, reply.code) == (503, "unavailable"), reply.text
