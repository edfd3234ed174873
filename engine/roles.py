"""Who may bid, and the platform's own bidder."""

from __future__ import annotations

import uuid

#: The system user that places reserve-protection bids (sql/0003_system_user.sql).
PLATFORM_USER_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")

#: Who may act on auctions for the platform (API.md: a manager or an admin), and
#: for a seller on their if-bid.
STAFF_ROLES = frozenset({"manager", "admin"})

#: Who sets the platform's prices, its commission rates (the seed: "Configure
#: pricing" is the admin's; a manager may read them).
PRICING_ROLES = frozenset({"admin"})

#: RULES.md rule 5: roles that may bid (with KYC approved).
BIDDING_ROLES = frozenset({"user", "verified_seller", "dealer", "admin"})


def may_bid(role: str, kyc_status: str, is_active: bool) -> bool:
    """Rule 5, from the engine's `users` row (never from a token's claims)."""
    return is_active and role in BIDDING_ROLES and kyc_status == "approved"
