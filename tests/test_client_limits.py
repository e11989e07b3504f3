"""The client-side rate limiter: concurrency, pacing under the server's limit, holding off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from _simulation import FakeClock
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_image

from rembg_async import AsyncRembg, RateLimitError, RetryPolicy
from rembg_async._limits import AdaptiveLimiter
from rembg_async.server import RateLimits, ServerConfig

ANSWER = make_image((10, 10), "WEBP")


@pytest.fixture
async def counting_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that records how many requests it holds at once (each takes 50 ms)."""
    in_flight = [0]
    peaks: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        in_flight[0] += 1
        peaks.append(in_flight[0])
        await request.read()
        await asyncio.sleep(0.05)
        in_flight[0] -= 1
        return web.Response(body=ANSWER, content_type="image/webp")

    app = web.Application()
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), peaks
    await server.close()


async def run_many(client: AsyncRembg, count: int) -> None:
    """``count`` removals at once through one client."""

    async def one() -> None:
        await (await client.remove(make_image())).cleanup()

    await asyncio.gather(*(one() for _ in range(count)))


async def test_max_concurrency_is_shared_by_all_calls(
    counting_server: tuple[str, list[int]],
) -> None:
    """However many calls run at once, the server never sees more than max_concurrency."""
    url, peaks = counting_server
    async with AsyncRembg("k", base_url=url, max_concurrency=3) as client:
        await run_many(client, 12)
    assert len(peaks) == 12
    assert max(peaks) == 3


async def test_pacing_stays_under_the_servers_limit(rembg_server_factory) -> None:
    """Paced at 4 requests a second, 8 calls pass a 5-per-second limit with no 429."""
    limits = RateLimits(short_term_requests=5, short_term_window=1.0)
    server = rembg_server_factory(ServerConfig(rate_limits=limits))
    async with AsyncRembg(
        server.api_key, base_url=server.url, requests_per_second=4, max_retries=0
    ) as client:
        await run_many(client, 8)
        state = client.rate_limit
    # 429s are waited out apart from max_retries, so success alone would not show their absence
    assert (state.answered, state.throttled) == (8, 0)


async def test_without_pacing_the_same_burst_is_refused(rembg_server_factory) -> None:
    """The control: the same burst unpaced, adaptation and the 429 allowance off, meets a 429."""
    limits = RateLimits(short_term_requests=5, short_term_window=1.0)
    server = rembg_server_factory(ServerConfig(rate_limits=limits))
    retry = RetryPolicy(max_retries=0, rate_limited_for=0)
    async with AsyncRembg(
        server.api_key, base_url=server.url, retry=retry, adaptive_rate_limit=False
    ) as client:
        with pytest.raises(RateLimitError):
            await run_many(client, 8)


async def test_hold_off_delays_every_caller() -> None:
    """After a hold-off, the next starts wait for it; the spacing then applies after it."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(requests_per_second=10, clock=clock, sleep=clock.sleep)
    await limiter.hold_off(5)
    starts: list[float] = []

    async def one() -> None:
        permit = await limiter.acquire()
        starts.append(permit.started_at)
        await limiter.release(permit, None)

    tasks = [asyncio.create_task(one()) for _ in range(3)]
    await clock.run(until=10)
    await asyncio.gather(*tasks)
    assert starts == pytest.approx([5.0, 5.1, 5.2])


@pytest.mark.parametrize(("rps", "concurrency"), [(0, None), (-1, None), (None, 0)])
def test_bad_limits_are_refused(rps: float | None, concurrency: int | None) -> None:
    """Zero or negative limits are a ValueError, not a client that never sends."""
    with pytest.raises(ValueError, match="must be"):
        AdaptiveLimiter(requests_per_second=rps, max_concurrency=concurrency)
