"""Bid ids: random version 4 UUIDs, never repeated, not even by a forked child."""

from __future__ import annotations

import os
import uuid

from engine.bids import new_bid_id


def test_bid_ids_are_random_version_4_uuids_and_never_repeat() -> None:
    ids = [new_bid_id() for _ in range(3_000)]  # more than one draw from the OS
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    new_bid_id()  # the parent holds unused ids drawn from the OS
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, new_bid_id().bytes)
        os._exit(0)
    os.close(write)
    childs = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    os.waitpid(child, 0)
    assert childs != new_bid_id()
