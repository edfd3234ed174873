"""schemathesis against the whole HTTP API, driven by the engine's own /openapi.json,
as `st run --checks all` runs it: every phase (the schema's examples, the coverage
of each bound and each unexpected method, random valid and invalid data) and every
check — no answer is a 5xx, every status, content type, body and header is the
documented one, a request the document calls valid is accepted (or refused only
for the state it meets: 401, 403, 404, 409), one it calls invalid is refused, a
405 names what is allowed. The server is the real app on 127.0.0.1 with PostgreSQL
and users, vehicles and auctions in it; internal operations carry the service token,
public ones a bidder's JWT (a dealer's to create an auction), staff actions a
manager's, setting a commission rate an admin's; rate limits are lifted.

schemathesis sends with `requests` (blocking), so it runs in a worker thread
while the app answers on the test's event loop.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from tests.http_helpers import HOUR_MS, PRICE, SERVICE_TOKEN, STEP, Api, now_ms, start, token_for

EXAMPLES = 50  # per operation and phase: the whole run takes well under a minute
RUN_BOUND_S = 150  # "a couple of minutes at most", with room for a busy machine


@dataclass
class Seeded:
    """What exists in the ledger, so that generated ids name something."""

    users: list[uuid.UUID]  # every user, any role
    creators: list[uuid.UUID]  # users who may create auctions (dealer, manager, admin)
    vehicles: list[uuid.UUID]  # the internal API's vehicles
    dealer_vehicles: list[uuid.UUID]  # the dealer's own
    auctions: list[uuid.UUID]
    bidder_token: str
    dealer_token: str
    staff_token: str  # a manager's
    admin_token: str


async def seed(api: Api) -> Seeded:
    manager = await api.user(role="manager")
    admin = await api.user(role="admin")
    bidder, rival = await api.bidder(), await api.bidder()
    dealer = await api.seller()
    live = await api.live_auction(dealer)
    assert (await api.bid(bidder, live, PRICE)).status == 201
    assert (await api.bid(rival, live, PRICE + STEP)).status == 201
    won = await api.live_auction(dealer)
    assert (await api.bid(bidder, won, PRICE)).status == 201
    ended = await api.as_user(
        manager, "POST", f"/internal/admin/auctions/{won}/force-end", {"reason": "seed"}
    )
    assert ended.status == 200, ended.text
    draft = await api.create_auction(dealer, status="draft")
    assert draft.status == 201, draft.text
    vehicles = [await api.vehicle(manager) for _ in range(5)]
    dealer_vehicles = [await api.vehicle(dealer) for _ in range(3)]
    auctions = [live, won, uuid.UUID(draft.body["auction"]["id"])]
    return Seeded(
        users=[manager, admin, bidder, rival, dealer],
        creators=[manager, admin, dealer],
        vehicles=vehicles,
        dealer_vehicles=dealer_vehicles,
        auctions=auctions,
        bidder_token=token_for(bidder),
        dealer_token=token_for(dealer, "dealer"),
        staff_token=token_for(manager, "manager"),
        admin_token=token_for(admin, "admin"),
    )


# ---- the ids a request names ----------------------------------------------------------------


def naming_known_ids(document: dict[str, Any], seeded: Seeded) -> dict[str, Any]:
    """The document with every UUID a request carries drawn from what exists.

    A path names a seeded id or an unknown one (404 is the documented answer). A
    body names what its field refers to — a vehicle, an auction, a user, a creator
    — which the document can only say in words: an id that names nothing there is
    refused with 422 (`unknown_vehicle`, `unknown_user`), the state the request
    meets and not its shape. Users to create or update are fresh ids, so that the
    tokens' own users keep their roles. Responses keep their own schemas.
    """
    document = copy.deepcopy(document)
    known = [*seeded.users, *seeded.vehicles, *seeded.auctions, uuid.uuid4()]
    by_field = {
        "vehicle_id": seeded.vehicles + seeded.dealer_vehicles,
        "auction_id": seeded.auctions,
        "created_by": seeded.creators,
        "listed_by": seeded.users,
        "owner_id": seeded.users,
    }
    bodies = set()
    for path, item in document["paths"].items():
        for operation in item.values():
            ids = [uuid.uuid4() for _ in range(3)] if path == "/internal/users/{id}" else known
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "path" and parameter["name"] == "id":
                    parameter["schema"] = _enum(ids)
            if body := operation.get("requestBody"):
                bodies.add(body["content"]["application/json"]["schema"]["$ref"].split("/")[-1])
    schemas = document["components"]["schemas"]
    for name in bodies:
        for prop_name, prop in schemas[name]["properties"].items():
            if prop_name in by_field:
                schemas[name]["properties"][prop_name] = _known(prop, by_field[prop_name])
    return document


def _enum(ids: list[uuid.UUID]) -> dict[str, Any]:
    return {"type": "string", "enum": [str(known) for known in ids]}


def _known(node: Any, ids: list[uuid.UUID]) -> Any:
    if isinstance(node, list):
        return [_known(item, ids) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "uuid":
        return _enum(ids)
    return {key: _known(value, ids) for key, value in node.items()}


# ---- what a valid request must also meet: the state it finds ------------------------------


class StateRules:
    """A `before_call` hook: the rules the document can only state in words, because
    they depend on the time or on what the ledger holds, met by every request that
    is valid by the document (schemathesis's positive data) as it is sent; invalid
    ones go as generated. This is the one thing the run leaves out: a valid request
    is never sent with

    - an auction's `end_time_ms` not after its `start_time_ms` and now (422
      `invalid_times`): a start in the future is moved to just before now, and the
      end to an hour after the start or now, whichever is later;
    - an extension's `end_time_ms` not later than the auction's current end and now
      (422 `invalid_end_time`): each is later than every end the run has set;
    - a credit past what a wallet may hold, 10^15 − 1 kobo after it (422
      `balance_limit`): a credit is at most 10^12 kobo, so that the run's few hundred
      requests never fill a wallet;
    - a revenue report's `to_ms` not after its `from_ms`, or more than 366 days after
      it (422 `invalid_range`): it becomes a day after `from_ms` (within the last time
      there is);
    - commission rates out of order (422 `invalid_rate_bounds`) or rules the engine
      would not use as written (422 `invalid_rule`: one beaten by another wherever it
      matches, a rate outside the bounds, a window that has passed): the rates are
      put in order, and the first rule alone is kept, at the base rate, its window
      ending an hour from now at the earliest.
    """

    def __init__(self) -> None:
        self._extensions = itertools.count(1)

    def __call__(self, context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        if case.meta is None or not case.meta.generation.mode.is_positive:
            return
        path = case.operation.path
        if path == "/internal/admin/revenue" and isinstance(case.query, dict):
            _a_range(case.query)
        if not isinstance(case.body, dict):
            return
        if path in ("/internal/auctions", "/api/auctions") or path.endswith("/relist"):
            _future_times(case.body)
        elif path.endswith("/extend") and _whole(case.body.get("end_time_ms")) is not None:
            case.body["end_time_ms"] = now_ms() + 2 * HOUR_MS + next(self._extensions) * 60_000
        elif path.endswith("/wallet/credits") and (amount := _whole(case.body.get("amount_kobo"))):
            case.body["amount_kobo"] = min(amount, MAX_CREDIT_KOBO)
        elif path.startswith("/internal/admin/commission-rates/"):
            _rates_in_order(case.body)


def _rates_in_order(body: dict[str, Any]) -> None:
    names = [name for name in ("min_rate", "base_rate", "max_rate") if body.get(name) is not None]
    if not all(isinstance(body[name], str) for name in names):
        return
    for name, rate in zip(names, sorted((body[name] for name in names), key=Decimal), strict=True):
        body[name] = rate
    rules = body.get("rules")
    if not isinstance(rules, list) or not rules or not isinstance(rules[0], dict):
        return
    rule = {**rules[0], "rate": body["base_rate"]}
    until = _whole(rule.get("until_ms"))
    if until is not None:
        rule["until_ms"] = until = max(until, now_ms() + HOUR_MS)
        start = _whole(rule.get("from_ms"))
        if start is not None and start >= until:
            rule["from_ms"] = until - 1
    body["rules"] = [rule]


MAX_CREDIT_KOBO = 10**12


def _whole(value: Any) -> int | None:
    """A JSON integer as schemathesis writes one: an int, or a float such as 2.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _a_range(query: dict[str, Any]) -> None:
    start, end = _query_int(query.get("from_ms")), _query_int(query.get("to_ms"))
    if start is None or end is None or start < end <= start + 366 * DAY_MS:
        return
    end = min(start + DAY_MS, MAX_TIME_MS)
    query["from_ms"], query["to_ms"] = min(start, end - 1), end


