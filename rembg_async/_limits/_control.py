"""The rate controller: the rate a server accepts, learned from its answers (no I/O; every method
takes the time). CUBIC as in botocore's adaptive mode, changed for batches against a short-term
limit: see docs/guides/errors-and-reliability.md#rate-limits."""

from __future__ import annotations

import bisect
from collections import deque
from typing import Final

import attrs

from ._protocol import RateSource

#: The share of the accepted rate (not of the rate sent) kept after a short-term 429.
BETA: Final = 0.88
#: The climb back levels off at this share of the ceiling (a limit counted in whole requests
#: leaves no room for jitter at the ceiling itself).
PLATEAU: Final = 0.97
#: The way back to the ceiling takes at least this long...
RECOVERY_SECONDS: Final = 4.0
#: ...and the time of this many requests at the ceiling (bounds the 429 share)...
RECOVERY_REQUESTS: Final = 28.0
#: ...and, below a few requests a second, SLOW_RECOVERY / ceiling² seconds (80 requests at 1/s,
#: 40 at 2/s): one probe's 429 weighs more among few requests. Under 1/s it stays at
#: SLOW_RECOVERY seconds (the requests term takes over), or a raised limit would wait hours.
SLOW_RECOVERY: Final = 80.0
#: Above the plateau the probe climbs on this time scale (or the way back's, if shorter).
PROBE_SECONDS: Final = 3.0
#: A request sent less than this after a cut cannot cause another: the server's window still
#: holds what was sent before the cut (TCP cuts once per round trip).
WINDOW: Final = 1.0
#: Never slower than one request per this many seconds.
MIN_RATE: Final = 1 / 30
#: Above the ceiling the probe climbs this many times faster than the way back (a raised limit
#: is found within seconds), yet still flat at first (so a probe is rare).
PROBE_GAIN: Final = 3.0
#: Successes older than this do not count towards the accepted rate, which is measured over the
#: last half of the way back (within 2 % of the ceiling), at least 1 s, at most MEMORY.
MEMORY: Final = 10.0


@attrs.define
class RateController:
    """The rate in force, and how it moves on successes and short-term 429s."""

    fixed: float | None = None
    adaptive: bool = True
    ceiling: float | None = None
    server_rate: float | None = None
    epoch: int = 0
    cut_at: float = 0.0
    answered: int = 0
    throttled: int = 0
    #: When the last MEMORY seconds' successes were answered, and when they had started.
    _accepted: deque[float] = attrs.field(factory=deque)
    _admitted: deque[float] = attrs.field(factory=deque)
    #: When the request whose 429 made the last cut had started.
    _refused_at: float | None = None
    _first_success: float | None = None

    @property
    def learning(self) -> bool:
        """Whether answers move the rate (no fixed rate, adaptation on)."""
        return self.fixed is None and self.adaptive

    @property
    def source(self) -> RateSource:
        """Where the rate in force comes from."""
        if self.fixed is not None:
            return "fixed"
        if self.adaptive and self.server_rate is not None:
            return "server"
        return "learned" if self.adaptive and self.ceiling is not None else "none"

    def rate(self, now: float) -> float | None:
        """Requests per second in force at ``now``; None: no pacing."""
        if self.fixed is not None:
            return self.fixed
        if not self.adaptive or self.ceiling is None:
            return None
        if self.server_rate is not None:
            return min(self.server_rate, self._cubic(now)) if self.epoch else self.server_rate
        return self._cubic(now)

    def _cubic(self, now: float) -> float:
        """BETA × ceiling right after a cut, back to PLATEAU × ceiling after ``k`` seconds
        (concave: most time is spent near it), then a convex probe above it."""
        assert self.ceiling is not None
        k = self._recovery()
        since = now - self.cut_at - k
        if since <= 0:
            return max(MIN_RATE, self.ceiling * (PLATEAU + (PLATEAU - BETA) * (since / k) ** 3))
        x = since / min(k, PROBE_SECONDS)
        return self.ceiling * (PLATEAU + (1 - BETA) * PROBE_GAIN * x**3)

    def _recovery(self) -> float:
        assert self.ceiling is not None
        slow = SLOW_RECOVERY / max(self.ceiling, 1.0) ** 2
        return max(RECOVERY_SECONDS, RECOVERY_REQUESTS / self.ceiling, slow)

    def succeeded(self, now: float, sent_at: float | None = None) -> None:
        """A request (sent at ``sent_at``) was answered."""
        self.answered += 1
        if sent_at is not None:
            self._admitted.append(sent_at)
        if self._first_success is None:
            self._first_success = now
        self._accepted.append(now)
        for times in (self._admitted, self._accepted):
            while times and times[0] <= now - MEMORY:
                times.popleft()
        if self.learning and self.ceiling is not None and now - self.cut_at < self._recovery():
            # Answers still coming back from before a cut (the first burst, say) show that
            # the server accepted far more than was counted when it cut: the ceiling moves up.
            accepted = self.accepted_rate(now)
            if accepted is not None and accepted * BETA > self.ceiling:
                self.ceiling = accepted
            self._admitted_before_cut()

    def _admitted_before_cut(self) -> None:
        # The server admitted every request that started within a window before the one it
        # refused and was answered with success, even those answered after the cut (in slow
        # start, half of them): so many per window is a floor under the limit.
        assert self.ceiling is not None
        if self._refused_at is None:
            return
        start = self._refused_at - WINDOW
        admitted = sum(1 for sent in self._admitted if start < sent <= self._refused_at)
        self.ceiling = max(self.ceiling, admitted / WINDOW)

    def answered_otherwise(self) -> None:
        """A request was answered with an error that says nothing of the rate."""
        self.answered += 1

    def accepted_rate(self, now: float) -> float | None:
        """Successes per second lately (None: none lately)."""
        if not self._accepted:
            return None
        assert self._first_success is not None
        span = MEMORY if self.ceiling is None else min(MEMORY, max(1.0, self._recovery() / 2))
        count = len(self._accepted) - bisect.bisect_right(self._accepted, now - span)
        elapsed = now - self._first_success
        if elapsed < span:
            # Early on, a server with a window of a second or more has let a window's worth
            # through at once: n successes over t seconds are a rate of n / (t + 1).
            return count / (elapsed + 1.0)
        return count / span

    def throttle(self, now: float, epoch: int, sent_at: float | None = None) -> bool:
        """A short-term 429 to a request sent at ``sent_at`` in ``epoch``: cut the rate if it is
        news (not sent before the last cut, nor within a window after it); whether it was."""
        self.answered += 1
        self.throttled += 1
        if not self.learning or epoch != self.epoch:
            return False
        if self.epoch and sent_at is not None and sent_at < self.cut_at + WINDOW:
            return False
        # The limit lies between what the server accepted lately (a floor: we may have sent
        # little more) and the rate that overflowed (a ceiling, when paced): take the middle.
        sent, accepted = self.rate(now), self.accepted_rate(now)
        known = [rate for rate in (sent, accepted) if rate is not None]
        base = sum(known) / len(known) if known else 1.0
        self.ceiling = max(MIN_RATE / BETA, base)
        self._refused_at = sent_at
        self._admitted_before_cut()
        self.cut_at = now
        self.epoch += 1
        return True

    def told(self, rate: float) -> None:
        """The server stated its short-term rate: pace at it from now on."""
        if self.learning:
            self.server_rate = rate
            if self.ceiling is None:
                self.ceiling = rate
