"""Every error the engine raises, in one home (as asyncpg keeps its own).

The engine knows nothing of HTTP: a refusal carries a `kind` (invalid,
conflict, not_found, forbidden) and a code and sentence for the client, and
the web layer maps kinds to statuses in one place (web/middleware.py). The
tuples at the end name the database failures worth another try later.
"""

from __future__ import annotations

import uuid
from typing import Literal

import asyncpg

RefusalKind = Literal["invalid", "conflict", "not_found", "forbidden"]


class EngineError(Exception):
    """Base of the engine's own errors."""


# ---- start-up ------------------------------------------------------------------------


class ConfigError(EngineError, ValueError):
    """A setting in the environment has a value the engine cannot use."""


class DatabaseStartError(EngineError, RuntimeError):
    """The embedded PostgreSQL server could not be started; the message says what to do."""


class MigrationError(EngineError, RuntimeError):
    """The migrations cannot be applied as they stand; the message says why."""


class RecoveryMismatch(EngineError, RuntimeError):
    """The rebuilt core does not equal the ledger: the engine must not serve."""


class BidLogBroken(EngineError):
    """An auction's bid log does not verify against its bid rows from bid `seq`
    on: its result is not signed (RULES.md "The public bid log")."""

    def __init__(self, auction_id: uuid.UUID, seq: int) -> None:
        super().__init__(f"the bid log of auction {auction_id} does not verify from bid seq {seq}")
        self.auction_id = auction_id
        self.seq = seq


# ---- the ledger ------------------------------------------------------------------------


class LedgerUnavailable(EngineError):
    """The ledger cannot take writes; the bid was not acknowledged."""


class Fenced(EngineError):
    """A newer owner (a higher epoch) holds an auction this batch touches: this
    node must stop writing; it does not take the auctions back."""


class LedgerConflict(EngineError):
    """The ledger no longer holds what the core assumed (an auction not live,
    half a batch already written): the core is rebuilt from the ledger."""


class Replan(EngineError):
    """What a settlement step planned from (an offer, the next bidder) changed
    before its locks were taken: plan again."""


# ---- callers -----------------------------------------------------------------------------


class TokenError(EngineError):
    """A token that proves nothing: missing, malformed, expired or badly signed."""


class Refused(EngineError):
    """A request the domain refuses, with a code and a sentence the caller can act on."""

    def __init__(self, kind: RefusalKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind
        self.code = code
        self.message = message


class DuplicateVin(Refused):
    """A VIN already registered: the refusal names the vehicle that has it."""

    def __init__(self, vin: str, vehicle_id: uuid.UUID) -> None:
        super().__init__(
            "conflict",
            "duplicate_vin",
            f"A vehicle with VIN {vin} is already registered as vehicle {vehicle_id}.",
        )
        self.vehicle_id = vehicle_id


def invalid_transition(status: str, action: str, allowed: str) -> Refused:
    """An action the auction's status does not allow."""
    return Refused(
        "conflict",
        "invalid_transition",
        f"This auction is {status_words(status)}: {action} applies to {allowed}.",
    )


def unknown_auction() -> Refused:
    return Refused("not_found", "not_found", "No auction has this id.")


def status_words(status: str) -> str:
    """An auction status as a person reads it ("pending settlement")."""
    return status.replace("_", " ")


# ---- the database, as worth another try -----------------------------------------------

#: The database cannot be reached right now (connection refused or lost, the server
#: shutting down or starting, out of connections or resources): worth another try
#: later, and a 503 `unavailable` to a client, never a 500. asyncpg raises
#: InternalClientError ("cannot switch to state …") when the server goes away while a
#: pooled connection is mid-reconnect.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InsufficientResourcesError,  # disk full, out of memory: may pass
)

#: Any failure of a read that may simply be tried again later: the database is
#: unreachable, or it answered with an error (a readiness probe, a snapshot, a rebuild).
UNREACHABLE_OR_REFUSED: tuple[type[BaseException], ...] = (*UNREACHABLE, asyncpg.PostgresError)

#: The ledger cannot take a write now (unreachable, or a read-only standby): worth a
#: retry by the client, not a 500.
LEDGER_DOWN: tuple[type[BaseException], ...] = (
    *UNREACHABLE,
    asyncpg.ReadOnlySQLTransactionError,
)
