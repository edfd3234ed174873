"""The public auction list, which guests may ask for as often as they like, walks
an index in the list's own order and stops at the page's limit: its plan has an
index scan on auctions and no sort, whatever the status asked for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine import auctions
from engine.auctions import PUBLIC_STATUSES
from web.public_api import LIST_LIMIT

#: Enough auctions in every status that reading them all and sorting them is
#: not what the planner would do for one page (a few hundred in each).
AUCTIONS = 6_000
#: Every listed status and a draft; a cancelled auction in two is one that was
#: never public (the list must skip it).
STATUSES = [*PUBLIC_STATUSES, "draft"]

_FILL = """
WITH lister AS (
  INSERT INTO users (email, role) VALUES ('lister@example.test', 'dealer') RETURNING id
), vehicle AS (
  INSERT INTO vehicles (vin, year, make, model, listed_by)
  SELECT 'JTD' || lpad(n::text, 14, '0'), 2019, 'Toyota', 'Camry', lister.id
  FROM generate_series(1, $1::int) AS n, lister
  RETURNING id, listed_by, vin
)
INSERT INTO auctions (vehicle_id, created_by, status, start_price, start_time, end_time,
                      published_at)
SELECT v.id, v.listed_by, s.status, 1000, now(),
       -- end times spread over a year, in no relation to the rows' order
       now() + ((n * 7919) % 525600 + 1) * interval '1 minute',
       CASE WHEN s.status = 'cancelled' AND n % 2 = 0 THEN NULL
            WHEN s.status = 'draft' THEN NULL ELSE now() END
FROM (SELECT id, listed_by, substr(vin, 4)::int AS n FROM vehicle) AS v,
     LATERAL (SELECT ($2::text[])[1 + v.n % cardinality($2::text[])] AS status) AS s
"""


class Explaining:
    """Stands in for the pool: each query the list runs is explained, not run.

    `generic`: the plan made without the parameters' values, which PostgreSQL may
    keep for a prepared statement (asyncpg prepares every query) after five runs;
    EXPLAIN shows it only for a statement prepared in SQL, whose EXECUTE takes
    its values as literals."""

    def __init__(self, conn: Any, *, generic: bool) -> None:
        self.conn = conn
        self.generic = generic
        self.plans: list[dict[str, Any]] = []

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        if self.generic:
            raw = await self._explain_generic(query, args)
        else:
            raw = await self.conn.fetchval("EXPLAIN (FORMAT JSON) " + query, *args)
        document = json.loads(raw) if isinstance(raw, str) else raw
        self.plans.append(document[0]["Plan"])
        return []

    async def _explain_generic(self, query: str, args: tuple[Any, ...]) -> Any:
        quote = "SELECT quote_literal($1::text)"
        literals = [await self.conn.fetchval(quote, str(arg)) for arg in args]
        await self.conn.execute("PREPARE list_page AS " + query)
        try:
            async with self.conn.transaction():
                await self.conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                return await self.conn.fetchval(
                    f"EXPLAIN (FORMAT JSON) EXECUTE list_page({', '.join(literals)})"
                )
        finally:
            await self.conn.execute("DEALLOCATE list_page")


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.fixture
async def filled(pool: Any) -> Any:
    async with pool.acquire() as conn:
        await conn.execute(_FILL, AUCTIONS, STATUSES)
        await conn.execute("ANALYZE auctions")
        await conn.execute("ANALYZE vehicles")
    return pool


@pytest.mark.parametrize("plan", ["custom", "generic"])
@pytest.mark.parametrize("status", PUBLIC_STATUSES)
async def test_a_page_of_the_list_walks_an_auctions_index_without_sorting(
    filled: Any, status: str, plan: str
) -> None:
    async with filled.acquire() as conn:
        explaining = Explaining(conn, generic=plan == "generic")
        await auctions.list_auctions(explaining, status, LIST_LIMIT)

    [explained] = explaining.plans
    assert explained["Node Type"] == "Limit"
    types = [node["Node Type"] for node in nodes(explained)]
    assert not [t for t in types if "Sort" in t], types  # Sort or Incremental Sort
    [scan] = [node for node in nodes(explained) if node.get("Relation Name") == "auctions"]
    assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), types
