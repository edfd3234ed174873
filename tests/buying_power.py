"""RULES.md's buying power, read from the ledger alone (CLUSTER.md invariant 3):
for every bidder, the deposits of what they lead (a leader with an active
maximum: `deposit(max)`) never exceed their wallet balance (holds have already
left it) — across every node. With allowances (engine/allowances.py) two finer
facts imply it, and are read too: the allowances together fit in the balance,
and each partition's leads fit in its allowance.

`check` reads one consistent snapshot. `install_commit_checks` makes
PostgreSQL itself run the same checks at the commit of every transaction that
writes a bid, an allowance or a balance (deferred constraint triggers that
record, never refuse), so a test can say "at every commit", not just "whenever
it looked"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

# Each lead of `$1` on an open auction, and each bid of theirs awaiting a seller's
# decision (what binds them: RULES.md, if-bid), with its partition and its deposit
# in kobo: deposit(a) = ceil(a * bp / 10000) with a in kobo and bp = deposit_pct * 100.
_LEADS = """
SELECT auction_partition(a.id, (SELECT partitions FROM cluster_settings)) AS partition,
       ceil(GREATEST(b.amount, COALESCE(m.max_amount, 0)) * 100 * (a.deposit_pct * 100)
            / 10000)::bigint AS deposit
FROM auctions a
JOIN bids b ON b.auction_id = a.id AND b.is_winning AND NOT b.is_platform_bid
LEFT JOIN LATERAL (
  SELECT max_amount FROM max_bids mb
  WHERE mb.auction_id = a.id AND mb.user_id = b.user_id ORDER BY position DESC LIMIT 1
) m ON true
WHERE b.user_id = $1 AND a.status IN ('live', 'ended')
UNION ALL
SELECT auction_partition(a.id, (SELECT partitions FROM cluster_settings)),
       ceil(d.bidder_amount * 100 * (a.deposit_pct * 100) / 10000)::bigint
FROM if_bids d JOIN auctions a ON a.id = d.auction_id
WHERE d.bidder_id = $1 AND d.state = 'open' AND a.status = 'seller_decision'
"""
_BALANCE = "SELECT (wallet_balance * 100)::bigint FROM users WHERE id = $1"
_ALLOWANCES = "SELECT partition, amount_kobo FROM allowances WHERE user_id = $1"


@dataclass(frozen=True)
class Standing:
    balance_kobo: int
    exposure_kobo: int
    allotted_kobo: int
    #: partition → (what its leads expose, its allowance)
    partitions: dict[int, tuple[int, int]]

    def problems(self, *, pooled: bool) -> list[str]:
        found = []
        if self.exposure_kobo > self.balance_kobo:
            found.append(f"deposits {self.exposure_kobo} > balance {self.balance_kobo}")
        if self.allotted_kobo > self.balance_kobo:
            found.append(f"allowances {self.allotted_kobo} > balance {self.balance_kobo}")
        if pooled:
            for partition, (exposed, allowed) in sorted(self.partitions.items()):
                if exposed > allowed:
                    found.append(f"partition {partition}: leads {exposed} > allowance {allowed}")
        return found


async def check(conn: Any, user_id: uuid.UUID) -> Standing:
    """The bidder's standing in one snapshot of the ledger."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        balance = await conn.fetchval(_BALANCE, user_id)
        leads = await conn.fetch(_LEADS, user_id)
        allowances = dict(await conn.fetch(_ALLOWANCES, user_id))
    partitions: dict[int, tuple[int, int]] = {p: (0, a) for p, a in allowances.items()}
    for lead in leads:
        exposed, allowed = partitions.get(lead["partition"], (0, 0))
        partitions[lead["partition"]] = (exposed + lead["deposit"], allowed)
    return Standing(
        balance_kobo=balance,
        exposure_kobo=sum(lead["deposit"] for lead in leads),
        allotted_kobo=sum(allowances.values()),
        partitions=partitions,
    )


