"""What one client may take of a node's rooms: frames per socket, sockets per address.

Both are counted in this process, with no Redis round trip: a socket's frames are
that socket's business, and its open sockets are this node's (each node holds
its own). A guest costs nothing to be, so without these a few clients could keep
the database busy with snapshots or hold thousands of sockets.
"""

from __future__ import annotations

from time import monotonic


class FrameBudget:
    """Frames one socket may send: a token bucket, `per_s` a second, bursts of `per_s`.

    A bucket rather than a fixed window: a client that keeps to the rate is never
    refused, whatever the phase of its frames against a clock's second, and one
    that bursts gets its allowance back a frame at a time instead of all at once at
    the next second's edge (a fixed window lets twice the limit through across it).
    """

    __slots__ = ("_at", "_per_s", "_tokens")

    def __init__(self, per_s: int) -> None:
        self._per_s = float(per_s)
        self._tokens = float(per_s)
        self._at = monotonic()

    def take(self) -> bool:
        """Spend one frame; False (and nothing spent) when the bucket is empty."""
        now = monotonic()
        tokens = min(self._per_s, self._tokens + (now - self._at) * self._per_s)
        self._at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True

    def wait_s(self) -> float:
        """Seconds until `take` would next succeed (as of the last `take`)."""
        return max(0.0, 1.0 - self._tokens) / self._per_s


class OpenSockets:
    """Room sockets open on this node, per client key (web.ratelimit.ip_key)."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def open(self, key: str) -> bool:
        """Count one more socket for `key`; False (nothing counted) at the limit."""
        count = self._open.get(key, 0)
        if count >= self.per_key:
            return False
        self._open[key] = count + 1
        return True

    def close(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def count(self, key: str) -> int:
        return self._open.get(key, 0)
