"""A fake clock for asyncio, and a batch against a simulated sliding-window rate limit.

The limiter is driven by the real code under a virtual clock: time moves only when every task
waits, straight to the next wake-up, so a minute of traffic takes milliseconds and the result
does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from random import Random

import attrs

from rembg_async._limits import AdaptiveLimiter, Answer

#: How many times the driver lets other tasks run before it moves the clock.
SETTLE_ROUNDS = 8


class FakeClock:
    """Virtual time: ``sleep`` parks a task until :meth:`run` moves the clock past its wake-up."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time."""
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def run(self, until: float) -> None:
        """Move the clock from wake-up to wake-up until ``until`` (or nothing is left to wake)."""
        while True:
            for _ in range(SETTLE_ROUNDS):
                await asyncio.sleep(0)
            if not self._timers or self._timers[0][0] > until:
                self.now = until
                return
            self.now, _, future = heapq.heappop(self._timers)
            if not future.done():
                future.set_result(None)


class SlidingWindowServer:
    """At most ``limit`` admissions in any ``window`` seconds; a 429 says ``Retry-After`` in
    whole seconds, rounded up (as the local server does)."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._admitted: deque[float] = deque()

    def answer(self, now: float) -> Answer:
        """Admit (200) or refuse (429) a request arriving at ``now``."""
        while self._admitted and self._admitted[0] <= now - self.window:
            self._admitted.popleft()
        if len(self._admitted) >= self.limit:
            wait = self._admitted[0] + self.window - now
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
            return Answer(status=429, headers=headers, throttled=True)
        self._admitted.append(now)
        return Answer(status=200)


@attrs.define
class Tally:
    """What a simulated batch saw."""

    successes: list[float] = attrs.field(factory=list)
    refused: int = 0

    def rate_between(self, start: float, end: float) -> float:
        """Successes per second in ``[start, end)``."""
        return sum(1 for moment in self.successes if start <= moment < end) / (end - start)

    def reached(self, rate: float, start: float, within: float) -> bool:
        """Whether successes over some 2 s ending in ``(start, start + within]`` came at
        ``rate`` a second or more (as ``benchmarks/rate_limited.py`` measures a recovery)."""
        ends = (start + tick / 10 for tick in range(1, round(within * 10) + 1))
        return any(self.rate_between(end - 2, end) >= rate for end in ends)

    @property
    def refused_share(self) -> float:
        """The share of answers that were 429s."""
        return self.refused / max(1, self.refused + len(self.successes))


async def simulate(
    server: SlidingWindowServer,
    *,
    seconds: float,
    concurrency: int = 8,
    latency: float = 0.05,
    jitter: float = 0.0,
    seed: int = 0,
    limiter: AdaptiveLimiter | None = None,
    clock: FakeClock | None = None,
    change: tuple[float, int] | None = None,
) -> Tally:
    """``concurrency`` workers send requests for ``seconds`` through the limiter; a refused
    request waits its ``Retry-After`` and goes again. ``change=(t, limit)`` moves the limit;
    each request reaches the server up to ``jitter`` seconds late (seeded by ``seed``)."""
    clock = clock or FakeClock()
    limiter = limiter or AdaptiveLimiter(clock=clock, sleep=clock.sleep)
    tally = Tally()
    random = Random(seed)

    async def worker() -> None:
        while True:
            permit = await limiter.acquire()
            await clock.sleep(latency / 2 + random.uniform(0, jitter))
            answer = server.answer(clock.now)
            await clock.sleep(latency / 2)
            await limiter.release(permit, answer)
            if answer.throttled:
                tally.refused += 1
                await clock.sleep(float(answer.headers["Retry-After"]))
            else:
                tally.successes.append(clock.now)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    if change is not None:
        await clock.run(change[0])
        server.limit = change[1]
    await clock.run(seconds)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return tally
