"""The writer's lookup of each auction's leader (ledger_clear_leaders, sql/0014)
walks bids_auction_seq_key whatever the size of `bids` when its plan was made:
PL/pgSQL keeps a generic plan, and one made on a nearly empty table would read
every bid on every batch once the table has grown (sql/0021)."""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg


async def _generic_plan(conn: asyncpg.Connection, *, with_function_settings: bool) -> str:
    source, settings = await conn.fetchrow(
        "SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'ledger_clear_leaders'"
    )
    select = re.search(r"SELECT array_agg.*?;", source, re.S)
    assert select, source
    query = select.group(0).rstrip(";").replace(" INTO leaders", "")
    query = query.replace("p_auctions", "$1::uuid[]")
    # The plan kept for a prepared statement, made without its parameters' values
    # (EXPLAIN shows it for a statement prepared in SQL).
    await conn.execute("PREPARE leaders AS " + query)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            for setting in settings or [] if with_function_settings else []:
                name, value = setting.split("=", 1)
                await conn.execute("SELECT set_config($1, $2, true)", name, value)
            raw = await conn.fetchval("EXPLAIN (FORMAT JSON) EXECUTE leaders('{}')")
    finally:
        await conn.execute("DEALLOCATE leaders")
    document: Any = json.loads(raw)
    return json.dumps(document)


async def test_leader_lookup_uses_the_index_on_a_small_analysed_table(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM bids") == 0
        await conn.execute("ANALYZE bids")  # the planner knows the table is small
        plan = await _generic_plan(conn, with_function_settings=True)

    assert '"Index Name": "bids_auction_seq_key"' in plan
    assert "Seq Scan" not in plan and '"Node Type": "Sort"' not in plan


async def test_without_the_functions_settings_that_plan_would_read_the_table(
    pool: asyncpg.Pool,
) -> None:
    """The premise of sql/0021: the planner's generic choice on a small table."""
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE bids")
        plan = await _generic_plan(conn, with_function_settings=False)

    assert '"Relation Name": "bids"' in plan and "Seq Scan" in plan
