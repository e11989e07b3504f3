"""On each Dask worker: one `AsyncRembg`, made and closed on the worker's loop by a plugin, and
the task for one image, which never blocks that loop (the client makes no file call there) and
returns an `Outcome` (our errors may not pickle)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import attrs
from distributed import WorkerPlugin, get_worker

from .._budget import BudgetExhaustedError
from .._client import AsyncRembg
from .._exceptions import APIStatusError, RembgError, error_from_message
from .._limits import was_refused
from .._options import RemoveOptions


@attrs.frozen(kw_only=True)
class Outcome:
    """One image's outcome, as it travels from the worker to the driver."""

    output: str | Path | None = None  # a URL, or a local path
    error_type: str | None = None
    error_message: str = ""
    status: int | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    attempts: int = 0
    #: The limiter refused to start it (nothing was sent): the driver puts it back.
    refused: bool = False
    #: A spent budget's figures (spent, max_credits).
    budget: tuple[int, int] | None = None
    #: Served by the worker's result cache (``client_options={"cache": ...}``): nothing sent.
    cached: bool = False

    def error(self) -> RembgError:
        """The worker's error, made again on the driver (as its class when it is the server's)."""
        error: RembgError
        if self.status is not None:
            error = error_from_message(self.status, self.error_message, self.headers)
        elif self.budget is not None:
            error = BudgetExhaustedError(*self.budget)
        else:
            error = RembgError(f"{self.error_type}: {self.error_message}")
        error.attempts = self.attempts
        return error


class ClientPlugin(WorkerPlugin):
    """Gives each worker one client, at most ``concurrency`` images at once; named apart, so
    that two runs on one cluster keep their clients apart."""

    def __init__(
        self,
        client_options: Mapping[str, Any],
        concurrency: int,
        redis_url: str | None,
        limiter_options: Mapping[str, Any],
    ) -> None:
        self.name = f"rembg-async-{uuid.uuid4().hex[:12]}"
        self._client_options = dict(client_options)
        self._concurrency = concurrency
        self._redis_url = redis_url
        self._limiter_options = dict(limiter_options)
        self.client: AsyncRembg | None = None
        self.slots: asyncio.Semaphore | None = None
        self._limiter: Any = None

    async def setup(self, worker: Any) -> None:
        """Make the worker's client (and limiter) on its loop."""
        options = dict(self._client_options)
        if self._redis_url is not None:
            from ..redis import RedisLimiter

            self._limiter = RedisLimiter.from_url(self._redis_url, **self._limiter_options)
            options["limiter"] = self._limiter
        self.client = AsyncRembg(**options)
        self.slots = asyncio.Semaphore(self._concurrency)

    async def teardown(self, worker: Any) -> None:
        """Close them."""
        if self.client is not None:
            await self.client.aclose()
        if self._limiter is not None:
            await self._limiter.aclose()


async def remove_on_worker(
    plugin_name: str, value: Any, options: RemoveOptions, target: str
) -> Outcome:
    """Remove ``value``'s background into ``target`` with this worker's client."""
    plugin = cast(ClientPlugin, get_worker().plugins[plugin_name])
    assert plugin.client is not None
    assert plugin.slots is not None
    async with plugin.slots:
        try:
            result = await plugin.client.remove(value, options, output_path=target)
        except Exception as error:  # the image's own failure: told to the driver
            return failed(error)
    output = result.url or result.output_image_path  # a remote result: its URL
    return Outcome(output=output, cached=result.cached, attempts=0 if result.cached else 1)


def failed(error: Exception) -> Outcome:
    """The outcome of a failure, in plain values."""
    api = error if isinstance(error, APIStatusError) else None
    budget = error if isinstance(error, BudgetExhaustedError) else None
    return Outcome(
        error_type=type(error).__name__,
        error_message=api.message if api else str(error),
        status=api.status if api else None,
        headers=dict(api.headers) if api else {},
        attempts=error.attempts if isinstance(error, RembgError) else 1,
        refused=was_refused(error),
        budget=(budget.spent, budget.max_credits) if budget else None,
    )