_INSTALL = (
    """
CREATE TABLE IF NOT EXISTS buying_power_violations (
  user_id uuid, problem text, at timestamptz DEFAULT clock_timestamp()
)""",
    """
CREATE OR REPLACE FUNCTION buying_power_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  who uuid;
  balance bigint;
  exposed bigint;
  allotted bigint;
  over record;
BEGIN
  IF TG_TABLE_NAME = 'users' THEN
    who := NEW.id;
  ELSIF TG_TABLE_NAME = 'if_bids' THEN
    who := NEW.bidder_id;
  ELSIF TG_OP = 'DELETE' THEN
    who := OLD.user_id;
  ELSE
    who := NEW.user_id;
  END IF;
  SELECT (wallet_balance * 100)::bigint INTO balance FROM users WHERE id = who;
  SELECT COALESCE(sum(deposit), 0) INTO exposed FROM (LEADS) AS l;
  SELECT COALESCE(sum(amount_kobo), 0) INTO allotted FROM allowances WHERE user_id = who;
  IF exposed > balance THEN
    INSERT INTO buying_power_violations (user_id, problem)
    VALUES (who, format('deposits %s > balance %s', exposed, balance));
  END IF;
  IF allotted > balance THEN
    INSERT INTO buying_power_violations (user_id, problem)
    VALUES (who, format('allowances %s > balance %s', allotted, balance));
  END IF;
  IF allotted > 0 THEN  -- several nodes: each partition within its allowance
    FOR over IN
      SELECT l.partition, sum(l.deposit) AS exposed, COALESCE(max(w.amount_kobo), 0) AS allowed
      FROM (LEADS) AS l
      LEFT JOIN allowances w ON w.user_id = who AND w.partition = l.partition
      GROUP BY l.partition HAVING sum(l.deposit) > COALESCE(max(w.amount_kobo), 0)
    LOOP
      INSERT INTO buying_power_violations (user_id, problem)
      VALUES (who, format('partition %s: leads %s > allowance %s',
                          over.partition, over.exposed, over.allowed));
    END LOOP;
  END IF;
  RETURN NULL;
END $$""".replace("LEADS", _LEADS.replace("$1", "who")),
    "DROP TRIGGER IF EXISTS buying_power_bids ON bids",
    """CREATE CONSTRAINT TRIGGER buying_power_bids AFTER INSERT ON bids
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
       WHEN (NOT NEW.is_platform_bid) EXECUTE FUNCTION buying_power_check()""",
    "DROP TRIGGER IF EXISTS buying_power_allowances ON allowances",
    """CREATE CONSTRAINT TRIGGER buying_power_allowances
       AFTER INSERT OR UPDATE OR DELETE ON allowances
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION buying_power_check()""",
    "DROP TRIGGER IF EXISTS buying_power_users ON users",
    """CREATE CONSTRAINT TRIGGER buying_power_users AFTER UPDATE OF wallet_balance ON users
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION buying_power_check()""",
    "DROP TRIGGER IF EXISTS buying_power_if_bids ON if_bids",
    """CREATE CONSTRAINT TRIGGER buying_power_if_bids AFTER INSERT OR UPDATE ON if_bids
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION buying_power_check()""",
    "DROP TRIGGER IF EXISTS buying_power_maxes ON max_bids",
    """CREATE CONSTRAINT TRIGGER buying_power_maxes AFTER INSERT ON max_bids
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION buying_power_check()""",
)


async def install_commit_checks(conn: Any) -> None:
    """From now on, every commit that writes a bid, a maximum, an if-bid, an
    allowance or a balance checks its bidder's standing and records what it finds
    broken."""
    for statement in _INSTALL:
        await conn.execute(statement)


async def violations(conn: Any) -> list[str]:
    """What the commit checks recorded."""
    rows = await conn.fetch("SELECT user_id, problem FROM buying_power_violations ORDER BY at")
    return [f"{row['user_id']}: {row['problem']}" for row in rows]
