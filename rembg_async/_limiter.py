"""A client-side rate limiter, shared by every call of one client.

Batch jobs stay under the API's short-term limit by spacing their requests, instead of bouncing
off 429s; and when a 429 does come with a ``Retry-After``, every call of the client holds off
until then, not only the one that got it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator


class RateLimiter:
    """At most ``requests_per_second`` request starts and ``max_concurrency`` requests at once."""

    def __init__(self, *, requests_per_second: float | None, max_concurrency: int | None) -> None:
        if requests_per_second is not None and requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._interval = 1 / requests_per_second if requests_per_second else 0.0
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._next_start = 0.0
        self._resume_at = 0.0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free slot and for our turn; the slot is held until the block ends."""
        async with self._slots or contextlib.nullcontext():
            await self._wait_for_turn()
            yield

    def hold_off(self, seconds: float) -> None:
        """Start no request for ``seconds`` (the server asked us to wait)."""
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    async def _wait_for_turn(self) -> None:
        now = time.monotonic()
        # Claim the next start time before sleeping, so concurrent callers queue up in order.
        start = max(now, self._next_start, self._resume_at)
        self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)
