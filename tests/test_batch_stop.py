"""A stopped batch sends nothing more: ``BatchRun.stop()`` and a batch-wide refusal call back
the images still waiting in the rate limiter; those on the wire finish."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_cli_stops import images, slow_server

from rembg_async import AsyncRembg, RateLimitError
from rembg_async.server import Fault

KEY = "cli-key"


async def test_stop_sends_nothing_that_waits_in_the_limiter(
    rembg_server_factory: Any, tmp_path: Path
) -> None:
    """After the first image the limiter lets two go and holds six: stop() then counts two in
    flight, those two are yielded, nothing else reaches the server, nine are not started."""
    server, arrivals = slow_server(rembg_server_factory, Fault(latency=2))
    paths = sorted(images(tmp_path / "in", 12).iterdir())
    made = []
    async with (
        AsyncRembg(KEY, base_url=server.url) as client,
        client.remove_many(paths, concurrency=8) as run,
    ):
        async for item in run:
            made.append(item)
            await item.result.cleanup()  # type: ignore[union-attr]
            if len(made) == 1:
                await asyncio.to_thread(arrivals.wait_for, 3)
                run.stop()
                assert run.progress().in_flight == 2
        not_started = [value async for value in run.remaining]
    assert [item.ok for item in made] == [True] * 3
    assert sorted(not_started) == sorted(set(paths) - {item.input for item in made})
    assert arrivals.count == 3
    assert run.cancelled == []


async def test_a_daily_limit_sends_nothing_that_waits_in_the_limiter(
    rembg_server_factory: Any, tmp_path: Path
) -> None:
    """The second image meets the daily limit while the third is on the wire: the batch stops,
    the third finishes, the others waiting in the limiter are never sent."""
    daily = Fault(status=429, scope="daily", latency=1)  # once the third is on the wire too
    server, arrivals = slow_server(rembg_server_factory, Fault(latency=2), daily)
    paths = sorted(images(tmp_path / "in", 12).iterdir())
    async with (
        AsyncRembg(KEY, base_url=server.url, max_retries=0) as client,
        client.remove_many(paths, concurrency=8) as run,
    ):
        items = [item async for item in run]
        for item in items:
            if item.result is not None:
                await item.result.cleanup()  # type: ignore[union-attr]
        not_started = [value async for value in run.remaining]
    assert isinstance(run.stopped, RateLimitError)
    assert sorted(item.status for item in items) == ["failed", "ok", "ok"]
    assert len(not_started) == 9
    assert arrivals.count == 3
