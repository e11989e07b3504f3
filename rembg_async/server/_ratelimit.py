"""The short-term and daily rate limits (the monthly one is the account's credits)."""

from __future__ import annotations

import math
from collections import deque
from datetime import date, datetime, time, timedelta, timezone
from typing import Final

import attrs


@attrs.frozen(kw_only=True)
class RateLimits:
    """Limits of the local server; tests make them small to provoke each 429.

    ``short_term_requests`` admitted requests per ``short_term_window`` seconds, per API key (or
    per client address when anonymous); ``daily_anonymous`` admitted anonymous requests per
    client address and UTC day. Zero turns a limit off.
    """

    short_term_requests: int = 100
    short_term_window: float = 1.0
    daily_anonymous: int = 100


#: Below this many remembered callers, no sweep for idle ones is worth its time.
PRUNE_FLOOR: Final = 1024


class SlidingWindowLimiter:
    """At most ``limit`` admissions per identity in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        #: Admissions per window; settable while serving (a plan upgraded mid-run).
        self.limit = limit
        self._window = window
        self._admitted: dict[str, deque[float]] = {}
        self._prune_at = PRUNE_FLOOR

    @property
    def tracked(self) -> int:
        """How many callers are remembered."""
        return len(self._admitted)

    def admit(self, identity: str, now: float) -> float | None:
        """Admit one request (None), or say how many seconds until one would be admitted."""
        if self.limit <= 0:
            return None
        horizon = now - self._window
        if len(self._admitted) >= self._prune_at:
            # Forget the callers idle for a whole window, so memory stays bounded; amortised,
            # a sweep only each time the number of callers doubles.
            admitted = self._admitted.items()
            self._admitted = {key: ts for key, ts in admitted if ts and ts[-1] > horizon}
            self._prune_at = max(PRUNE_FLOOR, 2 * len(self._admitted))
        times = self._admitted.setdefault(identity, deque())
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.limit:
            return times[0] + self._window - now
        times.append(now)
        return None


class DailyLimiter:
    """At most ``limit`` admissions per identity per UTC day."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._day: date | None = None
        self._counts: dict[str, int] = {}

    def admit(self, identity: str, now: float) -> float | None:
        """Admit one request (None), or give the seconds left until the next UTC midnight."""
        if self._limit <= 0:
            return None
        moment = datetime.fromtimestamp(now, tz=timezone.utc)
        today = moment.date()
        if today != self._day:  # a new day: yesterday's counts can go
            self._day, self._counts = today, {}
        if self._counts.get(identity, 0) >= self._limit:
            midnight = datetime.combine(today + timedelta(days=1), time(), timezone.utc)
            return (midnight - moment).total_seconds()
        self._counts[identity] = self._counts.get(identity, 0) + 1
        return None


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least one."""
    return str(max(1, math.ceil(seconds)))
