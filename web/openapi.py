"""`GET /openapi.json`: the HTTP API of API.md as an OpenAPI 3.1 document.

The schemas are generated from the msgspec structs the handlers decode and
encode (`msgspec.json.schema_components`), so a field added to a struct is in
the document at once. What a struct cannot say — the bounds, patterns and
choices the domain checks with their own error codes (a VIN's is `invalid_vin`,
a bid amount's `invalid_amount`), which msgspec.Meta would turn into its own
`invalid` — is added from the same constants those checks use (`_rules`), and
stated exactly: a request the document calls valid passes those checks, one it
calls invalid does not. A rule no schema can state (an end after the start and
after now, a dealer's drafts, an id that must name something) is in the
field's or the operation's description. The WebSockets (`/ws/auctions/{id}`,
and `/internal/peer` between nodes) and the room page are not HTTP APIs and
are left out. tests/test_openapi.py
holds this table to the app's routes, to real answers and to the checks;
tests/test_hostile_api_fuzz.py runs schemathesis, every check, against it.
"""

from __future__ import annotations

import copy
import functools
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from aiohttp import web

import bidcore
from engine import (
    admin,
    auctions,
    commission,
    commission_rates,
    ifbid,
    money,
    payments,
    references,
    text,
    users,
    vehicles,
)
from engine.auctions import BidHistory, Snapshot
from engine.ifbid import OfferBody, OfferRequest
from engine.publiclog import LogBody, Opening
from engine.relisting import RelistTerms
from engine.revenue import MAX_DAYS, RevenueBody
from engine.selling import MyAuctions
from engine.signing import LogKeys
from engine.standing import MyBids
from engine.users import UserUpsert
from engine.vehicles import VehicleCreate
from engine.wallet import WalletBody, WalletChange, WalletMovement
from web import public_api, seller_api, vehicles_api
from web.admin_api import ACTIONS, ActionRequest, AdminOutcome
from web.commission_api import (
    CommissionRateEnvelope,
    CommissionRateList,
    CommissionRateRequest,
)
from web.errors import DuplicateVinEnvelope, ErrorEnvelope
from web.keys import CLOCK
from web.messages import (
    AuctionEnvelope,
    AuctionList,
    BidEnvelope,
    BidRequest,
    ClusterBody,
    InternalAuctionCreate,
    MaxEnvelope,
    MaxRequest,
    PublicAuctionCreate,
    SettlementEnvelope,
    UserEnvelope,
    VehicleEnvelope,
)
from web.settlement_api import PaymentRequest
from web.vehicles_api import SimilarVehicles

JSON = "application/json"
PROMETHEUS = "text/plain"
REF = "#/components/schemas/{name}"

Json = dict[str, Any]


class Health(msgspec.Struct, frozen=True, omit_defaults=True):
    """`/healthz` and `/readyz` (web/health.py answers with plain dicts of this shape)."""

    status: Literal["ok", "ready", "unavailable"]
    #: `/readyz` when ready: auctions suspended because their bid log does not verify.
    bid_logs_broken: int | None = None


class OpenApiDocument(msgspec.Struct, frozen=True):
    """`/openapi.json` itself: an object (its own schema is OpenAPI's)."""


#: Who may call: a user's JWT, the service token, or either (a staff member's or the platform).
Auth = Literal["user", "service", "user_or_service"]


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    schema: Json
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """One route: who may call it, what it takes, every status it answers with.

    `responses` maps a status to the struct of its body (`None`: the error
    envelope); a path with `{id}` takes a UUID there, anything else is a 404.
    """

    method: str
    path: str
    summary: str
    tag: str
    responses: Mapping[int, type[msgspec.Struct] | None]
    auth: Auth | None = None
    body: type[msgspec.Struct] | None = None
    body_required: bool = True
    query: tuple[Query, ...] = ()
    description: str = ""
    content: str = JSON
    conflict: type[msgspec.Struct] | None = None  # the 409 body, when not the plain envelope
    #: The body's schema by name, when it is not the struct's own (`_rules` makes it).
    body_schema: str | None = None
    #: Path parameters other than `{id}` (a UUID, always), as `Query` says them.
    path_parameters: tuple[Query, ...] = ()

    @property
    def body_name(self) -> str | None:
        if self.body is None:
            return None
        return self.body_schema or self.body.__name__


# Statuses in API.md's words (the error envelope's `message` says more).
STATUS_TEXT = {
    200: "OK.",
    201: "Created.",
    400: "Malformed: the body is not JSON in UTF-8, or is nested too deeply to read.",
    401: "No token, or one that proves nothing (expired, badly signed, not a known active user).",
    403: "The caller's role (from the engine's users row) or ownership does not allow this.",
    404: "Nothing has this id (a malformed id names nothing either).",
    409: "Conflict with the current state (a rejected bid, a duplicate, committed capital).",
    413: "The body is larger than MAX_BODY_BYTES.",
    422: "Valid JSON that breaks a rule; `code` names the rule, `message` says what to change.",
    429: "Rate-limited: wait the `Retry-After` seconds.",
    503: "The ledger cannot take writes or be read right now; nothing changed. Try again.",
}

UUID = {"type": "string", "format": "uuid"}

_LIMITED = (429,)  # every route but the probes counts against the per-IP and per-user limits
_BODY = (400, 413, 422)
_SERVICE = (401, 503, *_LIMITED)  # a caller without the service token is limited per IP
_USER = (401, 403, 503, *_LIMITED)


