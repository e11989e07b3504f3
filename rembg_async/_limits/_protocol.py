"""The one interface every limiter implements (`Limiter`), and the values that cross it: a request
goes ``permit = await limiter.acquire()``, the exchange, ``await limiter.release(permit,
answer)``, and the limiter learns from what the server said."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Literal, Protocol, TypeVar, runtime_checkable

import attrs

from .._exceptions import rate_limit_scope

E = TypeVar("E", bound=BaseException)

#: Where the rate in force comes from: a learned one, the server's headers, the caller's
#: ``requests_per_second``, or none (no pacing yet).
RateSource = Literal["learned", "server", "fixed", "none"]


@attrs.frozen(kw_only=True)
class Permit:
    """Leave to start one request: ``started_at`` on the limiter's clock, ``epoch`` its
    slow-downs by then (a 429 to a request sent before one is no news), ``token`` its own."""

    started_at: float
    epoch: int = 0
    token: str = ""


@attrs.frozen(kw_only=True)
class Answer:
    """What the server said to one request; ``throttled``: a short-term 429 (flow control)."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    throttled: bool = False
    message: str = ""

    @property
    def refuses_the_key(self) -> bool:
        """Whether every further request with this key would be refused alike (401, 402, 403,
        a daily or monthly limit)."""
        if self.status in (401, 402, 403):
            return True
        scope = rate_limit_scope(self.message)
        return self.status == 429 and not self.throttled and scope in ("daily", "monthly")


@attrs.frozen(kw_only=True)
class RateLimitState:
    """A snapshot of a limiter (``client.rate_limit``).

    ``rate`` is the requests per second in force (None: no pacing), ``source`` where it comes
    from, ``ceiling`` the highest rate the server was seen to accept (or states), ``adaptive``
    whether the rate is learned, ``answered`` the answers seen, ``throttled`` how many were
    short-term 429s, ``in_flight`` the requests under way, ``held_for`` the seconds left of a
    hold-off the server asked for.
    """

    rate: float | None
    source: RateSource
    ceiling: float | None
    adaptive: bool
    answered: int
    throttled: int
    in_flight: int
    held_for: float

    @property
    def throttled_share(self) -> float:
        """The share of answers that were short-term 429s (0 before any answer)."""
        return self.throttled / self.answered if self.answered else 0.0


@runtime_checkable
class Limiter(Protocol):
    """What a client needs of a rate limiter; ``AsyncRembg(limiter=...)`` takes any of them.

    One limiter may serve several clients (they then share its rate and its hold-offs). A
    limiter whose state belongs to one API key (`rembg_async.redis.RedisLimiter`) also has
    ``for_api_key(key)``: the client calls it with its own key and uses what it returns.
    """

    async def acquire(self) -> Permit:
        """Wait for a free slot and for this request's turn to start."""
        ...

    async def release(self, permit: Permit, answer: Answer | None) -> None:
        """The request is over: free its slot and learn from ``answer`` (None: no answer)."""
        ...

    async def hold_off(self, seconds: float) -> None:
        """Start no request for ``seconds`` (the server asked every caller to wait)."""
        ...

    async def aclose(self) -> None:
        """Stop: wake nobody further, let go of what the limiter holds. Safe to call twice."""
        ...

    @property
    def state(self) -> RateLimitState:
        """A snapshot of the limiter's state."""
        ...


def check_limits(requests_per_second: float | None, max_concurrency: int | None) -> None:
    """The checks every limiter makes of its ``requests_per_second`` and ``max_concurrency``."""
    if requests_per_second is not None and not requests_per_second > 0:
        raise ValueError("requests_per_second must be positive")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")


@attrs.define
class Outcome:
    """Where the client writes the answer of the request a permit was for."""

    answer: Answer | None = None


@contextlib.asynccontextmanager
async def limited(limiter: Limiter) -> AsyncIterator[Outcome]:
    """Hold a permit for the block; the answer written to the outcome goes back with it."""
    permit = await limiter.acquire()
    outcome = Outcome()
    try:
        yield outcome
    finally:
        await limiter.release(permit, outcome.answer)


def refused(error: E) -> E:
    """Mark ``error`` as raised by a limiter before anything was sent (a fleet's stop, a spent
    budget): a batch puts the input back among those not started."""
    error._rembg_refused = True  # type: ignore[attr-defined]
    return error


def was_refused(error: BaseException) -> bool:
    """Whether ``error`` came from a limiter, before anything was sent."""
    return getattr(error, "_rembg_refused", False) is True
