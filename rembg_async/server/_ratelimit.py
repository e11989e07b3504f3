"""The short-term and daily rate limits (the monthly one is the account's credits)."""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta, timezone
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
        self._limit = limit
        self._window = window
        self._admitted: dict[str, deque[float]] = {}
        self._prune_at = PRUNE_FLOOR

    def admit(self, identity: str, now: float) -> float | None:
        """Admit one request (None), or say how many seconds until one would be admitted."""
        if self._limit <= 0:
            return None
        if len(self._admitted) >= self._prune_at:
            # Amortised: a sweep only each time the number of callers doubles.
            self.forget_idle(now)
            self._prune_at = max(PRUNE_FLOOR, 2 * len(self._admitted))
        times = self._admitted.setdefault(identity, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._limit:
            return times[0] + self._window - now
        times.append(now)
        return None

    @property
    def limit(self) -> int:
        """Admissions per window; settable while serving (a plan upgraded mid-run)."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = value

    @property
    def tracked(self) -> int:
        """How many callers are remembered."""
        return len(self._admitted)

    def forget_idle(self, now: float) -> None:
        """Drop callers with no admission inside the window, so memory stays bounded."""
        horizon = now - self._window
        idle = [key for key, times in self._admitted.items() if not times or times[-1] <= horizon]
        for key in idle:
            del self._admitted[key]


class DailyLimiter:
    """At most ``limit`` admissions per identity per UTC day."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._day = ""
        self._counts: dict[str, int] = {}

    def admit(self, identity: str, now: float) -> float | None:
        """Admit one request (None), or give the seconds left until the next UTC day."""
        if self._limit <= 0:
            return None
        moment = datetime.fromtimestamp(now, tz=timezone.utc)
        day = moment.date().isoformat()
        if day != self._day:  # a new day: yesterday's counts can go
            self._day, self._counts = day, {}
        if self._counts.get(identity, 0) >= self._limit:
            return seconds_until_next_day(moment)
        self._counts[identity] = self._counts.get(identity, 0) + 1
        return None


def seconds_until_next_day(moment: datetime) -> float:
    """Seconds from ``moment`` to the next UTC midnight."""
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - moment).total_seconds()


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least one."""
    return str(max(1, math.ceil(seconds)))
