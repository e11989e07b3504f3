"""remove_many: many images with bounded concurrency, results as they complete.

Inputs are pulled lazily, never more than ``concurrency`` ahead, so a million paths (or an
endless generator) never become a million tasks. One item's failure is recorded and the others
go on. With an output folder a re-run can skip what is done, and a manifest (JSON lines)
records every outcome. A daily or monthly limit stops the batch from starting new work.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiofiles
import attrs

from ._closing import AsyncClosing
from ._exceptions import RateLimitError, RembgError
from ._options import RemoveOptions
from ._paths import output_path_for
from ._progress import ProgressCallback, ProgressEvent, call_back
from ._results import Base64Image, ImageFile

if TYPE_CHECKING:
    from ._client import AsyncRembg


@attrs.frozen(kw_only=True)
class BatchItem:
    """The outcome of one input: a ``result``, an ``error``, or ``skipped`` (already done).

    ``output_path`` is where the result is (or, when skipped, already was).
    """

    input: Any
    index: int
    result: ImageFile | Base64Image | None = None
    error: BaseException | None = None
    skipped: bool = False
    output_path: Path | None = None

    @property
    def ok(self) -> bool:
        """True when the image was made now or before (skipped), False when it failed."""
        return self.error is None

    @property
    def status(self) -> str:
        """``"ok"``, ``"skipped"`` or ``"failed"``."""
        return "failed" if self.error is not None else "skipped" if self.skipped else "ok"


@attrs.frozen(kw_only=True)
class BatchProgress:
    """Where a batch stands: items ``done`` (made or skipped), ``failed``, ``in_flight``, of
    ``total`` (None when the inputs have no length); bytes sent and received; the ``rate`` in
    items per second and the seconds ``estimated`` to finish (when the total is known)."""

    done: int
    failed: int
    in_flight: int
    total: int | None
    bytes_up: int
    bytes_down: int
    rate: float | None
    estimated: float | None

    @property
    def finished(self) -> int:
        """Items that have ended, well or not."""
        return self.done + self.failed


#: A batch progress callback: a plain function, or a coroutine function (awaited in turn).
BatchProgressCallback = Callable[[BatchProgress], object]
#: A per-item progress callback: the item's index, its input, and one of its progress events.
ItemProgressCallback = Callable[[int, Any, ProgressEvent], object]


class BatchRun(AsyncClosing):
    """The running batch: an async iterator of :class:`BatchItem`, in completion order.

    Leaving ``async with`` (or ``await run.aclose()``) cancels the work in flight and cleans
    up; so does cancelling the task that iterates. ``stopped`` is the daily or monthly
    :class:`RateLimitError` that stopped the batch, if one did; ``remaining`` then yields the
    inputs that were never started.
    """

    def __init__(
        self,
        client: AsyncRembg,
        inputs: Iterable[Any] | AsyncIterable[Any],
        options: RemoveOptions | None,
        *,
        concurrency: int,
        output_dir: Path | None,
        on_progress: BatchProgressCallback | None,
        on_item_progress: ItemProgressCallback | None,
        skip_existing: bool,
        manifest: Path | None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if skip_existing and output_dir is None:
            raise ValueError("skip_existing needs an output_dir to look in")
        self._client = client
        self._inputs = _async_iterator(inputs)
        self._total = len(inputs) if hasattr(inputs, "__len__") else None  # type: ignore[arg-type]
        self._options = options or RemoveOptions()
        self._concurrency = concurrency
        self._output_dir = output_dir
        self._on_progress = on_progress
        self._on_item_progress = on_item_progress
        self._skip_existing = skip_existing
        self._manifest_path = manifest
        self._names: set[str] = set()
        self._counts = {"done": 0, "failed": 0, "up": 0, "down": 0}
        self._started_at = time.monotonic()
        self._in_flight: set[asyncio.Task[BatchItem]] = set()
        self._items = self._run()
        self.stopped: RateLimitError | None = None

    @property
    def remaining(self) -> AsyncIterator[Any]:
        """The inputs not pulled yet (after a stop, those never started)."""
        return self._inputs

    def __aiter__(self) -> BatchRun:
        return self

    async def __anext__(self) -> BatchItem:
        return await self._items.__anext__()

    async def _close_on_exit(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the work in flight and release everything. Safe to call twice."""
        await self._items.aclose()

    async def _run(self) -> AsyncGenerator[BatchItem, None]:
        manifest = await _open_manifest(self._manifest_path)
        index = 0
        exhausted = False
        undelivered: list[asyncio.Task[BatchItem]] = []
        try:
            while True:
                while (
                    not exhausted
                    and self.stopped is None
                    and len(self._in_flight) < self._concurrency
                ):
                    try:
                        value = await self._inputs.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    self._in_flight.add(asyncio.ensure_future(self._one(index, value)))
                    index += 1
                if not self._in_flight:
                    return
                finished, self._in_flight = await asyncio.wait(
                    self._in_flight, return_when=asyncio.FIRST_COMPLETED
                )
                undelivered.extend(finished)
                while undelivered:
                    item = undelivered.pop(0).result()
                    await self._account(item, manifest)
                    yield item
        finally:
            # Work in flight is cancelled; finished items nobody received are cleaned up too.
            await _cancel_all(self._in_flight | set(undelivered))
            self._in_flight.clear()
            if manifest is not None:
                await manifest.close()

    async def _one(self, index: int, value: Any) -> BatchItem:
        target = self._target(index, value)
        if self._skip_existing and target is not None and await asyncio.to_thread(target.exists):
            return BatchItem(input=value, index=index, skipped=True, output_path=target)
        try:
            result = await self._client.remove(
                value,
                self._options,
                output_path=target,
                on_upload_progress=self._count("up", index, value),
                on_download_progress=self._count("down", index, value),
            )
        except Exception as error:  # an item's failure is its own: the batch goes on
            return BatchItem(input=value, index=index, error=error, output_path=None)
        return BatchItem(
            input=value, index=index, result=result, output_path=result.output_image_path
        )

    def _target(self, index: int, value: Any) -> Path | None:
        if self._output_dir is None:
            return None
        extension = "jpg" if self._options.output_format == "jpeg" else self._options.output_format
        path = output_path_for(self._output_dir, _input_name(value, index), extension)
        # Two inputs of one name (a/cat.jpg, b/cat.jpg) must not write one file.
        stem, number = path.stem, 1
        while path.name in self._names:
            path = path.with_name(f"{stem}-{number}{path.suffix}")
            number += 1
        self._names.add(path.name)
        return path

    def _count(self, direction: str, index: int, value: Any) -> ProgressCallback:
        async def count(event: ProgressEvent) -> None:
            self._counts[direction] += event.bytes
            if self._on_item_progress is not None:
                await call_back(self._on_item_progress, index, value, event)

        return count

    async def _account(self, item: BatchItem, manifest: Any) -> None:
        self._counts["failed" if item.error is not None else "done"] += 1
        if isinstance(item.error, RateLimitError) and item.error.scope in ("daily", "monthly"):
            self.stopped = item.error  # starting more would only fail the same way
        if manifest is not None:
            await manifest.write(json.dumps(_manifest_line(item)) + "\n")
            await manifest.flush()
        if self._on_progress is not None:
            await call_back(self._on_progress, self.progress())

    def progress(self) -> BatchProgress:
        """The batch's standing now."""
        done, failed = self._counts["done"], self._counts["failed"]
        elapsed = time.monotonic() - self._started_at
        rate = (done + failed) / elapsed if elapsed > 0 and done + failed else None
        left = None if self._total is None else self._total - done - failed
        return BatchProgress(
            done=done,
            failed=failed,
            in_flight=len(self._in_flight),
            total=self._total,
            bytes_up=self._counts["up"],
            bytes_down=self._counts["down"],
            rate=rate,
            estimated=None if rate is None or left is None else left / rate,
        )


