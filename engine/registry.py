"""The core's handles for the engine's UUIDs, both ways."""

from __future__ import annotations

import uuid

import bidcore
from engine.roles import PLATFORM_USER_ID

#: A handle the core knows nothing under: bids naming it are refused by rule.
NO_HANDLE = 2**32 - 1


class Registry:
    """One `bidcore.Core` and the UUID ↔ handle maps around it."""

    def __init__(self, core: bidcore.Core) -> None:
        self.core = core
        self._users: dict[uuid.UUID, int] = {}
        self._user_ids: dict[int, uuid.UUID] = {}
        self._auctions: dict[uuid.UUID, int] = {}
        self._auction_ids: dict[int, uuid.UUID] = {}

    def upsert_user(self, user_id: uuid.UUID, *, balance_kobo: int, eligible: bool) -> int:
        handle = self.core.upsert_user(user_id.int, balance_kobo=balance_kobo, eligible=eligible)
        self._users[user_id] = handle
        self._user_ids[handle] = user_id
        return handle

    def user_handle(self, user_id: uuid.UUID) -> int:
        return self._users.get(user_id, NO_HANDLE)

    def user_id(self, handle: int) -> uuid.UUID:
        return self._user_ids[handle]

    @property
    def platform_handle(self) -> int:
        return self._users.get(PLATFORM_USER_ID, NO_HANDLE)

    def track_auction(self, auction_id: uuid.UUID, handle: int) -> None:
        self._auctions[auction_id] = handle
        self._auction_ids[handle] = auction_id

    def forget_auction(self, auction_id: uuid.UUID) -> None:
        handle = self._auctions.pop(auction_id, None)
        if handle is not None:
            self._auction_ids.pop(handle, None)

    def auction_handle(self, auction_id: uuid.UUID) -> int:
        return self._auctions.get(auction_id, NO_HANDLE)

    def auction_id(self, handle: int) -> uuid.UUID:
        return self._auction_ids[handle]

    def auction_ids(self) -> list[uuid.UUID]:
        return list(self._auctions)

    def user_ids(self) -> list[uuid.UUID]:
        return list(self._users)