def _query_int(value: Any) -> int | None:
    """A query parameter's integer, as schemathesis writes one (an int or its digits)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return _whole(value)


DAY_MS = 86_400_000
MAX_TIME_MS = 253_402_300_799_999  # bidcore.MAX_TIME_MS


def _future_times(body: dict[str, Any]) -> None:
    start, end = _whole(body.get("start_time_ms")), _whole(body.get("end_time_ms"))
    if start is None or end is None:
        return
    now = now_ms()
    if start < end and end > now:
        return
    if start > now:
        start = now - 1000
    body["start_time_ms"], body["end_time_ms"] = start, max(start, now) + HOUR_MS


# ---- the run -----------------------------------------------------------------------------------


def config(base_url: str, seeded: Seeded) -> Any:
    from schemathesis.config import SchemathesisConfig

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return SchemathesisConfig.from_dict(
        {
            "seed": 20260101,  # the same requests every run: a failure reproduces
            "base-url": base_url,
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "checks": {"enabled": True},
            "request-timeout": 30,
            "operations": [
                {
                    "include-path-regex": "^/internal/admin/commission-rates/",
                    "headers": bearer(seeded.admin_token),
                },
                {
                    "include-path-regex": "^/internal/(?!admin/auctions/|admin/commission-rates/)",
                    "headers": bearer(SERVICE_TOKEN),
                },
                {
                    "include-path-regex": "^/internal/admin/auctions/",
                    "headers": bearer(seeded.staff_token),
                },
                {
                    "include-path": "/api/auctions",
                    "include-method": "POST",
                    "headers": bearer(seeded.dealer_token),
                },
                {"include-path-regex": "^/api/", "headers": bearer(seeded.bidder_token)},
            ],
        }
    )


@dataclass
class Outcome:
    failures: list[str] = field(default_factory=list)
    #: Per operation, the statuses its valid requests were answered with.
    answered: dict[str, set[int]] = field(default_factory=dict)


def run(document: dict[str, Any], base_url: str, seeded: Seeded) -> Outcome:
    """Every phase and check against every operation: the failures, described."""
    try:
        import schemathesis
    except ImportError:
        pytest.fail(
            "schemathesis is missing: it comes with the dev extra (pip install -e '.[dev]')"
        )
    from schemathesis.engine import events, from_schema
    from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

    schema = schemathesis.openapi.from_dict(
        naming_known_ids(document, seeded), config=config(base_url, seeded)
    )
    outcome = Outcome()
    # schemathesis takes `before_call` hooks only globally: this run's, for this run.
    rules = GLOBAL_HOOK_DISPATCHER.register_hook_with_name(StateRules(), "before_call")
    try:
        for event in from_schema(schema).execute():
            _take(event, events, outcome)
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(rules)
    outcome.failures = sorted(set(outcome.failures))
    return outcome


def _take(event: Any, events: Any, outcome: Outcome) -> None:
    """What an engine event tells: failed checks, errors, how the run stopped."""
    if isinstance(event, events.ScenarioFinished):
        outcome.failures.extend(_failed_checks(event.recorder))
        _record_answers(event.recorder, outcome.answered)
    elif isinstance(event, events.NonFatalError):
        outcome.failures.append(f"{event.label}: error {event.info.format()}")
    elif isinstance(event, events.FatalError):
        outcome.failures.append(f"fatal: {event.exception!r}")
    elif isinstance(event, events.EngineFinished):
        outcome.failures.extend(f"after the run: {f.message}" for f in event.failures)
        if event.stop_reason != "completed":
            outcome.failures.append(f"stopped: {event.stop_reason}")


def _failed_checks(recorder: Any) -> list[str]:
    """Each failed check: what was sent, what came back, what schemathesis expected."""
    found = []
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            failure = check.failure_info.failure
            case = recorder.cases[case_id].value
            response = recorder.find_response(case_id=case_id)
            answer = "no answer" if response is None else f"{response.status_code} {response.text}"
            found.append(
                f"{case.method} {case.formatted_path} [{check.name}] {failure.title}: "
                f"{failure.message}\n  sent: {case.body!r:.600}\n  got: {answer:.400}"
            )
    return found


def _record_answers(recorder: Any, answered: dict[str, set[int]]) -> None:
    for case_id, node in recorder.cases.items():
        case = node.value
        response = recorder.find_response(case_id=case_id)
        valid = case.meta is not None and case.meta.generation.mode.is_positive
        if valid and response is not None and case.method == case.operation.method.upper():
            answered.setdefault(case.operation.label, set()).add(response.status_code)


async def test_every_operation_takes_what_its_document_allows_and_refuses_the_rest(
    database_url: str, aiohttp_client: Any
) -> None:
    api = await start(
        aiohttp_client,
        database_url,
        rate_limit_ip_per_min=1_000_000,
        rate_limit_user_per_min=1_000_000,
    )
    seeded = await seed(api)
    document = (await api.call("GET", "/openapi.json")).body
    base_url = str(api.client.make_url("")).rstrip("/")

    started = time.monotonic()
    outcome = await asyncio.to_thread(run, document, base_url, seeded)
    elapsed = time.monotonic() - started

    assert not outcome.failures, "\n\n".join(outcome.failures)
    # Not a run that proved nothing: every operation was called with valid data,
    # and its caller's credentials got past authentication.
    operations = {
        f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
    }
    assert set(outcome.answered) == operations
    assert not [label for label, statuses in outcome.answered.items() if statuses <= {401}]
    assert elapsed < RUN_BOUND_S, elapsed
    assert (await api.call("GET", "/readyz")).status == 200
