"""The limiters on their own: windows, retry times and bounded memory."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from rembg_async.server._ratelimit import (
    PRUNE_FLOOR,
    DailyLimiter,
    SlidingWindowLimiter,
    retry_after_header,
)


def test_window_admits_the_limit_then_says_when() -> None:
    """N admissions per window; the next caller learns when the oldest leaves the window."""
    limiter = SlidingWindowLimiter(2, 10.0)
    assert limiter.admit("a", 0.0) is None
    assert limiter.admit("a", 1.0) is None
    assert limiter.admit("a", 2.0) == 8.0
    assert limiter.admit("a", 10.0) is None  # the first one left the window


def test_memory_stays_bounded_with_many_callers() -> None:
    """Callers idle for a whole window are forgotten as new ones arrive."""
    limiter = SlidingWindowLimiter(5, 1.0)
    for caller in range(20 * PRUNE_FLOOR):
        limiter.admit(f"ip-{caller}", now=caller * 0.01)
    assert limiter.tracked <= 2 * PRUNE_FLOOR


def test_daily_limit_resets_at_utc_midnight() -> None:
    """The daily count starts again on the next UTC day, and the wait points there."""
    limiter = DailyLimiter(1)
    evening = datetime(2026, 5, 1, 23, 0, tzinfo=timezone.utc).timestamp()
    assert limiter.admit("ip", evening) is None
    assert limiter.admit("ip", evening) == 3600.0
    assert limiter.admit("ip", evening + 3600) is None


@given(st.floats(0, 10**7, allow_nan=False))
def test_retry_after_is_whole_seconds_rounded_up(seconds: float) -> None:
    """Retry-After is an integer, at least one, never shorter than the real wait."""
    value = int(retry_after_header(seconds))
    assert value >= 1
    assert value >= seconds
