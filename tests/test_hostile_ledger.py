"""The ledger's fingerprint, which the hostile tests compare before and after what
they send: every table of the schema, row by row. It has to notice any change —
otherwise "unchanged" would prove nothing — and a refused request must leave it
as it was."""

from __future__ import annotations

from typing import Any

import pytest

from tests.http_helpers import PRICE, Api, start

Fingerprint = dict[str, tuple[int, str]]

_DIGEST = "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
_TABLES = "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public'"
#: Tables whose rows a running node renews every second whatever it is sent (its
#: leases' and its own liveness, engine/leases.py): fingerprinted by what a request
#: could change (who holds what, under which epoch; which nodes there are).
_RENEWED = {
    "partition_leases": "(SELECT id, owner, epoch FROM partition_leases)",
    "nodes": "(SELECT id, url FROM nodes)",
}


async def fingerprint(pool: Any) -> Fingerprint:
    """Each table's row count and a digest of its rows."""
    found: Fingerprint = {}
    for table in await pool.fetch(_TABLES + " ORDER BY 1"):
        # The name is the catalog's, quoted by PostgreSQL itself: never client input.
        name = table["name"]
        source = _RENEWED.get(name, name)
        query = f"SELECT count(*) AS rows, {_DIGEST} AS digest FROM {source} t"  # noqa: S608
        row = await pool.fetchrow(query)
        found[name] = (row["rows"], row["digest"])
    return found


def changed(before: Fingerprint, after: Fingerprint) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


async def test_every_table_of_the_schema_is_in_the_fingerprint(api: Api) -> None:
    tables = set(await fingerprint(api.pool))
    assert {"users", "vehicles", "auctions", "bids", "transactions", "admin_audit_log"} <= tables
    assert {"settlement_offers", "notifications", "vehicle_embeddings"} <= tables
    assert {"partition_leases", "nodes", "max_bids"} <= tables


async def test_a_lease_moving_shows_but_its_renewal_does_not(api: Api) -> None:
    before = await fingerprint(api.pool)
    await api.pool.execute("UPDATE partition_leases SET lease_until = now() + interval '1 h'")
    await api.pool.execute("UPDATE nodes SET alive_until = now() + interval '1 h'")
    assert changed(before, await fingerprint(api.pool)) == set()
    await api.pool.execute("UPDATE partition_leases SET epoch = epoch + 1 WHERE id = 0")
    assert changed(before, await fingerprint(api.pool)) == {"partition_leases"}


async def test_a_credit_shows_in_users_and_transactions(api: Api) -> None:
    user = await api.bidder(balance_kobo=0)
    before = await fingerprint(api.pool)
    assert (await api.credit(user, 1_000)).status == 201
    assert changed(before, await fingerprint(api.pool)) == {"users", "transactions"}


async def test_an_accepted_bid_shows_in_bids_and_auctions(api: Api) -> None:
    bidder = await api.bidder()
    auction = await api.live_auction()
    before = await fingerprint(api.pool)
    assert (await api.bid(bidder, auction, PRICE)).status == 201
    assert {"bids", "auctions"} <= changed(before, await fingerprint(api.pool))


async def test_a_refused_bid_and_reads_change_nothing(api: Api) -> None:
    bidder = await api.bidder()
    auction = await api.live_auction()
    before = await fingerprint(api.pool)
    assert (await api.bid(bidder, auction, PRICE - 1)).status == 409
    assert (await api.call("GET", f"/api/auctions/{auction}")).status == 200
    assert (await api.call("GET", "/api/auctions")).status == 200
    assert changed(before, await fingerprint(api.pool)) == set()
