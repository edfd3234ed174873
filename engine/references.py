"""The payment provider's references: one namespace for every kind of money
movement they name (wallet credits, withdrawals, settlement payments).

A reference is the idempotency key of the one transaction it names: the same
reference again is the same request (answered with its first outcome), and a
reference already used for another kind of movement is refused — never booked
twice, once as a credit and once as a payment. The database's unique key on
`transactions.idempotency_key` holds this across nodes.
"""

from __future__ import annotations

from engine.errors import Refused

#: What each kind of transaction is called in a refusal.
_KINDS = {
    "deposit": "a wallet credit",
    "withdrawal": "a withdrawal",
    "auction_payment": "a settlement payment",
}


def provider_key(reference: str) -> str:
    """The idempotency key of the transaction a provider's reference names."""
    return f"provider:{reference}"


def refuse_reuse(used_for: str, wanted: str) -> None:
    """Refuse a reference already used for another kind of transaction."""
    if used_for != wanted:
        raise Refused(
            "conflict",
            "reference_conflict",
            f"This reference was already used for {_KINDS.get(used_for, 'another transaction')}; "
            "a provider's reference names one transaction only. Check the reference.",
        )
