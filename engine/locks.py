"""In-process locks by key, and the one every writer of a user's balance holds.

A user's balance and eligibility are written in PostgreSQL and then given to
the core after COMMIT; holding the user's lock from the read of the row to
the core's update keeps two writers on this node from interleaving there.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Hashable, Iterable


class KeyedLocks:
    """One asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        held = self._locks.get(key)
        lock, users = held if held is not None else (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


_user_locks = KeyedLocks()


def user_lock(user_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[None]:
    """Held by every writer of a user's balance or eligibility, from its read of the
    row to the core's update after COMMIT."""
    return _user_locks.hold(user_id)


@contextlib.asynccontextmanager
async def user_locks(users: Iterable[uuid.UUID]) -> AsyncIterator[None]:
    """Several users' `user_lock`s, always taken in one order, so two holders of
    overlapping sets cannot deadlock."""
    async with contextlib.AsyncExitStack() as stack:
        for user in sorted(set(users)):
            await stack.enter_async_context(user_lock(user))
        yield