def _input_name(value: Any, index: int) -> str:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    name = getattr(value, "name", None)
    return str(name) if isinstance(name, str) and name else f"image-{index}"


def _describe(value: Any, index: int) -> str:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    return f"<{type(value).__name__} #{index}>"


def _manifest_line(item: BatchItem) -> dict[str, Any]:
    result = item.result
    return {
        "input": _describe(item.input, item.index),
        "output": str(item.output_path) if item.output_path is not None else None,
        "status": item.status,
        "error": str(item.error) if item.error is not None else None,
        "error_type": type(item.error).__name__ if item.error is not None else None,
        "bytes": result.size if result is not None else None,
        "attempts": item.error.attempts
        if isinstance(item.error, RembgError)
        else (1 if result else 0),
    }


def failed_inputs(manifest: str | os.PathLike[str]) -> list[str]:
    """The inputs whose latest line in ``manifest`` failed: what a re-run should do again."""
    latest: dict[str, str] = {}
    with open(manifest, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                entry = json.loads(line)
                latest[entry["input"]] = entry["status"]
    return [name for name, status in latest.items() if status == "failed"]


async def _open_manifest(path: Path | None) -> Any:
    if path is None:
        return None
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    return await aiofiles.open(path, "a", encoding="utf-8")


async def _cancel_all(tasks: set[asyncio.Task[BatchItem]]) -> None:
    """Cancel ``tasks``; delete the temporary files of those that had finished all the same."""
    for task in tasks:
        task.cancel()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        result = outcome.result if isinstance(outcome, BatchItem) else None
        if isinstance(result, ImageFile) and result.temporary:
            await result.cleanup()


async def _async_iterator(inputs: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(inputs, AsyncIterable):
        async for value in inputs:
            yield value
    else:
        for value in inputs:
            yield value
