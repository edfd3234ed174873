"""Settlement over the internal API: the payment provider's payments for won
auctions (via the platform's webhook), and where a settlement stands.

`POST /internal/auctions/{id}/payments` (API.md's body, `payer_id` optional) is idempotent by
the provider's reference: the same reference again answers 200 with the
settlement as it stands, never a second payment; with another payer, amount or
auction, or a reference already used for a wallet movement, 409. A payer who
does not hold the auction's open offer is refused 409 `not_the_buyer`; a payment
naming no payer is the buyer's until the offer moves after a default, then 409
`payer_required`.
"""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from engine import offers, payments
from engine.roles import PLATFORM_USER_ID
from web.auth import require_service
from web.keys import CLOCK, DATABASE, SEQUENCER, SETTINGS
from web.messages import SettlementEnvelope, json_response, path_uuid, read_json
from web.peers import relay_to_owner


class PaymentRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`payer_id`: the user the provider says paid; the open offer must be theirs."""

    amount_kobo: int
    reference: str
    payer_id: uuid.UUID | None = None


async def post_payment(request: web.Request) -> web.Response:
    app = request.app
    require_service(request, app[SETTINGS].internal_api_token)
    auction_id = path_uuid(request)
    relayed = await relay_to_owner(request, auction_id)  # several nodes: its owner takes it
    if relayed is not None:
        return relayed
    spec = await read_json(request, PaymentRequest)
    receipt, new = await payments.pay(
        app[DATABASE].pool,
        auction_id,
        spec.payer_id,
        spec.amount_kobo,
        spec.reference,
        app[CLOCK].now_ms(),
        fence=app[SEQUENCER].fence(auction_id),
    )
    if new and receipt.settlement.status == "settled":  # the commission moved its balance
        await app[SEQUENCER].refresh_user(PLATFORM_USER_ID)
    return json_response(receipt, 201 if new else 200)


async def get_settlement(request: web.Request) -> web.Response:
    app = request.app
    require_service(request, app[SETTINGS].internal_api_token)
    found = await offers.read_settlement(app[DATABASE].pool, path_uuid(request))
    return json_response(SettlementEnvelope(found))


def install(app: web.Application) -> None:
    app.router.add_post("/internal/auctions/{id}/payments", post_payment)
    app.router.add_get("/internal/auctions/{id}/settlement", get_settlement)
