"""A fleet member in its own process, for the Redis tests.

``python tests/_fleet_member.py URL NAMESPACE COUNT [RPS]``: ``count`` permits from a
`RedisLimiter`, each released with a 200; prints the Redis times they were given to start at.

``python tests/_fleet_member.py --requests URL NAMESPACE BASE_URL KEY SECONDS``: four loops of
real requests to the server at ``BASE_URL`` for ``seconds``, through a client sharing a
learning `RedisLimiter`; prints, for each request, when its permit was granted and when it
started (wall-clock seconds, the clock Redis' ``TIME`` reads on this machine).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import sys
import time
from types import SimpleNamespace

import aiohttp
from conftest import make_image

from rembg_async import AsyncRembg
from rembg_async._limits import Answer, Permit, RateLimitState
from rembg_async.redis import RedisLimiter


async def main(url: str, namespace: str, count: int, rate: float | None) -> None:
    """Acquire and release ``count`` times, four at once."""
    starts: list[float] = []
    async with RedisLimiter.from_url(url, namespace=namespace, requests_per_second=rate) as limiter:

        async def one() -> None:
            permit = await limiter.acquire()
            starts.append(permit.started_at)
            await limiter.release(permit, Answer(status=200))

        for first in range(0, count, 4):
            await asyncio.gather(*(one() for _ in range(min(4, count - first))))
    print(json.dumps(starts))


#: When the permit of the request being made in this task was granted.
GRANTED: contextvars.ContextVar[float] = contextvars.ContextVar("granted", default=math.nan)


class Noting:
    """The member's limiter, noting when each permit is granted (in the caller's context, so
    the request that follows in the same task finds it)."""

    def __init__(self, limiter: RedisLimiter) -> None:
        self._limiter = limiter

    async def acquire(self) -> Permit:
        """The limiter's permit; the moment it came is noted."""
        permit = await self._limiter.acquire()
        GRANTED.set(time.time())
        return permit

    async def release(self, permit: Permit, answer: Answer | None) -> None:
        """As the limiter."""
        await self._limiter.release(permit, answer)

    async def hold_off(self, seconds: float) -> None:
        """As the limiter."""
        await self._limiter.hold_off(seconds)

    async def aclose(self) -> None:
        """As the limiter."""
        await self._limiter.aclose()

    @property
    def state(self) -> RateLimitState:
        """As the limiter."""
        return self._limiter.state


async def requests(url: str, namespace: str, base_url: str, key: str, seconds: float) -> None:
    """Four loops of ``remove`` until ``seconds`` have passed; prints [granted, started] pairs."""
    log: list[tuple[float, float]] = []

    async def started(_: object, __: SimpleNamespace, params: object) -> None:
        log.append((GRANTED.get(), time.time()))

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(started)
    image = make_image((24, 16))
    deadline = time.monotonic() + seconds
    async with (
        RedisLimiter.from_url(url, namespace=namespace) as limiter,
        aiohttp.ClientSession(trace_configs=[tracing]) as session,
        AsyncRembg(key, base_url=base_url, limiter=Noting(limiter), session=session) as client,
    ):

        async def loop() -> None:
            while time.monotonic() < deadline:
                await (await client.remove(image)).cleanup()

        await asyncio.gather(*(loop() for _ in range(4)))
    print(json.dumps(log))


if __name__ == "__main__":
    if sys.argv[1] == "--requests":
        url, namespace, base_url, key, seconds = sys.argv[2:7]
        asyncio.run(requests(url, namespace, base_url, key, float(seconds)))
    else:
        rate = float(sys.argv[4]) if len(sys.argv) > 4 else None
        asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), rate))
