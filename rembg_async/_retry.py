"""RetryPolicy: which failures are worth another attempt (connection failures, timeouts, bad
answers, 408, 409, 429, 5xx), and how long to wait: the server's ``Retry-After`` up to a cap,
else backoff with jitter. A short-term 429 is flow control, with its own allowance in time."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeGuard, TypeVar

import attrs

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    RateLimitError,
    RembgError,
    retry_after_seconds,
)

T = TypeVar("T")

# A child of the package's logger, so that an application that reports each call's failure
# itself (the CLI) can leave out the give-ups, which repeat it.
logger = logging.getLogger("rembg_async.retry")

RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a client retries; set on the client, and overridable per call.

    ``max_retries`` further attempts (so ``max_retries + 1`` in all); backoff starts at
    ``initial_backoff`` seconds and doubles up to ``max_backoff``, each wait jittered over its
    upper half; ``max_retry_after`` caps the waits a server may ask for. Short-term 429s are
    retried apart from ``max_retries``, for as long as ``rate_limited_for`` seconds from the
    first one (0: treat them as any other failure). ``wait=False`` keeps every rule but sleeps
    zero seconds: the switch for tests.
    """

    max_retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    rate_limited_for: float = attrs.field(default=600.0, validator=attrs.validators.ge(0))
    wait: bool = True

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt."""
        if isinstance(error, APIConnectionError):
            return error.retryable
        if isinstance(error, RateLimitError) and error.scope in ("daily", "monthly"):
            return False
        if isinstance(error, APIStatusError):
            return error.status in RETRYABLE_STATUSES or error.status >= 500
        return False

    def is_flow_control(self, error: BaseException) -> TypeGuard[RateLimitError]:
        """Whether ``error`` is a short-term 429 that waits apart from ``max_retries``."""
        return (
            self.rate_limited_for > 0
            and isinstance(error, RateLimitError)
            and self.is_retryable(error)
        )

    def flow_control_delay(self, error: RateLimitError, spent: float, count: int) -> float | None:
        """Seconds to wait after the ``count``-th short-term 429 (1-based) of a call that has
        spent ``spent`` seconds since its first one, or None to give up now."""
        if spent >= self.rate_limited_for:
            return None
        return self._wait(error.retry_after, count)

    def delay(self, error: RembgError, attempt: int) -> float | None:
        """Seconds to wait after failed ``attempt`` (1-based), or None to give up now."""
        if attempt > self.max_retries or not self.is_retryable(error):
            return None
        asked = retry_after_seconds(error.headers) if isinstance(error, APIStatusError) else None
        return self._wait(asked, attempt)

    def _wait(self, asked: float | None, count: int) -> float | None:
        """The wait the server ``asked`` for if within ``max_retry_after`` (else None: raised
        at once rather than slept through), or the ``count``-th jittered backoff."""
        if asked is not None:
            return asked if asked <= self.max_retry_after else None
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (count - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def run(self, attempt_once: Callable[[int], Awaitable[T]]) -> T:
        """Call ``attempt_once(1)``, ``attempt_once(2)``, … until one succeeds or we give up.

        The final error carries ``attempts``, the number of attempts made.
        """
        attempt = failures = throttles = 0
        first_throttle: float | None = None
        planned = 0.0  # waits asked so far under 429s: counts even when wait=False
        while True:
            attempt += 1
            try:
                return await attempt_once(attempt)
            except RembgError as error:
                error.attempts = attempt
                if self.is_flow_control(error):
                    throttles += 1
                    now = time.monotonic()
                    first_throttle = now if first_throttle is None else first_throttle
                    spent = max(now - first_throttle, planned)
                    delay = self.flow_control_delay(error, spent, throttles)
                    planned += delay or 0.0
                else:
                    failures += 1
                    delay = self.delay(error, failures)
                if delay is None:
                    if attempt > 1:
                        logger.warning("giving up after %d attempts: %s", attempt, error)
                    raise
                logger.info("attempt %d failed (%s): retrying in %.2f s", attempt, error, delay)
            await asyncio.sleep(delay if self.wait else 0)
