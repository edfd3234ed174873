"""A dead owner fails every bid forwarded to it until its partitions move: the
node says so at most once a second, with a count, not once a bid."""

from __future__ import annotations

import logging
import uuid

import pytest

from web import peers


def test_unanswered_calls_are_logged_once_a_second_with_their_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_000.0]
    monkeypatch.setattr(peers.time, "monotonic", lambda: now[0])
    unanswered = peers._Unanswered()
    auction = uuid.uuid4()
    with caplog.at_level(logging.WARNING, logger="web.peers"):
        for _ in range(500):  # in one instant
            unanswered.note(auction, ConnectionRefusedError())
        now[0] += 0.5
        unanswered.note(auction, ConnectionRefusedError())
        now[0] += 0.6
        unanswered.note(auction, ConnectionRefusedError())

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("1 forwarded call(s) got no answer")
    assert lines[1].startswith("501 forwarded call(s) got no answer")
    assert str(auction) in lines[1]
