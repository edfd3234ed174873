"""Wallets: the balance is the ledger's, buying power the core's.

Every balance change is one database transaction that locks the user's row,
updates `users.wallet_balance` and writes a `transactions` row with
`balance_after`. Credits and debits are idempotent by the payment provider's
reference (engine/references.py: one namespace with settlement payments). The
core's balance rises only after a COMMIT; a withdrawal lowers it just before (and puts back the
ledger's value if the COMMIT fails), so no bid can be accepted in between
against money that is leaving. A credit also takes any deposit the user owes
on a won auction (engine/offers.py), in the same transaction.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg
import msgspec

from engine.allowances import allotted, exposed_in_ledger
from engine.clock import to_ms
from engine.errors import LEDGER_DOWN, Refused
from engine.locks import user_lock
from engine.money import MAX_KOBO, checked_amount, format_naira, kobo_to_naira, naira_to_kobo
from engine.offers import lock_due_deposits, take_due_deposits
from engine.references import checked_reference, provider_key, refuse_reuse
from engine.registry import NO_HANDLE
from engine.sequencer import Sequencer
from engine.users import sync_core

logger = logging.getLogger(__name__)


# ---- what this service takes and gives ----------------------------------------


class WalletChange(msgspec.Struct, forbid_unknown_fields=True):
    """A credit or a debit: `reference` (the payment provider's) makes it idempotent."""

    amount_kobo: int
    reference: str


class WalletBody(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    balance_kobo: int
    exposure_kobo: int
    available_kobo: int
    held_kobo: int
    due_kobo: int


class TransactionBody(msgspec.Struct, frozen=True):
    id: uuid.UUID
    type: str  # "deposit" (a credit) or "withdrawal" (a debit)
    amount_kobo: int
    balance_after_kobo: int
    reference: str
    created_at_ms: int


class WalletMovement(WalletBody, frozen=True):
    """The wallet after a credit or debit, and the transaction that made it."""

    transaction: TransactionBody


#: DECIMAL(15,2) naira holds at most this many kobo.

_USER = "SELECT id, role, kyc_status, is_active, wallet_balance FROM users WHERE id = $1"
_LOCK_USER = _USER + " FOR UPDATE"
_PRIOR = """
SELECT id, user_id, type, amount, balance_after, paystack_ref, created_at
FROM transactions WHERE idempotency_key = $1
"""
_SET_BALANCE = "UPDATE users SET wallet_balance = $2, updated_at = now() WHERE id = $1"
_RECORD = """
INSERT INTO transactions
  (user_id, type, amount, balance_after, paystack_ref, status, description, idempotency_key)
VALUES ($1, $2, $3, $4, $5, 'completed', $6, $7)
RETURNING id, user_id, type, amount, balance_after, paystack_ref, created_at
"""
# Deposits of the user's open settlement offers (auctions won, not yet settled):
# held (out of the balance already) or due (the wallet could not cover them yet).
_HELD_AND_DUE = """
SELECT COALESCE(SUM(deposit) FILTER (WHERE deposit_status = 'held'), 0) AS held,
       COALESCE(SUM(deposit) FILTER (WHERE deposit_status = 'due'), 0) AS due
FROM settlement_offers WHERE user_id = $1 AND outcome = 'open'
"""
# Any open offer is committed capital, even one with a zero deposit: a payment is due.
_HAS_OPEN_OFFER = """
SELECT EXISTS (SELECT 1 FROM settlement_offers WHERE user_id = $1 AND outcome = 'open')
"""
# Ended too: between the close and end processing the winner's deposit is
# still in the wallet, and must stay there until the hold takes it; and a bid
# awaiting its seller's decision binds it the same way.
_LEADS_OPEN = """
SELECT EXISTS (
  SELECT 1 FROM bids b JOIN auctions a ON a.id = b.auction_id
  WHERE b.user_id = $1 AND b.is_winning AND a.status IN ('live', 'ended')
) OR EXISTS (SELECT 1 FROM if_bids WHERE bidder_id = $1 AND state = 'open')
"""
_IDEMPOTENCY_KEY = "transactions_idempotency_key_key"


async def read_wallet(pool: asyncpg.Pool, sequencer: Sequencer, user_id: uuid.UUID) -> WalletBody:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        row = await conn.fetchrow(_USER, user_id)
        if row is None:
            raise _unknown_user()
        held, due = await held_and_due(conn, user_id)
        # Several nodes: this core decides some partitions only; the ledger has every lead.
        elsewhere = await exposed_in_ledger(conn, user_id) if sequencer.escrow is not None else 0
    return _wallet(sequencer, user_id, naira_to_kobo(row["wallet_balance"]), held, due, elsewhere)


async def held_and_due(conn: asyncpg.Connection, user_id: uuid.UUID) -> tuple[int, int]:
    row = await conn.fetchrow(_HELD_AND_DUE, user_id)
    return naira_to_kobo(row["held"]), naira_to_kobo(row["due"])


def exposure(sequencer: Sequencer, user_id: uuid.UUID) -> int:
    """The deposits of the auctions this user leads, as the core has them: live
    ones, ended ones whose end processing has not taken the deposit yet, and bids
    of theirs awaiting a seller's decision."""
    handle = sequencer.registry.user_handle(user_id)
    if handle == NO_HANDLE:
        return 0
    return sequencer.core.user(handle).exposure_kobo


async def credit(
    pool: asyncpg.Pool,
    sequencer: Sequencer,
    user_id: uuid.UUID,
    change: WalletChange,
    *,
    now_ms: int | None = None,
) -> tuple[WalletMovement, bool]:
    """Add funds (a provider's deposit). True when new; False when the reference was seen.

    A deposit due on a won auction (before its deadline: `now_ms`, else the
    database's clock) is taken from the new balance when it covers it."""
    amount, reference = _checked(change)
    key = provider_key(reference)
    async with user_lock(user_id):
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    due = await lock_due_deposits(conn, user_id, now_ms)  # offers, then the user
                    row = await _lock_user(conn, user_id)
                    prior = await _prior(conn, key, "deposit", user_id, amount)
                    if prior is None:
                        balance = _credited(row, amount)
                        record = await _record(
                            conn, row, "deposit", amount, balance, reference, key
                        )
                        balance = await take_due_deposits(conn, user_id, balance, due)
            except asyncpg.UniqueViolationError as err:
                prior = await _raced(conn, err, key, "deposit", user_id, amount)
        if prior is not None:
            return await _movement(pool, sequencer, user_id, prior), False
        sync_core(sequencer, row, kobo_to_naira(balance))  # after COMMIT, never before
        return await _movement(pool, sequencer, user_id, record), True


async def debit(
    pool: asyncpg.Pool, sequencer: Sequencer, user_id: uuid.UUID, change: WalletChange
) -> tuple[WalletMovement, bool]:
    """Withdraw funds. Refused while capital is committed or the balance is short."""
    amount, reference = _checked(change)
    key = provider_key(reference)
    lowered = committed = False
    await sequencer.release_everywhere(user_id)  # several nodes: idle allowances come back
    async with user_lock(user_id):
        try:
            async with pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        row = await _lock_user(conn, user_id)
                        prior = await _prior(conn, key, "withdrawal", user_id, amount)
                        if prior is None:
                            balance = await _withdrawable(conn, sequencer, row, amount)
                            # No await since the core's exposure was read: lower it now.
                            sync_core(sequencer, row, kobo_to_naira(balance))
                            lowered = True
                            record = await _record(
                                conn, row, "withdrawal", amount, balance, reference, key
                            )
                    committed = prior is None
                except asyncpg.UniqueViolationError as err:
                    prior = await _raced(conn, err, key, "withdrawal", user_id, amount)
        finally:
            if lowered and not committed:
                await _resync(pool, sequencer, user_id)
        if prior is not None:
            return await _movement(pool, sequencer, user_id, prior), False
        sync_core(sequencer, row, kobo_to_naira(balance))
        return await _movement(pool, sequencer, user_id, record), True


def _credited(row: asyncpg.Record, amount: int) -> int:
    balance = naira_to_kobo(row["wallet_balance"]) + amount
    if balance > MAX_KOBO:
        raise Refused(
            "invalid",
            "balance_limit",
            f"This credit would take the wallet past {format_naira(MAX_KOBO)}.",
        )
    return balance


async def _withdrawable(
    conn: asyncpg.Connection, sequencer: Sequencer, row: asyncpg.Record, amount: int
) -> int:
    """The balance after withdrawing `amount`, or the refusal (RULES.md "Wallet")."""
    user_id = row["id"]
    owes = await conn.fetchval(_HAS_OPEN_OFFER, user_id)
    leads = await conn.fetchval(_LEADS_OPEN, user_id)
    if owes or leads or exposure(sequencer, user_id) > 0:
        raise Refused(
            "conflict",
            "committed_capital",
            "Withdrawals wait while you lead a live auction, a seller is deciding on your "
            "bid, or you have a deposit held or a payment due. Try again once you are "
            "outbid or the auction is decided or settled.",
        )
    balance = naira_to_kobo(row["wallet_balance"])
    backing = await allotted(conn, user_id)
    if backing and amount > balance - backing:
        raise Refused(
            "conflict",
            "committed_capital",
            f"{format_naira(backing)} of your wallet backs bids being decided right now; "
            f"you can withdraw up to {format_naira(max(balance - backing, 0))}, or try "
            "again in a few seconds.",
        )
    if amount > balance:
        raise Refused(
            "conflict",
            "insufficient_funds",
            f"Your wallet holds {format_naira(balance)}, less than the "
            f"{format_naira(amount)} asked for.",
        )
    return balance - amount


def _checked(change: WalletChange) -> tuple[int, str]:
    return checked_amount(change.amount_kobo), checked_reference(change.reference)


async def _lock_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(_LOCK_USER, user_id)
    if row is None:
        raise _unknown_user()
    return row


async def _prior(
    conn: asyncpg.Connection, key: str, kind: str, user_id: uuid.UUID, amount: int
) -> asyncpg.Record | None:
    """The transaction already written under this reference, if it is this same request."""
    prior = await conn.fetchrow(_PRIOR, key)
    if prior is None:
        return None
    refuse_reuse(prior["type"], kind)
    if prior["user_id"] != user_id or naira_to_kobo(prior["amount"]) != amount:
        raise Refused(
            "conflict",
            "reference_conflict",
            "This reference was already used for a different amount or wallet; "
            "check the payment's reference.",
        )
    return prior


async def _raced(
    conn: asyncpg.Connection,
    err: asyncpg.UniqueViolationError,
    key: str,
    kind: str,
    user_id: uuid.UUID,
    amount: int,
) -> asyncpg.Record:
    """Another node wrote this reference first: answer with its transaction."""
    if err.constraint_name != _IDEMPOTENCY_KEY:
        raise err
    prior = await _prior(conn, key, kind, user_id, amount)
    if prior is None:
        raise err
    return prior


async def _record(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    kind: str,
    amount: int,
    balance: int,
    reference: str,
    key: str,
) -> asyncpg.Record:
    await conn.execute(_SET_BALANCE, row["id"], kobo_to_naira(balance))
    description = "Wallet funded" if kind == "deposit" else "Withdrawal"
    record: asyncpg.Record = await conn.fetchrow(
        _RECORD,
        row["id"],
        kind,
        kobo_to_naira(amount),
        kobo_to_naira(balance),
        reference,
        description,
        key,
    )
    return record


async def _resync(pool: asyncpg.Pool, sequencer: Sequencer, user_id: uuid.UUID) -> None:
    """After a withdrawal that did not commit: the core takes the ledger's balance again.
    If the ledger cannot say, the core keeps the lower one (the safe side)."""
    try:
        row = await pool.fetchrow(_USER, user_id)
    except LEDGER_DOWN:
        logger.warning("user %s: balance not restored in the core; the ledger is away", user_id)
        return
    if row is not None:
        sync_core(sequencer, row)


async def _movement(
    pool: asyncpg.Pool, sequencer: Sequencer, user_id: uuid.UUID, record: asyncpg.Record
) -> WalletMovement:
    wallet = await read_wallet(pool, sequencer, user_id)
    transaction = TransactionBody(
        id=record["id"],
        type=record["type"],
        amount_kobo=naira_to_kobo(record["amount"]),
        balance_after_kobo=naira_to_kobo(record["balance_after"]),
        reference=record["paystack_ref"],
        created_at_ms=to_ms(record["created_at"]),
    )
    return WalletMovement(**msgspec.structs.asdict(wallet), transaction=transaction)


def _wallet(
    sequencer: Sequencer,
    user_id: uuid.UUID,
    balance: int,
    held: int,
    due: int,
    in_ledger: int = 0,
) -> WalletBody:
    """`in_ledger`: the leads' deposits as the ledger has them (several nodes); the
    larger of it and the core's (which has bids not yet written) is reported."""
    exposed = max(exposure(sequencer, user_id), in_ledger)
    return WalletBody(
        user_id=user_id,
        balance_kobo=balance,
        exposure_kobo=exposed,
        available_kobo=balance - exposed,
        held_kobo=held,
        due_kobo=due,
    )


def _unknown_user() -> Refused:
    return Refused("not_found", "unknown_user", "No user has this id; create it first.")
