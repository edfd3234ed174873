"""The in-process rate limiter (single node, and every node's fallback while Redis
is away), on a clock the test moves."""

from __future__ import annotations

from web.ratelimit import LocalRateLimiter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountedKey(str):
    """A key that counts how often the limiter hashes it: the work a hit does on
    the table, read without timing anything."""

    hashed = 0

    def __hash__(self) -> int:
        CountedKey.hashed += 1
        return str.__hash__(self)


MINUTE_START = 60.0 * 1_000  # a window edge for both 1-s and 60-s windows


async def test_a_one_second_windows_turnover_leaves_per_minute_counts_intact() -> None:
    clock = Clock(MINUTE_START)
    # A small table, so the per-second keys alone fill it.
    limiter = LocalRateLimiter(max_keys=4, clock=clock)
    for _ in range(3):
        assert await limiter.hit("user:a", 3, 60) is None
    for second in range(5):
        clock.now += 1
        for n in range(4):
            await limiter.hit(f"ws-bid:{second}-{n}", 10, 1.0)
    assert await limiter.hit("user:a", 3, 60) is not None  # the fourth this minute


async def test_at_the_cap_the_table_stays_bounded_and_a_hit_touches_only_its_key() -> None:
    limiter = LocalRateLimiter(max_keys=100, clock=Clock(MINUTE_START))
    keys = [CountedKey(f"ip:10.0.{n // 256}.{n % 256}") for n in range(2_000)]
    CountedKey.hashed = 0
    for key in keys:  # all in one window: none has expired
        assert await limiter.hit(key, 10, 60) is None
    assert len(limiter) == 100
    # A few lookups of its own key per hit, never a pass over the table.
    assert CountedKey.hashed <= 4 * len(keys)


async def test_a_full_table_forgets_the_key_idle_longest_not_a_busy_one() -> None:
    limiter = LocalRateLimiter(max_keys=3, clock=Clock(MINUTE_START))
    for key in ("ip:idle", "ip:idle", "ip:busy", "ip:busy", "ip:new-1"):  # full
        await limiter.hit(key, 2, 60)
    assert await limiter.hit("ip:busy", 2, 60) is not None  # its third: limited
    await limiter.hit("ip:new-2", 2, 60)  # takes the place of the key idle longest
    assert await limiter.hit("ip:busy", 2, 60) is not None  # still counted
    assert await limiter.hit("ip:idle", 2, 60) is None  # counted afresh
