"""A stopped batch sends nothing more: ``BatchRun.stop()`` and a batch-wide refusal call back
the images still waiting in the rate limiter; those on the wire finish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli_stops import Arrivals, images, manifest_lines, slow_server

from rembg_async import (
    APIConnectionError,
    AsyncRembg,
    BatchItem,
    BatchRun,
    RateLimitError,
    RembgError,
    RetryPolicy,
    failed_inputs,
)
from rembg_async.server import Account, Fault, LocalServer, RateLimits, ServerConfig

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


class RetryWaits(logging.Handler):
    """Set when an image of the batch begins to wait for its retry (the policy logs it)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.begun = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying in" in record.getMessage():
            self.begun.set()


@pytest.fixture
def retry_waits() -> Iterator[RetryWaits]:
    """A `RetryWaits` on the retry logger, for the test's duration."""
    handler = RetryWaits()
    logger = logging.getLogger("rembg_async.retry")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def failing_once(factory: Any, fault: Fault) -> tuple[LocalServer, Arrivals]:
    """A server that answers the first request with ``fault``, the others at once."""
    config = ServerConfig(
        accounts=[Account(api_key=KEY, credits=10**6)],
        rate_limits=RateLimits(short_term_requests=0),
        faults=True,
    )
    server: LocalServer = factory(config)
    server.faults.push(fault)
    return server, Arrivals(server)


async def stopped_in_its_retry_wait(
    server: LocalServer, paths: list[Path], waits: RetryWaits, **batch: Any
) -> tuple[int, list[BatchItem], list[Any], BatchRun]:
    """Run a batch of ``paths``, stop it once an image waits for its retry: the count in flight
    then, the items yielded, the inputs not started, and the run."""
    retry = RetryPolicy(max_retries=2, initial_backoff=5, max_backoff=5)
    async with (
        AsyncRembg(KEY, base_url=server.url, retry=retry) as client,
        client.remove_many(paths, concurrency=1, **batch) as run,
    ):

        async def stop_in_the_wait() -> int:
            await waits.begun.wait()
            run.stop()
            return run.progress().in_flight

        stopper = asyncio.create_task(stop_in_the_wait())
        items = [item async for item in run]
        in_flight = await asyncio.wait_for(stopper, 30)
        not_started = [value async for value in run.remaining]
    return in_flight, items, not_started, run


@pytest.mark.parametrize("status", [503, 429])
async def test_a_stop_in_a_retry_wait_sends_no_retry(
    rembg_server_factory: Any, tmp_path: Path, retry_waits: RetryWaits, status: int
) -> None:
    """An image waiting out a free 503's or 429's Retry-After is not in flight; stop() ends
    its wait, nothing more is sent, and it goes back among the inputs not started."""
    server, arrivals = failing_once(rembg_server_factory, Fault(status=status, retry_after="5"))
    paths = sorted(images(tmp_path / "in", 1).iterdir())
    in_flight, items, not_started, run = await stopped_in_its_retry_wait(server, paths, retry_waits)
    assert in_flight == 0
    assert items == []
    assert not_started == paths
    assert arrivals.count == 1
    assert run.cancelled == []
    assert run.credits == 0


async def test_a_stop_in_a_retry_wait_after_a_charged_attempt_fails_the_image(
    rembg_server_factory: Any, tmp_path: Path, retry_waits: RetryWaits
) -> None:
    """An upload dropped midway may have been charged: stopped in its retry's wait, the image
    sends nothing more and fails with that error, in the manifest for ``--retry-failed``."""
    server, arrivals = failing_once(rembg_server_factory, Fault(drop="upload"))
    paths = sorted(images(tmp_path / "in", 1).iterdir())
    manifest = tmp_path / "manifest.jsonl"
    in_flight, items, not_started, run = await stopped_in_its_retry_wait(
        server, paths, retry_waits, manifest=manifest
    )
    assert in_flight == 0
    assert [(item.status, item.attempts, item.credits) for item in items] == [("failed", 1, 1)]
    assert isinstance(items[0].error, APIConnectionError)
    assert not_started == []
    assert arrivals.count == 1
    assert run.credits == 1
    assert failed_inputs(manifest) == [str(paths[0])]


async def test_a_stop_while_an_attempt_is_on_the_wire_withholds_its_retry(
    rembg_server_factory: Any, tmp_path: Path
) -> None:
    """stop() while a request the server will answer 503 is on the wire: it counts in flight,
    ends, and is not retried; the image, charged nothing, is not started."""
    server, arrivals = failing_once(rembg_server_factory, Fault(status=503, latency=2))
    paths = sorted(images(tmp_path / "in", 1).iterdir())
    retry = RetryPolicy(max_retries=2, initial_backoff=0.1, max_backoff=0.1)
    async with (
        AsyncRembg(KEY, base_url=server.url, retry=retry) as client,
        client.remove_many(paths, concurrency=1) as run,
    ):

        async def stop_on_the_wire() -> int:
            await asyncio.to_thread(arrivals.wait_for, 1)
            run.stop()
            return run.progress().in_flight

        stopper = asyncio.create_task(stop_on_the_wire())
        items = [item async for item in run]
        in_flight = await asyncio.wait_for(stopper, 30)
        not_started = [value async for value in run.remaining]
    assert in_flight == 1
    assert items == []
    assert not_started == paths
    assert arrivals.count == 1


async def test_items_ended_but_not_yielded_when_closed_are_counted_and_written(
    rembg_server_factory: Any, tmp_path: Path
) -> None:
    """Left after the first item, once the others have ended (one made, one failed): the
    batch's closing puts them in ``leftovers``, counts them and writes their manifest lines."""
    server, _ = slow_server(rembg_server_factory, Fault(), Fault(status=500))
    paths = sorted(images(tmp_path / "in", 3).iterdir())
    manifest = tmp_path / "manifest.jsonl"
    failures = asyncio.Event()

    class Told(RetryPolicy):
        def delay(self, error: RembgError, attempt: int) -> float | None:
            failures.set()  # the image ends at once: its delay is None
            return super().delay(error, attempt)

    async with (
        AsyncRembg(KEY, base_url=server.url, retry=Told(max_retries=0)) as client,
        client.remove_many(paths, output_dir=tmp_path / "out", manifest=manifest) as run,
    ):
        first = await anext(aiter(run))
        await failures.wait()
        while run.credits < 2:  # the other one made (its credit counts as it ends)
            await asyncio.sleep(0.01)
    assert first.ok
    assert sorted(item.status for item in run.leftovers) == ["failed", "ok"]
    assert {first.input, *(item.input for item in run.leftovers)} == set(paths)
    assert (run.progress().done, run.progress().failed) == (2, 1)
    lines = manifest_lines(manifest)
    assert [line["status"] for line in lines] == ["failed", "ok", "ok"]
    failed = next(item for item in run.leftovers if not item.ok)
    assert failed_inputs(manifest) == [str(failed.input)]