def _errors(*statuses: int) -> dict[int, None]:
    return dict.fromkeys(sorted(set(statuses)))


def _admin_operation(name: str) -> Operation:
    extend = name == "extend"
    extra = (
        " Takes the new `end_time_ms`: later than the auction's current end and than now "
        "(else 422 `invalid_end_time`)."
        if extend
        else ""
    )
    return Operation(
        "POST",
        f"/internal/admin/auctions/{{id}}/{name}",
        f"Staff action on an auction: {name}",
        "admin",
        {200: AdminOutcome, **_errors(*_USER, *_BODY, 404, 409)},
        auth="user",
        body=ActionRequest,
        body_schema="ExtendRequest" if extend else None,
        description=(
            "A manager's or an admin's JWT (never the service token: the audit log names the "
            f"person). `reason` is required (≤ {admin.MAX_REASON} characters).{extra}"
        ),
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/openapi.json",
        "This document",
        "meta",
        {200: OpenApiDocument, **_errors(*_LIMITED)},
    ),
    Operation("GET", "/healthz", "The process runs", "health", {200: Health}),
    Operation(
        "GET",
        "/readyz",
        "Recovery is done and the ledger takes writes",
        "health",
        {200: Health, 503: Health},
    ),
    Operation(
        "GET",
        "/metrics",
        "Prometheus metrics (text exposition format)",
        "health",
        {200: None},
        content=PROMETHEUS,
    ),
    Operation(
        "GET",
        "/api/auctions",
        "List auction summaries",
        "public",
        {200: AuctionList, **_errors(422, 503, *_LIMITED)},
        query=(
            Query(
                "status",
                {"type": "string", "enum": list(auctions.PUBLIC_STATUSES), "default": "live"},
                "Which auctions (drafts are never listed).",
            ),
            Query(
                "limit",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": public_api.MAX_LIST_LIMIT,
                    "default": public_api.LIST_LIMIT,
                },
                "At most this many, soonest ending first for live ones.",
            ),
        ),
        description="Anyone may call it; a bearer JWT, if sent, only counts against its limit.",
    ),
    Operation(
        "GET",
        "/api/auctions/{id}",
        "An auction room's snapshot (the WebSocket `snapshot`'s REST fallback)",
        "public",
        {200: Snapshot, **_errors(401, 404, 503, *_LIMITED)},
        description=(
            "Anyone may read it; `you` is null. With a bearer token (optional) `you` is "
            "the caller's standing, as on a signed-in socket: handle, status, their "
            "maximum, their buying power left. A token that does not verify is 401."
        ),
    ),
    Operation(
        "POST",
        "/api/auctions",
        "Create an auction (a dealer's starts as a draft)",
        "public",
        {201: AuctionEnvelope, **_errors(*_USER, *_BODY, 409)},
        auth="user",
        body=PublicAuctionCreate,
        description="Dealers, managers and admins; a dealer only for a vehicle it listed or owns.",
    ),
    Operation(
        "POST",
        "/api/bids",
        "Place a bid",
        "public",
        {201: BidEnvelope, **_errors(*_USER, *_BODY, 409)},
        auth="user",
        body=BidRequest,
        description=(
            "201 once the bid is durable. A rejected bid is 409 with the rule's code "
            "(RULES.md), `invalid_amount` 422. The same `client_bid_id` again answers the "
            "first outcome, never a second bid."
        ),
    ),
    Operation(
        "POST",
        "/api/auctions/{id}/max",
        "Set or raise a maximum (proxy) bid; on a scheduled auction, a pre-bid",
        "public",
        {201: MaxEnvelope, **_errors(*_USER, *_BODY, 404, 409)},
        auth="user",
        body=MaxRequest,
        description=(
            "201 once the maximum and the bids it placed are durable: `max.leading` says "
            "whether it leads (on a scheduled auction: would lead when it opens) and "
            "`max.price_kobo` the auction's price after it (scheduled: the price it would "
            "open at). The engine then bids for the caller, one increment at a time, up to "
            "it (RULES.md, maximum bids). Refused as a bid is, 409 with the rule's code "
            "(`unknown_auction`, `auction_not_live`, `auction_ended`, `own_auction`, "
            "`not_eligible`, `insufficient_buying_power`; `below_minimum` under the next "
            "minimum bid, or at or below the caller's own maximum: it is raised, never "
            "lowered), `invalid_amount` 422, and 409 `client_bid_id_reused` for an id that "
            "named a bid. The same `client_bid_id` again answers the first outcome. A "
            "malformed auction id is 404. A server measuring the per-bid ledger "
            "(`LEDGER_MODE=baseline`) refuses every maximum, 409 `maximums_not_offered`."
        ),
    ),
    Operation(
        "GET",
        "/api/me/bids",
        "The caller's auctions: each one's summary and where the caller stands",
        "public",
        {200: MyBids, **_errors(401, 422, 503, *_LIMITED)},
        auth="user",
        query=(
            Query(
                "limit",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": public_api.MAX_MY_BIDS_LIMIT,
                    "default": public_api.MY_BIDS_LIMIT,
                },
                "At most this many auctions.",
            ),
        ),
        description=(
            "Every auction the caller bid on or set a maximum on (a pre-bid included), the "
            "one with their latest bid or maximum first (`you.last_at_ms`), from the ledger. "
            "`you.max_kobo` is the highest maximum they set there, whether it still leads "
            "(`winning`) or was passed (`outbid`); `you.last_bid_kobo` their latest bid "
            "there, a proxy's included."
        ),
    ),
    Operation(
        "GET",
        "/api/me/auctions",
        "The caller's auctions as a seller: summary, reserve, and the if-bid when deciding",
        "public",
        {200: MyAuctions, **_errors(*_USER, 422)},
        auth="user",
        query=(
            Query(
                "limit",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": seller_api.MAX_MY_AUCTIONS_LIMIT,
                    "default": seller_api.MY_AUCTIONS_LIMIT,
                },
                "At most this many auctions.",
            ),
        ),
        description=(
            "Dealers, managers and admins (others: 403). Every auction the caller created, "
            "or of a vehicle they listed or own, latest end first, from the ledger: its "
            "summary (status, price, bid and bidder counts, whether the reserve is met), its "
            "reserve, the auction it was relisted as, and `offer` — the body of `GET "
            "/api/auctions/{id}/offer` — when it ended below its reserve with a real bid "
            "(whose `turn`, until `deadline_ms`)."
        ),
    ),
    Operation(
        "GET",
        "/api/me/wallet",
        "The caller's own wallet: balance, exposure, buying power, holds and dues",
        "public",
        {200: WalletBody, **_errors(401, 503, *_LIMITED)},
        auth="user",
        description="The body of `GET /internal/users/{id}/wallet`, for the caller.",
    ),
    Operation(
        "GET",
        "/api/auctions/{id}/offer",
        "The if-bid: the seller's decision on a top bid below the reserve",
        "public",
        {200: OfferBody, **_errors(*_USER, 404)},
        auth="user",
        description=(
            "For the auction's seller (its creator, the vehicle's lister or owner), its high "
            "bidder, or a manager or admin (anyone else: 403). `state` is `open` while "
            "someone's `turn` it is (`seller` or `bidder`, until `deadline_ms`), then "
            "`accepted` (a win at `price_kobo`), `declined` or `expired` (unsold); `offers` "
            "are the counters, oldest first. An auction that never went to the seller's "
            "decision: 404 `no_offer`."
        ),
    ),
    Operation(
        "POST",
        "/api/auctions/{id}/offer",
        "Answer the if-bid on your turn: accept, decline or counter",
        "public",
        {200: OfferBody, **_errors(*_USER, *_BODY, 404, 409)},
        auth="user",
        body=OfferRequest,
        description=(
            "The seller (or a manager or admin for them) on the seller's turn, the high "
            "bidder on theirs. `accept` is a win at the amount on the table (the high bid, "
            "or the other side's latest counter): deposit hold or due, pending settlement, "
            "payment deadline. `decline`: unsold. `counter` with `amount_kobo` strictly "
            "between the high bid and the reserve (else 409 `counter_out_of_range`), at most "
            f"{ifbid.MAX_COUNTERS} in all (409 `too_many_counters`); the other side then has "
            "the auction's `counter_window_ms` to answer. The bidder's counter, or their "
            "acceptance of the seller's, needs the deposit on that amount in their buying "
            "power (409 `insufficient_buying_power`). Not the caller's turn: 409 "
            "`not_your_turn`; past the deadline: 409 `offer_expired`; decided already: 409 "
            "`offer_closed`. A refused answer changes nothing. Answers with the negotiation."
        ),
    ),
    Operation(
        "POST",
        "/api/auctions/{id}/relist",
        "Relist an unsold auction: a new auction for the same vehicle",
        "public",
        {201: AuctionEnvelope, **_errors(*_USER, *_BODY, 404, 409)},
        auth="user",
        body=RelistTerms,
        description=(
            "The auction's seller (its creator, the vehicle's lister or owner), or a manager "
            "or an admin. New `start_time_ms` and `end_time_ms`; every term left out is the "
            "old auction's, checked as a create's (`reserve_price_kobo: null` removes the "
            "reserve). The new auction's creator is the old one's; it is a draft when a "
            "dealer relists (`scheduled`: 403 `approval_required`), scheduled when a manager "
            "or an admin does unless they ask for a `draft`. The old auction becomes "
            "`relisted`, in the same transaction. An auction that is not `unsold` (relisted "
            "already, say, by a relist that came first): 409 `not_unsold`."
        ),
    ),
    Operation(
        "GET",
        "/api/auctions/{id}/log",
        "The auction's public bid log and, once it ended, its signed result",
        "public",
        {200: LogBody, **_errors(404, 503, *_LIMITED)},
        description=(
            "Anyone may read it. Every accepted bid in `seq` order with its handle and "
            "`hash` (hex): SHA-256 over its canonical record and the hash before it "
            "(engine/bidlog.py gives the bytes), and `commitment`, the hex digest that binds "
            "its handle to a bidder (null for a reserve-protection bid). `result` is null "
            "until end processing signs it with Ed25519 (`key_id` names the key in "
            "`/api/log-keys`); `final_seq` and `head` are the last bid's `seq` and `hash`. "
            "`python -m engine verify-log URL` checks it all."
        ),
    ),
    Operation(
        "GET",
        "/api/auctions/{id}/log/me",
        "The opening that proves the caller's handle in that log is theirs",
        "public",
        {200: Opening, **_errors(401, 404, 503, *_LIMITED)},
        auth="user",
        description=(
            "For a bidder with a bid in the auction: their handle, user id and `nonce` "
            "(hex), so that anyone can compute the handle's `commitment` as the log shows "
            "it. Each bidder's nonce is derived from a secret the engine keeps per "
            "auction: one bidder's opening reveals nothing of another's. 404 `no_handle` "
            "for a caller with no bid there."
        ),
    ),
    Operation(
        "GET",
        "/api/log-keys",
        "The Ed25519 public keys the bid log's results are signed with, by key id",
        "public",
        {200: LogKeys, **_errors(503, *_LIMITED)},
        description=(
            "Every key any node of the engine ever signed a result with (a key id is the "
            "first 8 bytes of SHA-256 over its raw public key, hex); keys are never "
            "removed, so results signed before a key was rotated out stay verifiable."
        ),
    ),
    Operation(
        "GET",
        "/api/vehicles/{id}/similar",
        "Similar available vehicles, nearest first",
        "public",
        {200: SimilarVehicles, **_errors(404, 422, 503, *_LIMITED)},
        query=(
            Query(
                "limit",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": vehicles_api.MAX_LIMIT,
                    "default": vehicles_api.DEFAULT_LIMIT,
                },
                "At most this many vehicles.",
            ),
        ),
    ),
    Operation(
        "PUT",
        "/internal/users/{id}",
        "Create or update a user (201 created, 200 updated)",
        "internal",
        {200: UserEnvelope, 201: UserEnvelope, **_errors(*_SERVICE, *_BODY, 404, 409)},
        auth="service",
        body=UserUpsert,
    ),
    Operation(
        "GET",
        "/internal/users/{id}/wallet",
        "A user's wallet: balance, exposure, buying power, holds and dues",
        "internal",
        {200: WalletBody, **_errors(*_SERVICE, 404)},
        auth="service",
    ),
    Operation(
        "POST",
        "/internal/users/{id}/wallet/credits",
        "Credit a wallet (idempotent by `reference`: 201 new, 200 seen)",
        "internal",
        {200: WalletMovement, 201: WalletMovement, **_errors(*_SERVICE, *_BODY, 404, 409)},
        auth="service",
        body=WalletChange,
        description=(
            f"A wallet holds at most {money.MAX_KOBO} kobo: a credit past it is 422 "
            "`balance_limit`."
        ),
    ),
    Operation(
        "POST",
        "/internal/users/{id}/wallet/debits",
        "Withdraw from a wallet (409 committed_capital or insufficient_funds)",
        "internal",
        {200: WalletMovement, 201: WalletMovement, **_errors(*_SERVICE, *_BODY, 404, 409)},
        auth="service",
        body=WalletChange,
    ),
    Operation(
        "POST",
        "/internal/vehicles",
        "Register a vehicle (409 duplicate_vin names the vehicle that has the VIN)",
        "internal",
        {201: VehicleEnvelope, **_errors(*_SERVICE, *_BODY, 409)},
        auth="service",
        body=VehicleCreate,
        conflict=DuplicateVinEnvelope,
    ),
    Operation(
        "POST",
        "/internal/auctions",
        "Create an auction, as a draft or scheduled",
        "internal",
        {201: AuctionEnvelope, **_errors(*_SERVICE, *_BODY, 409)},
        auth="service",
        body=InternalAuctionCreate,
    ),
    Operation(
        "GET",
        "/internal/auctions/{id}/bids",
        "An auction's full bid history with real user ids, oldest first",
        "internal",
        {200: BidHistory, **_errors(*_SERVICE, 404)},
        auth="service",
    ),
    Operation(
        "GET",
        "/internal/cluster",
        "The engine's nodes and the lease of every partition",
        "internal",
        {200: ClusterBody, **_errors(*_SERVICE)},
        auth="service",
        description=(
            "`node`: the node answering. `nodes`: every registered node, `alive` while "
            "its row is renewed. `partitions`: each partition's owner, the epoch of that "
            "ownership (grows at every take) and when the lease lapses unless renewed "
            "(`free`: nobody holds it now), as the database has them."
        ),
    ),
    Operation(
        "POST",
        "/internal/auctions/{id}/payments",
        "A settlement payment (idempotent by `reference`: 201 new, 200 seen)",
        "settlement",
        {
            200: payments.PaymentReceipt,
            201: payments.PaymentReceipt,
            **_errors(*_SERVICE, *_BODY, 404, 409),
        },
        auth="service",
        body=PaymentRequest,
    ),
    Operation(
        "GET",
        "/internal/auctions/{id}/settlement",
        "Where an auction's settlement stands",
        "settlement",
        {200: SettlementEnvelope, **_errors(*_SERVICE, 404)},
        auth="service",
    ),
    Operation(
        "GET",
        "/internal/admin/revenue",
        "Revenue by UTC day: GMV, commissions, forfeited deposits, auctions sold and unsold",
        "admin",
        {200: RevenueBody, **_errors(*_SERVICE, 422)},
        auth="service",
        query=(
            Query(
                "from_ms",
                {"type": "integer", "minimum": 0, "maximum": bidcore.MAX_TIME_MS - 1},
                "The range's start (included), ms since the Unix epoch.",
                required=True,
            ),
            Query(
                "to_ms",
                {"type": "integer", "minimum": 1, "maximum": bidcore.MAX_TIME_MS},
                f"The range's end (excluded): after `from_ms`, at most {MAX_DAYS} days later.",
                required=True,
            ),
        ),
        description=(
            "From the ledger, to the kobo. `gmv_kobo`: the price of every sale settled (its "
            "offer paid) in the range, on the day it was paid; `commissions_kobo`: the "
            "platform's commission on those (the `commission_rates` row `auction_sale`, "
            "fixed when the auction ended; floor of price × rate); "
            "`forfeited_deposits_kobo`: deposits forfeited on missed payment deadlines; "
            "`sold`: those sales; `unsold`: auctions that became unsold. Every UTC day the "
            "range touches is in `days`, oldest first, empty ones with zeros; a range that "
            "starts or ends inside a day counts only what falls inside it. A missing or "
            "malformed bound, `from_ms` not before `to_ms`, or more than "
            f"{MAX_DAYS} days: 422 `invalid_range`."
        ),
    ),
    Operation(
        "GET",
        "/internal/admin/commission-rates",
        "The platform's commission rates: every row of commission_rates",
        "admin",
        {200: CommissionRateList, **_errors(*_USER)},
        auth="user_or_service",
        description=(
            "The platform's service token (as the revenue report), or a manager's or an "
            "admin's JWT (anyone else: 403). Every row, by `service_type`: rates as decimal "
            "strings (`0.0350` is 3.5 %), `min_rate` and `max_rate` null when unbounded, "
            "`rules` as stored, who last set it and when (`updated_at_ms`). The engine reads "
            f"`{commission.SERVICE_TYPE}` for an auction's sale: the most specific matching "
            "rule's rate, else `base_rate`, within the bounds, as it stood when the auction "
            "ended."
        ),
    ),
    Operation(
        "PUT",
        "/internal/admin/commission-rates/{service_type}",
        "Set a service type's commission rates (an admin's JWT)",
        "admin",
        {200: CommissionRateEnvelope, **_errors(*_USER, *_BODY, 404)},
        auth="user",
        body=CommissionRateRequest,
        path_parameters=(
            Query(
                "service_type",
                {"type": "string", "enum": list(commission.SERVICE_TYPES)},
                "A service type the engine reads a rate for (else 404 `unknown_service_type`).",
            ),
        ),
        description=(
            "An admin's JWT only: a manager's is 403, the service token 401 (the audit log "
            "names the person). The whole row: a field left out is cleared (no bound, no "
            "rules). Applies to auctions that end after it; one that ended before keeps the "
            "rate of its end, even if it settles later. `reason` is required (≤ "
            f"{admin.MAX_REASON} characters). Rates are decimal strings (a JSON number is "
            "422 `invalid_rate`); `min_rate` ≤ `base_rate` ≤ `max_rate` where given (else "
            "422 `invalid_rate_bounds`). Each rule's rate within the bounds, `from_ms` before "
            "`until_ms`, `until_ms` after now, and each rule must set the rate of some "
            "auction: not beaten wherever it matches by an earlier rule as specific or by a "
            "more specific one (else 422 `invalid_rule`, naming the rule). One transaction "
            "with its audit row (old and new row, the admin, the reason, the IP address). "
            "Answers with the row as stored."
        ),
    ),
    *(_admin_operation(name) for name in ACTIONS),
)


