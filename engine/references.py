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
from engine.text import check_text

#: The longest reference a provider may give (transactions.paystack_ref is VARCHAR(100)).
MAX_REFERENCE = 100

#: What each kind of transaction is called in a refusal.
_KINDS = {
    "deposit": "a wallet credit",
    "withdrawal": "a withdrawal",
    "auction_payment": "a settlement payment",
}


def checked_reference(reference: str) -> str:
    """The provider's reference, trimmed: 1 to MAX_REFERENCE characters."""
    checked = check_text("reference", reference, MAX_REFERENCE)
    if not checked:
        raise Refused(
            "invalid",
            "invalid_reference",
            f"Give the payment's reference (1 to {MAX_REFERENCE} characters).",
        )
    return checked


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
