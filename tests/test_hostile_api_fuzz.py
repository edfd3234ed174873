"""schemathesis against the whole HTTP API, driven by the engine's own /openapi.json:
valid and invalid requests to every operation, on the real app and database with
users, vehicles and auctions in it — no answer is a 5xx, every status is documented,
every body and header matches its schema, every invalid request is refused.

schemathesis sends with `requests` (blocking), so it runs in a worker thread
while the app answers on the test's event loop.
"""

from __future__ import annotations

import asyncio
import copy
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.http_helpers import PRICE, SERVICE_TOKEN, STEP, Api, start, token_for

EXAMPLES = 50  # per operation and mode: the whole run stays well under a minute


@dataclass
class Seeded:
    """What exists in the ledger, so that generated ids sometimes name something."""

    users: list[uuid.UUID]
    vehicles: list[uuid.UUID]
    auctions: list[uuid.UUID]
    staff_token: str  # an admin row: may bid, create auctions and act as staff


async def seed(api: Api) -> Seeded:
    admin = await api.user(role="admin", balance_kobo=10**12)
    bidder, rival = await api.bidder(), await api.bidder()
    seller = await api.seller()
    live = await api.live_auction(seller)
    assert (await api.bid(bidder, live, PRICE)).status == 201
    assert (await api.bid(rival, live, PRICE + STEP)).status == 201
    won = await api.live_auction(seller)
    assert (await api.bid(bidder, won, PRICE)).status == 201
    ended = await api.as_user(
        admin, "POST", f"/internal/admin/auctions/{won}/force-end", {"reason": "seed"}
    )
    assert ended.status == 200, ended.text
    draft = await api.create_auction(seller, status="draft")
    assert draft.status == 201, draft.text
    spare = await api.vehicle(seller, make="Honda", model="Accord")
    vehicles = [spare, uuid.UUID(draft.body["auction"]["vehicle_id"])]
    auctions = [live, won, uuid.UUID(draft.body["auction"]["id"])]
    return Seeded([admin, bidder, rival, seller], vehicles, auctions, token_for(admin, "admin"))


def fuzz(document: dict[str, Any], base_url: str, seeded: Seeded) -> list[str]:
    """Every operation, valid then invalid data; the failures, described."""
    try:
        import schemathesis
    except ImportError:
        pytest.fail(
            "schemathesis is missing: it comes with the dev extra (pip install -e '.[dev]')"
        )
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        ignored_auth,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    ids = (*seeded.users, *seeded.vehicles, *seeded.auctions, uuid.uuid4())
    known = [str(known) for known in ids]
    schema = schemathesis.openapi.from_dict(naming_known_ids(document, known))
    conformance = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Staff actions last: they end and cancel the seeded auctions.
    operations.sort(key=lambda operation: "/admin/" in operation.path)
    for operation in operations:
        headers = _auth_headers(operation.path, seeded)
        modes = [schemathesis.GenerationMode.POSITIVE]
        if _takes_input(document, operation):
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            positive = mode is schemathesis.GenerationMode.POSITIVE
            checks = [*conformance, ignored_auth if positive else negative_data_rejection]
            strategy = operation.as_strategy(generation_mode=mode, headers=headers)
            try:
                _run(strategy, base_url, headers, checks)
            except Exception:
                failures.append(f"{operation.label} ({mode.value}):\n{traceback.format_exc()}")
    return failures


def _takes_input(document: dict[str, Any], operation: Any) -> bool:
    """Whether anything of the request can be made invalid (a path, a query, a body)."""
    described = document["paths"][operation.path][operation.method.lower()]
    return bool(described.get("parameters") or described.get("requestBody"))


def _auth_headers(path: str, seeded: Seeded) -> dict[str, str]:
    if path.startswith("/internal/") and not path.startswith("/internal/admin/"):
        return {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    return {"Authorization": f"Bearer {seeded.staff_token}"}


def naming_known_ids(document: dict[str, Any], known: list[str]) -> dict[str, Any]:
    """The document with every UUID a request carries (in its path or its body) drawn
    from the seeded ids and one unknown id; responses keep their own schemas."""
    document = copy.deepcopy(document)
    requests = set()
    for path in document["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", ()):
                parameter["schema"] = _known(parameter["schema"], known)
            if body := operation.get("requestBody"):
                requests.add(body["content"]["application/json"]["schema"]["$ref"].split("/")[-1])
    schemas = document["components"]["schemas"]
    for name in requests:
        schemas[name] = _known(schemas[name], known)
    return document


def _known(node: Any, known: list[str]) -> Any:
    if isinstance(node, list):
        return [_known(item, known) for item in node]
    if not isinstance(node, dict):
        return node
    if node == {"type": "string", "format": "uuid"}:
        return {"type": "string", "enum": known}
    return {key: _known(value, known) for key, value in node.items()}


def _run(strategy: Any, base_url: str, headers: dict[str, str], checks: list[Any]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=strategy)
    def call(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=checks, timeout=30)

    call()


async def test_every_operation_answers_within_its_documented_schema(
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

    failures = await asyncio.to_thread(fuzz, document, base_url, seeded)

    assert not failures, "\n\n".join(failures)
    assert (await api.call("GET", "/readyz")).status == 200
