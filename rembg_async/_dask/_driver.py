"""``remove_many_dask`` and its driver: inputs submitted lazily, outcomes yielded as they complete.
The driver alone writes the manifest: every input ends as one line, even when Dask runs a task
again after its worker died."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from pathlib import Path, PurePath
from typing import Any, Final

from distributed import Client, Future, as_completed

from .._batch import (
    BatchItem,
    BatchProgress,
    ItemRun,
    Tally,
    Wire,
    describe,
    latest_statuses,
    manifest_line,
    output_at,
    skipped_item,
    statuses_of,
    stops_batch,
)
from .._exceptions import APIStatusError
from .._files import run_to_completion
from .._imageinfo import extension_for
from .._inputs import RemoteInputs, async_iterator
from .._options import RemoveOptions, resolve_options
from .._outputs import (
    OutputTree,
    RemoteManifest,
    RemoteOutputTree,
    manifest_place,
    open_manifest,
    output_folder,
)
from .._storage._stores import Stores
from ._worker import ClientPlugin, Outcome, remove_on_worker

#: How often the driver asks the scheduler how many workers there are (they come and go).
WORKERS_EVERY: Final = 5.0


class DaskRun(ItemRun):
    """A batch on a Dask cluster: ``async for item in run`` yields `BatchItem` objects in
    completion order; ``stopped``, ``remaining``, ``stop()`` and ``progress()`` as for
    `BatchRun`. Use it as ``async with remove_many_dask(...) as run:`` so that leaving early
    cancels the tasks still under way."""

    def __init__(
        self,
        dask_client: Client,
        inputs: Iterable[Any] | AsyncIterable[Any],
        options: RemoveOptions,
        *,
        outputs: OutputTree | RemoteOutputTree,
        manifest: Path | str | None,
        remote: RemoteInputs,
        plugin: ClientPlugin,
        concurrency_per_worker: int,
    ) -> None:
        self._dask = dask_client
        self._inputs = async_iterator(inputs)
        self._options = options
        self._outputs = outputs
        self._manifest_path = manifest
        self._remote = remote
        self._done_before: set[str] = set()  # read from the manifest when the run starts
        self._plugin = plugin
        self._per_worker = concurrency_per_worker
        self._futures: dict[str, tuple[int, Any, Future[Any]]] = {}
        self._tally = Tally(total=None)  # no bytes: they go between the workers and the API
        self._indices = itertools.count()
        self._unstarted: list[Any] = []
        self._worker_count = 1
        self._workers_checked = -WORKERS_EVERY
        self._items = self._run()
        self.stopped: BaseException | None = None
        self.interrupted = False

    def stop(self) -> None:
        """Submit no more inputs; those under way finish and are yielded."""
        self.interrupted = True

    @property
    def remaining(self) -> AsyncIterator[Any]:
        """The inputs not started (after a stop): those put back, then those not submitted."""
        return self._remaining()

    async def _remaining(self) -> AsyncIterator[Any]:
        while self._unstarted:
            yield self._unstarted.pop(0)
        async for value in self._inputs:
            yield value

    def progress(self) -> BatchProgress:
        """Where the batch stands."""
        return self._tally.progress(len(self._futures))

    async def _run(self) -> AsyncGenerator[BatchItem, None]:
        name = self._plugin.name
        manifest = await open_manifest(self._manifest_path, self._remote)
        try:
            self._done_before = await done_inputs(self._manifest_path, manifest)
        except BaseException:
            await _close(manifest, self._remote)
            raise
        await self._dask.register_plugin(self._plugin, name=name)
        completed = as_completed(with_results=True, raise_errors=False)
        try:
            async for item in self._submit_more(completed):
                yield await self._account(item, manifest)
            async for future, outcome in completed:
                index, value, _ = self._futures.pop(str(future.key))
                if isinstance(outcome, Outcome) and outcome.refused:
                    # A worker's limiter refused to start it (a shared stop, a spent budget):
                    # nothing was sent; it is left for later, and no more is submitted.
                    self._unstarted.append(value)
                    self.stopped = self.stopped or outcome.error()
                else:
                    yield await self._account(self._item(index, value, outcome), manifest)
                async for item in self._submit_more(completed):
                    yield await self._account(item, manifest)
        finally:
            if self._futures:
                await self._dask.cancel([future for _, _, future in self._futures.values()])
            await _close(manifest, self._remote)
            await self._dask.unregister_worker_plugin(name)

    async def _submit_more(self, completed: as_completed) -> AsyncIterator[BatchItem]:
        """Submit inputs until the cluster's share is full; yield those skipped as done."""
        workers = await self._workers()
        while self.stopped is None and not self.interrupted:
            if len(self._futures) >= self._per_worker * workers:
                return
            try:
                value = await self._inputs.__anext__()
            except StopAsyncIteration:
                return
            index = next(self._indices)
            target = self._outputs.target(value, index)
            if describe(value, index) in self._done_before:
                yield skipped_item(value, index, target)
                continue
            future = self._dask.submit(
                remove_on_worker,
                self._plugin.name,
                value,
                self._options,
                str(target),
                key=f"rembg-async-{index}-{uuid.uuid4().hex[:8]}",
                pure=False,
            )
            self._futures[str(future.key)] = (index, value, future)
            completed.add(future)

    async def _workers(self) -> int:
        """The cluster's workers, asked of the scheduler at most every few seconds (an
        asynchronous client's cached information has no workers in it)."""
        now = time.monotonic()
        if now >= self._workers_checked + WORKERS_EVERY:
            scheduler = self._dask.scheduler
            assert scheduler is not None  # the client is connected by the time a run starts
            identity = await scheduler.identity(n_workers=-1)
            self._worker_count = max(1, len(identity.get("workers", {})))
            self._workers_checked = now
        return self._worker_count

    def _item(self, index: int, value: Any, outcome: Any) -> BatchItem:
        """The outcome as a `BatchItem` (a task that failed as a whole: its error)."""
        if not isinstance(outcome, Outcome):
            error = outcome if isinstance(outcome, BaseException) else RuntimeError(outcome)
            return BatchItem(input=value, index=index, error=error, attempts=1, credits=1)
        if outcome.error_type is None:
            where = output_at(outcome.output) if outcome.output is not None else {}
            if outcome.cached:  # the worker's cache served it: no request, no credit
                return BatchItem(input=value, index=index, cached=True, **where)
            return BatchItem(input=value, index=index, attempts=1, credits=1, **where)
        error = outcome.error()
        charged = 0 if isinstance(error, APIStatusError) else int(outcome.attempts > 0)
        return BatchItem(
            input=value, index=index, error=error, attempts=outcome.attempts, credits=charged
        )

    async def _account(self, item: BatchItem, manifest: Any) -> BatchItem:
        self._tally.add(item)
        if item.error is not None and self.stopped is None and stops_batch(item.error, Wire()):
            self.stopped = item.error  # every further image would meet it: submit no more
        if manifest is not None:
            await manifest.write(manifest_line(item))
            await manifest.flush()
        return item


