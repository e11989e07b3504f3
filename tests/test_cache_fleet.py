"""The result cache with the Redis fleet and with Dask workers, against the local server over
loopback (credits counted from its usage endpoint): a hit takes nothing from the fleet, and
workers given a cache pay once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image

from rembg_async import AsyncRembg, BudgetExhaustedError
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer, RateLimits, ServerConfig
from tests._valkey import Valkey

COUNT = 3


@pytest.fixture
def server(rembg_server_factory: Any) -> LocalServer:
    """No rate limits."""
    limits = RateLimits(short_term_requests=0, daily_anonymous=0)
    started: LocalServer = rembg_server_factory(ServerConfig(rate_limits=limits))
    return started


def images(folder: Path, count: int = COUNT) -> list[str]:
    """``count`` small images, each its own, by path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"img-{number}.png"
        path.write_bytes(make_image((40 + number, 30)))
        paths.append(str(path))
    return paths


async def spent(server: LocalServer) -> int:
    """Credits the server has charged the test key."""
    async with AsyncRembg(TEST_API_KEY, base_url=server.url) as client:
        return (await client.membership_usage()).api_usage


async def test_a_fleet_member_serves_hits_after_the_fleets_budget_is_spent(
    server: LocalServer, valkey: Valkey, namespace: str, tmp_path: Path
) -> None:
    """Two members of one Redis fleet (max_credits = 3) share a cache: the first spends the
    budget; the second, on the same images, is served all of them from the cache (a hit asks
    the fleet for no permit and no credit), and only a new image is refused."""
    pytest.importorskip("redis", reason="the fleet needs the redis extra")
    from rembg_async.redis import RedisLimiter

    paths, cache = images(tmp_path / "in"), tmp_path / "cache"
    fleet = {"namespace": namespace, "max_credits": COUNT}
    for member in ("first", "second"):
        async with (
            RedisLimiter.from_url(valkey.url, **fleet) as limiter,
            AsyncRembg(TEST_API_KEY, base_url=server.url, limiter=limiter, cache=cache) as client,
        ):
            out = tmp_path / member
            items = [item async for item in client.remove_many(paths, output_dir=out)]
            assert [item.error for item in items] == [None] * COUNT
            assert [item.cached for item in items] == [member == "second"] * COUNT
            if member == "second":
                with pytest.raises(BudgetExhaustedError):
                    await client.remove(make_image((99, 30)))
    assert await spent(server) == COUNT


def test_dask_workers_given_a_cache_pay_once(server: LocalServer, tmp_path: Path) -> None:
    """``remove --dask local:1 --cache DIR`` twice, the second into a fresh folder: the
    workers get the cache, the second run costs nothing, its lines and summary say cached."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    images(tmp_path / "in")
    command = [sys.executable, "-m", "rembg_async", "remove", str(tmp_path / "in")]
    command += ["--base-url", server.url, "--api-key", TEST_API_KEY, "--dask", "local:1"]
    command += ["--cache", str(tmp_path / "cache")]
    for out in ("one", "two"):
        run = [*command, "-o", str(tmp_path / out)]
        second = subprocess.run(run, capture_output=True, text=True, timeout=180, check=False)
        assert second.returncode == 0, second.stderr
    assert sum(line.endswith(" (cached)") for line in second.stdout.splitlines()) == COUNT
    assert f"made {COUNT}, skipped 0, failed 0, cancelled 0, cached {COUNT}" in second.stderr
    assert any(line.endswith("credits 0") for line in second.stderr.splitlines())
    assert len(list((tmp_path / "two").glob("*.webp"))) == COUNT
    assert asyncio.run(spent(server)) == COUNT
