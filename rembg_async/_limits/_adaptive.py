"""The in-process limiter: slow start until the first 429, then pacing at the learned rate, and
server hold-offs (see docs/guides/errors-and-reliability.md#rate-limits)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from .._exceptions import retry_after_seconds
from ._control import RateController
from ._headers import read_hint
from ._protocol import Answer, Permit, RateLimitState, check_limits

logger = logging.getLogger("rembg_async")

#: Each success adds half a request to the requests in flight (TCP's window, from one) before
#: the first 429: 1.5 times a round trip, not twice, so the burst that meets the limit is less.
WINDOW_GROWTH: Final = 0.5
#: A rate that moves by this factor since it was last logged is logged again.
LOG_FACTOR: Final = 1.25


class AdaptiveLimiter:
    """The in-process `Limiter`: learns the server's short-term rate limit and keeps to it.

    ``requests_per_second`` fixes the rate instead (no learning); ``adaptive=False`` turns
    learning off (no pacing unless a rate is fixed; hold-offs still apply);
    ``max_concurrency`` caps the requests in flight; ``max_hold`` is the longest hold-off a
    server may impose on every caller. ``clock`` and ``sleep`` are for tests. One limiter may be
    shared by several clients (pass it as ``AsyncRembg(limiter=...)``).
    """

    def __init__(
        self,
        *,
        requests_per_second: float | None = None,
        max_concurrency: int | None = None,
        adaptive: bool = True,
        max_hold: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        check_limits(requests_per_second, max_concurrency)
        self._control = RateController(fixed=requests_per_second, adaptive=adaptive)
        self._max_concurrency = max_concurrency
        self._window = 1.0 if self._control.learning else math.inf  # in flight, in slow start
        self._max_hold = max_hold
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._turn = asyncio.Lock()
        self._last_start = -math.inf
        self._resume_at = 0.0
        self._last_wait = 1.0  # the server's last Retry-After
        self._logged: float | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = self.state
        rate = "unpaced" if state.rate is None else f"{state.rate:.3g}/s"
        return f"<AdaptiveLimiter {rate} ({state.source}) 429s={state.throttled}>"

    @property
    def state(self) -> RateLimitState:
        """A snapshot: rate in force, its source, the 429s seen."""
        now = self._clock()
        control = self._control
        return RateLimitState(
            rate=control.rate(now),
            source=control.source,
            ceiling=control.server_rate or control.ceiling,
            adaptive=control.learning,
            answered=control.answered,
            throttled=control.throttled,
            in_flight=self._in_flight,
            held_for=max(0.0, self._resume_at - now),
        )

    async def acquire(self) -> Permit:
        """Wait for a slot, then for this request's turn."""
        if self._closed:
            raise RuntimeError("this limiter is closed")
        await self._take_slot()
        try:
            await self._wait_for_turn()
        except BaseException:
            self._free_slot()
            raise
        return Permit(started_at=self._clock(), epoch=self._control.epoch)

    async def release(self, permit: Permit, answer: Answer | None) -> None:
        """Learn from the answer, then free the slot."""
        if answer is not None:
            self._learn(permit, answer, self._clock())
        self._free_slot()

    async def hold_off(self, seconds: float) -> None:
        """Start no request for ``seconds``."""
        self._hold(self._clock(), seconds)

    async def aclose(self) -> None:
        """Refuse new requests; callers still waiting for a slot get a RuntimeError."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("this limiter was closed"))

    def _hold(self, now: float, seconds: float) -> None:
        if 0 < seconds <= self._max_hold:
            self._resume_at = max(self._resume_at, now + seconds)

    def _cap(self) -> float:
        window = self._window if self._control.ceiling is None else math.inf
        return min(self._max_concurrency or math.inf, window)

    async def _take_slot(self) -> None:
        if self._in_flight < self._cap() and not self._waiters:
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is counted for us when we are woken
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._free_slot()  # woken and cancelled at once: pass the slot on
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise

    def _free_slot(self) -> None:
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._cap():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)

    async def _wait_for_turn(self) -> None:
        # One caller at a time waits for the next start, the others queue (FIFO) behind it; the
        # start is computed afresh after each sleep, so a cut or a hold-off applies at once.
        async with self._turn:
            while True:
                now = self._clock()
                rate = self._control.rate(now)
                interval = 1 / rate if rate else 0.0
                start = max(self._last_start + interval, self._resume_at)
                if start <= now:
                    break
                await self._sleep(start - now)
            # On time (a late wake-up is not made up for by a later start), unless idle.
            self._last_start = start if now - start < interval else now

    def _learn(self, permit: Permit, answer: Answer, now: float) -> None:
        hint = read_hint(answer.headers)
        if hint.rate is not None:
            self._control.told(hint.rate)
        if hint.exhausted_for is not None:
            self._hold(now, hint.exhausted_for)
        if answer.throttled:
            self._throttled(permit, answer, now)
        elif 200 <= answer.status < 300:
            self._control.succeeded(now, permit.started_at)
            self._window += WINDOW_GROWTH
            self._wake()
        else:
            self._control.answered_otherwise()
        self._log_change(now)

    def _throttled(self, permit: Permit, answer: Answer, now: float) -> None:
        wait = retry_after_seconds(answer.headers)
        last_wait = self._last_wait
        if wait is not None:
            self._last_wait = max(1.0, wait)
        # The server's wait holds every caller on the first 429 (the server's window is full),
        # on one this soon after a cut (which did not clear it: a fixed window, say), and when
        # not learning; otherwise the cut is enough, and cheaper than everyone idling.
        control = self._control
        everyone = control.epoch == 0 or now - control.cut_at < last_wait
        cut = control.throttle(now, permit.epoch, permit.started_at)
        if wait is not None and (not control.learning or (cut and everyone)):
            self._hold(now, wait)

    def _log_change(self, now: float) -> None:
        control = self._control
        rate, last = control.rate(now), self._logged
        if rate is None or (last is not None and 1 / LOG_FACTOR < rate / last < LOG_FACTOR):
            return
        self._logged = rate
        logger.info(
            "rate limit: now %.3g requests/s (%s; %d short-term 429s in %d answers)",
            rate,
            control.source,
            control.throttled,
            control.answered,
        )