def remove_many_dask(
    dask_client: Client,
    inputs: Iterable[Any] | AsyncIterable[Any],
    options: RemoveOptions | Mapping[str, Any] | None = None,
    *,
    output_dir: str | os.PathLike[str],
    root: str | os.PathLike[str] | Callable[[Any], PurePath] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    concurrency_per_worker: int = 16,
    client_options: Mapping[str, Any] | None = None,
    redis_url: str | None = None,
    limiter_options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> DaskRun:
    """Remove many backgrounds on a Dask cluster; ``async for item in run`` on the driver.

    ``dask_client`` is an asynchronous ``distributed.Client``. Each worker gets one
    `AsyncRembg` (made with ``client_options``: ``api_key``, ``base_url``, ``timeout``,
    ``cache`` (a folder or URL every worker reaches: items it serves say ``cached``), …;
    closed when the run ends) and runs at most ``concurrency_per_worker`` images at once;
    inputs (paths, URLs or bytes every worker can reach) are submitted lazily, and results go
    under ``output_dir`` (a folder every worker can write) mirroring their paths relative to
    ``root``, as with `AsyncRembg.remove_many`. Items come back in completion order.
    ``output_dir`` and ``manifest`` may be remote URLs (``s3://bucket/out/``), reached with
    ``storage_options`` (default: ``client_options["storage_options"]``, which the workers
    use). ``manifest`` gets one JSON line per input, written by the driver alone; a run given
    the manifest of an earlier one skips what it made. ``redis_url`` (and ``limiter_options``,
    such as ``max_credits``) gives every worker a `rembg_async.redis.RedisLimiter`: one rate,
    stop and budget for the whole cluster. A daily limit, a refused key or a spent budget
    stops the run from submitting more.
    """
    if not getattr(dask_client, "asynchronous", False):
        raise ValueError(
            "remove_many_dask needs an asynchronous client: Client(..., asynchronous=True)"
        )
    if concurrency_per_worker < 1:
        raise ValueError("concurrency_per_worker must be at least 1")
    resolved, return_base64 = resolve_options(options, False)
    if return_base64:
        raise ValueError("remove_many_dask writes files under output_dir: no base64")
    if storage_options is None:
        storage_options = (client_options or {}).get("storage_options")
    remote = RemoteInputs(stores=Stores(storage_options))
    extension = extension_for(resolved.output_format)
    outputs = output_folder(remote, os.fspath(output_dir), root, extension, overwrite=True)
    assert outputs is not None
    plugin = ClientPlugin(
        client_options or {}, concurrency_per_worker, redis_url, limiter_options or {}
    )
    return DaskRun(
        dask_client,
        inputs,
        resolved,
        outputs=outputs,
        manifest=manifest_place(manifest),
        remote=remote,
        plugin=plugin,
        concurrency_per_worker=concurrency_per_worker,
    )


async def done_inputs(place: Path | str | None, manifest: Any) -> set[str]:
    """The inputs a manifest's latest lines say were made or skipped: not sent again (a local
    manifest is read here, before this run appends to it; a remote one, when it was opened)."""
    if isinstance(manifest, RemoteManifest):
        latest = statuses_of(await manifest.lines_before())
    elif isinstance(place, Path) and await run_to_completion(place.exists):
        latest = await run_to_completion(latest_statuses, place)
    else:
        return set()
    return {name for name, status in latest.items() if status in ("ok", "skipped")}


async def _close(manifest: Any, remote: RemoteInputs) -> None:
    """Close the manifest (a remote one is put whole), then the run's stores."""
    try:
        if manifest is not None:
            await manifest.close()
    finally:
        await remote.stores.aclose()
