"""What runs on each Dask worker: one `AsyncRembg` per worker, and the task for one image.

The plugin's async ``setup`` makes the worker's client (and its Redis limiter, when the run
shares one) on the worker's event loop; ``teardown`` closes them. A task runs on that loop
too, so it must never block it (a blocked loop stalls the worker's heartbeats): the client
makes no file call on its loop. A task never raises for an image's failure: it returns an
`Outcome` that the driver turns back into a `BatchItem` (our exceptions cannot all be pickled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import attrs
from distributed import WorkerPlugin, get_worker

from .._budget import BudgetExhaustedError
from .._client import AsyncRembg
from .._exceptions import APIStatusError, RembgError
from .._limits import was_refused
from .._options import RemoveOptions


@attrs.frozen(kw_only=True)
class Outcome:
    """One image's outcome, as it travels from the worker to the driver."""

    index: int
    output: str | None = None
    error_type: str | None = None
    error_message: str = ""
    status: int | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    attempts: int = 0
    worker: str = ""
    #: The limiter refused to start it (nothing was sent): the driver puts it back.
    refused: bool = False
    #: A spent budget's figures (spent, max_credits).
    budget: tuple[int, int] | None = None
    #: Served by the worker's result cache (``client_options={"cache": ...}``): nothing sent.
    cached: bool = False


class ClientPlugin(WorkerPlugin):
    """Gives each worker one client, at most ``concurrency`` images at once."""

    def __init__(
        self,
        name: str,
        client_options: Mapping[str, Any],
        concurrency: int,
        redis_url: str | None,
        limiter_options: Mapping[str, Any],
    ) -> None:
        self.name = name
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
    plugin_name: str, index: int, value: Any, options: RemoveOptions, target: str
) -> Outcome:
    """Remove ``value``'s background into ``target`` with this worker's client."""
    worker = get_worker()
    plugin = cast(ClientPlugin, worker.plugins[plugin_name])
    assert plugin.client is not None
    assert plugin.slots is not None
    async with plugin.slots:
        try:
            result = await plugin.client.remove(value, options, output_path=target)
        except Exception as error:  # the image's own failure: told to the driver
            return failed(index, error, worker.address)
    output = result.url or str(result.output_image_path)  # a remote result: its URL
    if result.cached:
        return Outcome(index=index, output=output, worker=worker.address, cached=True)
    return Outcome(index=index, output=output, attempts=1, worker=worker.address)


def failed(index: int, error: Exception, worker: str) -> Outcome:
    """The outcome of a failure, in plain values."""
    status = error.status if isinstance(error, APIStatusError) else None
    headers = error.headers if isinstance(error, APIStatusError) else {}
    return Outcome(
        index=index,
        error_type=type(error).__name__,
        error_message=error.message if isinstance(error, APIStatusError) else str(error),
        status=status,
        headers=dict(headers),
        attempts=error.attempts if isinstance(error, RembgError) else 1,
        worker=worker,
        refused=was_refused(error),
        budget=(error.spent, error.max_credits)
        if isinstance(error, BudgetExhaustedError)
        else None,
    )


def _figures(error: Exception) -> tuple[int, int] | None:
    """A spent budget's (spent, max_credits), which its error cannot carry through pickle."""
    if isinstance(error, BudgetExhaustedError):
        return error.spent, error.max_credits
    return None
