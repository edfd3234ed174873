"""WebSocket frames built once, by hand (RFC 6455, unmasked, uncompressed): a
room event is framed once per node and the same bytes are written to every
socket of the room."""

from __future__ import annotations

import struct

_HEADER_SHORT = struct.Struct("!BB")
_HEADER_MEDIUM = struct.Struct("!BBH")
_HEADER_LONG = struct.Struct("!BBQ")
_TEXT = 0x81  # FIN + text
_CLOSE = 0x88  # FIN + close


def text_frame(payload: bytes) -> bytes:
    """One unmasked server text frame, ready for any socket (no compression)."""
    return _frame(_TEXT, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    return _frame(_CLOSE, struct.pack("!H", code) + reason.encode()[:120])


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return _HEADER_SHORT.pack(first, size) + payload
    if size < 65536:
        return _HEADER_MEDIUM.pack(first, 126, size) + payload
    return _HEADER_LONG.pack(first, 127, size) + payload
