"""The client under the local server's short-term limit: no failed item, a learned rate."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_image

from rembg_async import (
    AdaptiveLimiter,
    AsyncRembg,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from rembg_async.server import Fault, LocalServer, RateLimits, ServerConfig

ROOT = Path(__file__).parent.parent
LIMIT = 5  # requests a second


@pytest.fixture
def limited_server(rembg_server_factory) -> LocalServer:  # type: ignore[no-untyped-def]
    """The local server admitting LIMIT requests a second, with fault injection on."""
    limits = RateLimits(short_term_requests=LIMIT, short_term_window=1.0, daily_anonymous=0)
    server: LocalServer = rembg_server_factory(ServerConfig(rate_limits=limits, faults=True))
    return server


async def test_a_batch_under_a_tight_limit_ends_with_no_failed_item(
    limited_server: LocalServer,
) -> None:
    """30 images at 5 a second with default settings: all made, and the rate was learned."""
    images = [make_image((20 + n, 16)) for n in range(30)]
    async with AsyncRembg(limited_server.api_key, base_url=limited_server.url) as client:
        async with client.remove_many(images) as run:
            items = [item async for item in run]
        for item in items:
            if item.result is not None:
                await item.result.cleanup()
        state = client.rate_limit
    assert [item.error for item in items if not item.ok] == []
    assert state.throttled >= 1
    assert state.source == "learned"
    # Converged near the limit (wide: a busy 2-core machine shifts timings).
    assert state.ceiling is not None
    assert 0.5 * LIMIT <= state.ceiling <= 1.6 * LIMIT
    assert state.throttled_share <= 0.3


async def test_without_adaptation_or_the_429_allowance_the_batch_fails_items(
    limited_server: LocalServer,
) -> None:
    """The control: unpaced, and 429s failing at once, the same batch fails items."""
    images = [make_image((20 + n, 16)) for n in range(30)]
    retry = RetryPolicy(max_retries=0, rate_limited_for=0)
    async with AsyncRembg(
        limited_server.api_key,
        base_url=limited_server.url,
        retry=retry,
        adaptive_rate_limit=False,
    ) as client:
        async with client.remove_many(images) as run:
            items = [item async for item in run]
        for item in items:
            if item.result is not None:
                await item.result.cleanup()
    assert any(isinstance(item.error, RateLimitError) for item in items)


async def test_max_retries_zero_gives_up_on_5xx_but_waits_out_429s(
    limited_server: LocalServer,
) -> None:
    """With max_retries=0 a 500 is raised after one attempt; two 429s are waited out."""
    async with AsyncRembg(
        limited_server.api_key, base_url=limited_server.url, max_retries=0
    ) as client:
        limited_server.faults.push(Fault(status=500))
        with pytest.raises(ServerError) as caught:
            await client.remove(make_image())
        assert caught.value.attempts == 1
        limited_server.faults.push(Fault(status=429, retry_after="0"), times=2)
        result = await client.remove(make_image())
        await result.cleanup()
        assert client.rate_limit.throttled == 2


async def test_a_daily_limit_still_stops_at_once(limited_server: LocalServer) -> None:
    """A daily 429, even with a short Retry-After, is raised after one attempt."""
    async with AsyncRembg(limited_server.api_key, base_url=limited_server.url) as client:
        limited_server.faults.push(Fault(status=429, retry_after="1", scope="daily"))
        with pytest.raises(RateLimitError) as caught:
            await client.remove(make_image())
    assert (caught.value.scope, caught.value.attempts) == ("daily", 1)


async def test_the_429_allowance_is_bounded_in_time(limited_server: LocalServer) -> None:
    """A server that only ever says 429 is given up on once the allowance has passed."""
    retry = RetryPolicy(rate_limited_for=0.5)
    async with AsyncRembg(
        limited_server.api_key, base_url=limited_server.url, retry=retry
    ) as client:
        limited_server.faults.push(Fault(status=429, retry_after="0"), times=1000)
        with pytest.raises(RateLimitError) as caught:
            await client.remove(make_image())
    assert caught.value.attempts >= 2
    assert caught.value.scope == "short_term"


@pytest.fixture
async def policy_server() -> AsyncIterator[str]:
    """A server that states its policy in the IETF fields on every answer."""

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        headers = {"RateLimit-Policy": '"burst";q=4;w=1', "RateLimit": '"burst";r=3;t=1'}
        return web.Response(body=make_image((4, 4), "WEBP"), headers=headers,
                            content_type="image/webp")  # fmt: skip

    app = web.Application()
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def test_a_stated_policy_sets_the_rate(policy_server: str) -> None:
    """RateLimit-Policy q=4;w=1 on an answer: the client paces at 4 a second from then on."""
    async with AsyncRembg("key", base_url=policy_server) as client:
        assert client.rate_limit.rate is None
        await (await client.remove(make_image())).cleanup()
        assert (client.rate_limit.rate, client.rate_limit.source) == (4.0, "server")


async def test_one_limiter_shared_by_two_clients(policy_server: str) -> None:
    """A limiter passed in is the one both clients use (and they leave it open)."""
    limiter = AdaptiveLimiter(max_concurrency=2)
    async with AsyncRembg("key", base_url=policy_server, limiter=limiter) as first:
        await (await first.remove(make_image())).cleanup()
    async with AsyncRembg("key", base_url=policy_server, limiter=limiter) as second:
        assert second.rate_limit.answered == 1
        await (await second.remove(make_image())).cleanup()
    assert limiter.state.answered == 2
    with pytest.raises(ValueError, match="limiter"):
        AsyncRembg("key", limiter=limiter, requests_per_second=3)


def test_cli_rps_and_the_summary_show_the_rate_and_429s(
    limited_server: LocalServer, tmp_path: Path
) -> None:
    """`remove --rps` paces at that rate; the summary shows the rate in force and the 429s."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for number in range(6):
        (inputs / f"image-{number}.png").write_bytes(make_image((20 + number, 16)))
    command = [sys.executable, "-m", "rembg_async", "remove", str(inputs), "-o",
               str(tmp_path / "out"), "--base-url", limited_server.url,
               "--api-key", str(limited_server.api_key)]  # fmt: skip
    fixed = subprocess.run([*command, "--rps", "4"], capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    assert "4/s (fixed)" in fixed.stderr
    assert "429s" in fixed.stderr