# ---- what the structs cannot say --------------------------------------------------


def _integer(low: int | None = None, high: int | None = None) -> Json:
    schema: Json = {"type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def _one_of(values: Iterable[str]) -> Json:
    return {"type": "string", "enum": list(values)}


_WHITESPACE = f"[{text.WHITESPACE}]"


def _text(max_length: int, *, required: bool, controls: str = text.CONTROL_CHARACTERS) -> Json:
    """Text the engine trims (engine.text.check_text): at most `max_length` characters
    as sent, no control character once the surrounding whitespace (what `str.strip()`
    trims) is gone, and with `required`, something left."""
    kept = f"[^{text.WHITESPACE}{controls}]"  # not trimmed, and allowed anywhere
    core = f"[^{controls}]*{kept}"  # from the first such character to the last
    middle = core if required else f"(?:{core})?"
    return {
        "type": "string",
        "maxLength": max_length,
        "pattern": f"^{_WHITESPACE}*{middle}{_WHITESPACE}*$",
    }


def _described(schema: Json, description: str) -> Json:
    return {**schema, "description": description}


_EMAIL_PART = f"[^@{text.WHITESPACE}{text.CONTROL_CHARACTERS}]+"
_EMAIL: Json = {
    "type": "string",
    "maxLength": users.EMAIL_MAX_LENGTH,
    "pattern": f"^{_WHITESPACE}*{_EMAIL_PART}@{_EMAIL_PART}{_WHITESPACE}*$",
    "description": "One `@` between two parts without spaces, like `a@b.ng` (trimmed).",
}
_VIN: Json = {
    "type": "string",
    "pattern": f"^{_WHITESPACE}*[A-HJ-NPR-Za-hj-npr-z0-9]{{{vehicles.VIN_LENGTH}}}{_WHITESPACE}*$",
    "description": (
        "17 characters from A–H, J–N, P, R–Z and 0–9 (no I, O or Q), upper-cased on entry; "
        "surrounding whitespace is trimmed. No check digit is required."
    ),
}
_REFERENCE = _described(
    _text(references.MAX_REFERENCE, required=True),
    "The payment provider's reference (trimmed); the same one again is the same request.",
)
_AMOUNT = _integer(1, money.MAX_KOBO)
_KNOWN_USER = "A user the engine knows (else 422 `unknown_user`)."
_AUCTION_TERMS: dict[str, Json] = {
    "vehicle_id": _described(
        UUID,
        "A vehicle the engine knows (else 422 `unknown_vehicle`), neither sold nor in an "
        "auction that has not finished (else 409).",
    ),
    "start_time_ms": _integer(0, bidcore.MAX_TIME_MS - 1),
    "end_time_ms": _described(
        _integer(1, bidcore.MAX_TIME_MS),
        "After `start_time_ms`, and after now (else 422 `invalid_times`).",
    ),
    "start_price_kobo": _AMOUNT,
    "reserve_price_kobo": _described(
        _AMOUNT, "Required by a `reserve` auction, refused by a `no_reserve` one."
    ),
    "bid_increment_kobo": _AMOUNT,
    "auction_type": _one_of(auctions.AUCTION_TYPES),
    "deposit_pct_bp": _integer(0, 10_000),
    "anti_snipe_window_ms": _integer(0, auctions.MAX_ANTI_SNIPE_MS),
    "anti_snipe_extension_ms": _integer(0, auctions.MAX_ANTI_SNIPE_MS),
    "if_bid_window_ms": _integer(1, ifbid.MAX_WINDOW_MS),
    "counter_window_ms": _integer(1, ifbid.MAX_WINDOW_MS),
}


def _when_type(auction_type: str, then: Json) -> Json:
    return {
        "if": {
            "properties": {"auction_type": {"const": auction_type}},
            "required": ["auction_type"],
        },
        "then": then,
    }


# A `reserve` auction names its reserve price (else 422 `reserve_required`); a
# `no_reserve` one has none (else 422 `reserve_not_allowed`).
_RESERVE_RULE: Json = {
    "allOf": [
        _when_type(
            "reserve",
            {
                "properties": {"reserve_price_kobo": {"type": "integer"}},
                "required": ["reserve_price_kobo"],
            },
        ),
        _when_type("no_reserve", {"properties": {"reserve_price_kobo": {"type": "null"}}}),
    ]
}
_RATE: Json = {
    "type": "string",
    "pattern": f"^{commission_rates.RATE_FORM}$",
    "description": 'A decimal string from "0" to "1", at most four decimals ("0.0350" is 3.5 %).',
}
_REASON = _described(
    _text(admin.MAX_REASON, required=True, controls=text.MULTILINE_CONTROL_CHARACTERS),
    "Why (kept in the audit log, trimmed); new lines and tabs are fine.",
)


@dataclass(frozen=True, slots=True)
class Rules:
    """What a request body's struct cannot say and the domain checks, each with its own
    code: per field, the schema merged into the field's (into its non-null branch);
    fields replaced outright; fields required besides the struct's own; rules across
    fields (merged into the object's schema); and the body's schema made from another
    struct's (`like`)."""

    fields: Mapping[str, Json] = field(default_factory=dict)
    replace: Mapping[str, Json] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    across: Json = field(default_factory=dict)
    like: str | None = None


def _rules(latest_year: int) -> dict[str, Rules]:
    """Per request body's schema (by name), its rules; `latest_year` is a vehicle's
    latest model year (it moves with the calendar)."""
    action = Rules(replace={"reason": _REASON}, required=("reason",))
    return {
        "CommissionRateRequest": Rules(
            replace={
                "base_rate": _RATE,
                "min_rate": _described(
                    {"anyOf": [_RATE, {"type": "null"}]},
                    "At most `base_rate`; left out or null: no lower bound.",
                ),
                "max_rate": _described(
                    {"anyOf": [_RATE, {"type": "null"}]},
                    "At least `base_rate` (and `min_rate`); left out or null: no upper bound.",
                ),
                "rules": {
                    "type": "array",
                    "items": {"$ref": REF.format(name="CommissionRule")},
                    "maxItems": commission_rates.MAX_RULES,
                    "default": [],
                    "description": (
                        "Overrides of `base_rate`: the most specific that matches an auction "
                        "(its creator's role and its vehicle's body type over either, over "
                        "none; the first listed among equals) sets its rate."
                    ),
                },
                "reason": _REASON,
            },
            required=("reason",),
        ),
        "CommissionRateBody": Rules(
            replace={
                "rules": {
                    "description": (
                        "The overrides as stored: set through the API, a list of "
                        "CommissionRule with each rate to four decimals and no null field; "
                        "a value written in SQL is shown as it is."
                    )
                }
            }
        ),
        "CommissionRule": Rules(
            replace={
                "rate": _described(_RATE, "Within `min_rate`..`max_rate` where given."),
                "seller_role": _described(
                    {"anyOf": [_one_of(commission_rates.RULE_ROLES), {"type": "null"}]},
                    "The auction's creator's role; left out or null: any.",
                ),
                "body_type": _described(
                    {
                        "anyOf": [
                            _text(commission_rates.BODY_TYPE_MAX, required=True),
                            {"type": "null"},
                        ]
                    },
                    "The vehicle's body type, compared without case (trimmed); left out or "
                    "null: any.",
                ),
                "from_ms": _described(
                    {"anyOf": [_integer(0, bidcore.MAX_TIME_MS), {"type": "null"}]},
                    "For auctions ending at or after it; before `until_ms`.",
                ),
                "until_ms": _described(
                    {"anyOf": [_integer(0, bidcore.MAX_TIME_MS), {"type": "null"}]},
                    "For auctions ending before it; after now.",
                ),
            }
        ),
        "BidRequest": Rules(
            fields={
                # Raw in the struct, so that a wrong amount gets the rule's `invalid_amount`.
                "amount_kobo": _integer(1, money.MAX_KOBO),
                "client_bid_id": {
                    "type": "string",
                    "pattern": f"^{public_api.CLIENT_BID_ID.pattern}$",
                },
                "auction_id": _described(UUID, "A live auction's id (else 409)."),
            }
        ),
        "MaxRequest": Rules(
            fields={
                "max_kobo": _integer(1, money.MAX_KOBO),  # raw in the struct, as a bid's
                "client_bid_id": {
                    "type": "string",
                    "pattern": f"^{public_api.CLIENT_BID_ID.pattern}$",
                },
            }
        ),
        "RelistTerms": Rules(
            fields={
                **{
                    name: schema
                    for name, schema in _AUCTION_TERMS.items()
                    if name not in ("vehicle_id", "start_price_kobo", "reserve_price_kobo")
                },
                "start_price_kobo": _AMOUNT,
                "reserve_price_kobo": _described(
                    _AMOUNT, "Left out: the old auction's; `null`: no reserve."
                ),
                "status": _described(
                    _one_of(("draft", "scheduled")),
                    "A dealer's relisted auction is a `draft` (`scheduled`: 403 "
                    "`approval_required`); a manager's or an admin's is `scheduled` unless it "
                    "says `draft`.",
                ),
            },  # the reserve's rules weigh the old auction's terms too: in the description
        ),
        "OfferRequest": Rules(
            replace={
                "action": _one_of(ifbid.ACTIONS),
                "amount_kobo": _described(
                    {"anyOf": [_integer(1, money.MAX_KOBO), {"type": "null"}]},
                    "A counter's amount (required by `counter`, refused by the others).",
                ),
            },
            across={
                "allOf": [
                    {
                        "if": {"properties": {"action": {"const": "counter"}}},
                        "then": {
                            "properties": {"amount_kobo": {"type": "integer"}},
                            "required": ["amount_kobo"],
                        },
                        "else": {"properties": {"amount_kobo": {"type": "null"}}},
                    }
                ]
            },
        ),
        "WalletChange": Rules(
            fields={"amount_kobo": _integer(1, money.MAX_KOBO), "reference": _REFERENCE}
        ),
        "PaymentRequest": Rules(
            fields={
                "payer_id": _described(
                    UUID,
                    "Optional: the user the provider says paid; the auction's open offer must "
                    "be theirs (else 409 `not_the_buyer`). Without it the payment is the open "
                    "offer's buyer's, unless the offer moved to another bidder after a default "
                    "(409 `payer_required`).",
                ),
                "amount_kobo": _integer(1, money.MAX_KOBO),
                "reference": _described(
                    _text(references.MAX_REFERENCE, required=True),
                    "The payment provider's reference (trimmed); the same one again is the "
                    "same payment. One namespace with wallet credits and withdrawals: a "
                    "reference used for one of those is refused (409 `reference_conflict`).",
                ),
            }
        ),
        "UserUpsert": Rules(
            fields={
                "email": _EMAIL,
                "role": _one_of(users.ROLES),
                "kyc_status": _one_of(users.KYC_STATUSES),
                "display_name": _text(users.DISPLAY_NAME_MAX_LENGTH, required=False),
            }
        ),
        "VehicleCreate": Rules(
            fields={
                "vin": _VIN,
                "year": _integer(vehicles.FIRST_CAR_YEAR, latest_year),
                "mileage_km": _integer(0, vehicles.MAX_MILEAGE_KM),
                "price_kobo": _integer(0, money.MAX_KOBO),
                "condition": _one_of(vehicles.CONDITIONS),
                "listed_by": _described(UUID, _KNOWN_USER),
                "owner_id": _described(UUID, _KNOWN_USER),
                **{
                    name: _text(limit, required=name in ("make", "model"))
                    for name, limit in vehicles.TEXT_LIMITS.items()
                },
            }
        ),
        "InternalAuctionCreate": Rules(
            fields={
                **_AUCTION_TERMS,
                "status": _one_of(("draft", "scheduled")),
                "created_by": _described(
                    UUID,
                    "An active dealer (KYC approved), manager or admin the engine knows "
                    "(else 422 `unknown_user` or `creator_not_allowed`, 409 `kyc_required`).",
                ),
            },
            across=_RESERVE_RULE,
        ),
        "PublicAuctionCreate": Rules(
            fields={
                **_AUCTION_TERMS,
                "status": _described(
                    _one_of(("draft", "scheduled")),
                    "A dealer's auction is a `draft` (`scheduled`: 403 `approval_required`); "
                    "a manager's or an admin's is `scheduled` unless it says `draft`.",
                ),
            },
            across=_RESERVE_RULE,
        ),
        "ActionRequest": Rules(
            replace={
                **action.replace,
                "end_time_ms": _described({"type": "null"}, "Only `extend` takes one."),
            },
            required=action.required,
        ),
        "ExtendRequest": Rules(
            like="ActionRequest",
            replace={
                **action.replace,
                "end_time_ms": _described(
                    {"type": "integer", "minimum": 1, "maximum": bidcore.MAX_TIME_MS},
                    "The new end (ms since the epoch): later than the auction's current end "
                    "and than now (else 422 `invalid_end_time`).",
                ),
            },
            required=(*action.required, "end_time_ms"),
        ),
    }


def _constrain(components: dict[str, Json], rules: Mapping[str, Rules]) -> None:
    for name, rule in rules.items():  # copies of the structs' own schemas, first
        if rule.like is not None:
            components[name] = {**copy.deepcopy(components[rule.like]), "title": name}
    for name, rule in rules.items():
        schema = components[name]
        properties = schema["properties"]
        for field_name, constraint in rule.fields.items():
            prop = properties[field_name]  # a KeyError: the struct lost a documented field
            nullable = [branch for branch in prop.get("anyOf", ()) if branch != {"type": "null"}]
            target = nullable[0] if nullable else prop
            if "type" in target and target["type"] != constraint["type"]:
                raise TypeError(f"{name}.{field_name} is {target['type']}, not {constraint}")
            merged = copy.deepcopy(constraint)
            if "description" in merged:  # the field's, null or not
                prop["description"] = merged.pop("description")
            target.update(merged)
        for field_name, replaced in rule.replace.items():
            if field_name not in properties:
                raise KeyError(f"{name} has no field {field_name}")
            properties[field_name] = copy.deepcopy(replaced)
        schema["required"] = sorted({*schema.get("required", ()), *rule.required})
        schema.update(copy.deepcopy(rule.across))


# ---- the document -------------------------------------------------------------------


def _structs() -> list[type[msgspec.Struct]]:
    found: dict[str, type[msgspec.Struct]] = {"ErrorEnvelope": ErrorEnvelope}
    for operation in OPERATIONS:
        kinds = [operation.body, operation.conflict, *operation.responses.values()]
        found.update({kind.__name__: kind for kind in kinds if kind is not None})
    return list(found.values())


def _ref(kind: type[msgspec.Struct]) -> Json:
    return {"$ref": REF.format(name=kind.__name__)}


def _response(operation: Operation, status: int, kind: type[msgspec.Struct] | None) -> Json:
    description = STATUS_TEXT.get(status, "")
    if status < 300 and operation.content != JSON:
        return {
            "description": description,
            "content": {operation.content: {"schema": {"type": "string"}}},
        }
    if kind is None:
        schema = _ref(ErrorEnvelope)
        if status == 409 and operation.conflict is not None:
            schema = {"anyOf": [_ref(operation.conflict), schema]}
    else:
        schema = _ref(kind)
    response: Json = {"description": description, "content": {JSON: {"schema": schema}}}
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def _parameters(operation: Operation) -> list[Json]:
    parameters: list[Json] = []
    if "{id}" in operation.path:
        parameters.append(
            {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": dict(UUID),
                "description": "A UUID.",
            }
        )
    for place, given in (("path", operation.path_parameters), ("query", operation.query)):
        for query in given:
            parameters.append(
                {
                    "name": query.name,
                    "in": place,
                    "required": query.required or place == "path",
                    "schema": copy.deepcopy(query.schema),
                    "description": query.description,
                }
            )
    return parameters


_SECURITY: dict[Auth | None, list[Json]] = {
    None: [],
    "user": [{"bearerJWT": []}],
    "service": [{"serviceToken": []}],
    "user_or_service": [{"bearerJWT": []}, {"serviceToken": []}],
}


def _operation_id(operation: Operation) -> str:
    words = re.findall(r"[a-z]+", operation.path.replace("{id}", "by id"))
    return "_".join([operation.method.lower(), *words])


def _operation(operation: Operation) -> Json:
    document: Json = {
        "operationId": _operation_id(operation),
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": _SECURITY[operation.auth],
        "responses": {
            str(status): _response(operation, status, kind)
            for status, kind in sorted(operation.responses.items())
        },
    }
    if operation.description:
        document["description"] = operation.description
    if parameters := _parameters(operation):
        document["parameters"] = parameters
    if operation.body_name is not None:
        document["requestBody"] = {
            "required": operation.body_required,
            "content": {JSON: {"schema": {"$ref": REF.format(name=operation.body_name)}}},
        }
    return document


def build_document(latest_year: int | None = None) -> Json:
    """The whole document, as a JSON-ready dict; `latest_year`: the latest model year a
    vehicle may have (default: now's, engine.vehicles.latest_year)."""
    if latest_year is None:
        latest_year = vehicles.latest_year(time.time_ns() // 1_000_000)
    _, components = msgspec.json.schema_components(_structs(), ref_template=REF)
    _constrain(components, _rules(latest_year))
    paths: dict[str, Json] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dealer360 auction engine",
            "version": "1",
            "description": (
                "Amounts are integer kobo in fields ending `_kobo`; times integer ms since the "
                "Unix epoch in fields ending `_ms`; ids UUID strings. An integer may be written "
                "as any JSON number whose value is whole (`1e3`, `152655220.0`), as JSON Schema "
                "counts it; `1.5` is refused. Every error is "
                '`{"error": {"code", "message"}}`; besides the statuses listed per operation, '
                "an unknown address answers 404 `not_found` and a method an address does not "
                "take 405 `method_not_allowed`, its `Allow` header naming the methods it takes. "
                "The auction rooms are a WebSocket at "
                "`/ws/auctions/{id}` (API.md), outside this document."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerJWT": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "HS256 with JWT_SECRET; claims `sub` (user id) and `exp`. Role and KYC "
                        "come from the engine's users row, never from the token."
                    ),
                },
                "serviceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The platform's INTERNAL_API_TOKEN (`/internal/*`).",
                },
            },
        },
    }


def find_operation(method: str, path: str) -> Operation | None:
    """The documented operation for a method and a route's path template."""
    for operation in OPERATIONS:
        if (operation.method, operation.path) == (method.upper(), path):
            return operation
    return None


@functools.lru_cache(maxsize=2)
def _encoded(latest_year: int) -> bytes:
    return msgspec.json.encode(build_document(latest_year))


async def openapi_json(request: web.Request) -> web.Response:
    """The document, made again only when the calendar moves a vehicle's latest year."""
    latest_year = vehicles.latest_year(request.app[CLOCK].now_ms())
    return web.Response(body=_encoded(latest_year), content_type=JSON)


def install(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
