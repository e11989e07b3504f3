"""`Rembg`: the sync twin of `AsyncRembg`, which it runs on a loop of its own in a thread (one
implementation of every rule; usable from any thread, or where a loop runs, as in a notebook);
and `rembg_sync`, the twin of `rembg`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import warnings
import weakref
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from ._batch import BatchRun, SyncBatchItem
from ._cache import CacheLike
from ._client import AsyncRembg
from ._inputs import ImageInput
from ._loop_thread import ClosedError, LoopThread
from ._options import Base64Options, ImageFileOptions, RemoveOptions
from ._progress import ProgressCallback
from ._results import Base64Image, ImageBytes, ImageFile, SyncImageFile, handed_to_sync
from ._retry import RetryPolicy
from ._timeouts import Timeout, TimeoutLike
from ._usage import BillingCycleSummary, MembershipUsage

T = TypeVar("T")


class Rembg:
    """A sync client of the RemBG API: ``with Rembg() as client: client.remove(...)``.

    The same arguments as `AsyncRembg` and the same methods, without ``await``; a file
    result is a `SyncImageFile`, deleted by a plain ``cleanup()`` (or ``close()``, or leaving
    ``with``). One client may be shared by many threads; ``close()`` it (or use ``with``) when
    done: that also stops the ``remove_many`` runs still open, and cancels the calls other
    threads are still waiting on (each raises `RuntimeError`: the client was closed).
    """

    def __init__(self, api_key: str | None = None, **options: Any) -> None:
        self._worker = LoopThread("rembg-async sync client")
        # remove_many's open runs (touched on the client's loop only), stopped by close()
        self._runs: weakref.WeakSet[BatchRun] = weakref.WeakSet()
        try:
            self._client: AsyncRembg = self._worker.call(_make_client(api_key, options))
        except BaseException:  # bad arguments: no thread left behind
            self._worker.close()
            raise

    def __repr__(self) -> str:
        return repr(self._client).replace("<AsyncRembg", "<Rembg", 1)

    # The result's type follows the options, as for AsyncRembg.remove (SyncImageFile for ImageFile)
    @overload
    def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | ImageFileOptions | None = None,
        *,
        return_bytes: Literal[True],
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> ImageBytes: ...

    @overload
    def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | ImageFileOptions | None = None,
        *,
        return_base64: Literal[False] = False,
        output_path: str | os.PathLike[str] | None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> SyncImageFile: ...

    @overload
    def remove(
        self,
        input_image: ImageInput,
        options: Base64Options,
        *,
        return_base64: bool = False,
        output_path: None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Base64Image: ...

    @overload
    def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | Mapping[str, Any] | None = None,
        *,
        return_base64: Literal[True],
        output_path: None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Base64Image: ...

    @overload
    def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | Mapping[str, Any] | None = None,
        *,
        return_base64: bool = False,
        output_path: str | os.PathLike[str] | None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> SyncImageFile | Base64Image: ...

    def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | Mapping[str, Any] | None = None,
        **more: Any,
    ) -> SyncImageFile | Base64Image | ImageBytes:
        """`AsyncRembg.remove`, waited for: the same arguments (``output_path``, ``retry``,
        ``timeout``, ``return_bytes``…); a file result is a `SyncImageFile` (plain
        ``cleanup()``)."""
        result = self._worker.call(self._client.remove(input_image, options, **more))
        return handed_to_sync(result) if isinstance(result, ImageFile) else result

    def remove_many(
        self,
        inputs: Iterable[Any],
        options: RemoveOptions | Mapping[str, Any] | None = None,
        **more: Any,
    ) -> Iterator[SyncBatchItem]:
        """`AsyncRembg.remove_many` as a plain iterator of `SyncBatchItem` (same arguments).

        Stopping early (closing the iterator, or closing the client) stops the run. Closing
        the client from another thread while this one waits for the next item raises
        `RuntimeError` here: the batch did not finish (its requests in flight are cancelled).
        """
        run = self._worker.call(self._start(inputs, options, more))
        try:
            while True:
                try:
                    item = self._worker.call(run.__anext__())
                except StopAsyncIteration:
                    return
                yield SyncBatchItem.of(item)
        finally:  # (once the client is closing, that stops the run)
            with contextlib.suppress(ClosedError):
                self._worker.call(self._finish(run))

    async def _start(
        self,
        inputs: Iterable[Any],
        options: RemoveOptions | Mapping[str, Any] | None,
        more: dict[str, Any],
    ) -> BatchRun:
        """A run of ``remove_many``, known to `_close` (on the loop, which alone touches runs)."""
        run = self._client.remove_many(inputs, options, **more)
        self._runs.add(run)
        return run

    async def _finish(self, run: BatchRun) -> None:
        """A run left by its iterator: closed, and forgotten."""
        self._runs.discard(run)
        await run.aclose()

    def membership_usage(self, **arguments: Any) -> MembershipUsage:
        """`AsyncRembg.membership_usage`, waited for."""
        return self._worker.call(self._client.membership_usage(**arguments))

    def billing_cycles(self) -> list[BillingCycleSummary]:
        """`AsyncRembg.billing_cycles`, waited for."""
        return self._worker.call(self._client.billing_cycles())

    def close(self) -> None:
        """Stop the ``remove_many`` runs still open, close the connections and stop the
        client's thread; safe to call twice.

        Calls still running in other threads are cancelled: each raises `RuntimeError`
        (it was closed while the call ran), and none is left waiting.
        """
        self._worker.close(functools.partial(_close, self._client, self._runs))

    def __del__(self) -> None:
        worker = getattr(self, "_worker", None)  # None: __init__ failed before making it
        if worker is None or worker.closed:
            return
        # Closed before the warning (which raises under -W error), without waiting: the
        # collector may run in any thread, the loop's own included.
        try:
            worker.close_soon(functools.partial(_close, self._client, self._runs))
        finally:
            warnings.warn(
                "Rembg was never closed: use 'with Rembg() as client:' or call client.close()",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    def __enter__(self) -> Rembg:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def _close(client: AsyncRembg, runs: weakref.WeakSet[BatchRun]) -> None:
    """Stop the open runs (cancelling their requests, deleting their files), then the client."""
    try:
        for run in list(runs):
            await run.aclose()
    finally:  # a run that fails to close leaves no connection open
        await client.aclose()


async def _make_client(api_key: str | None, options: dict[str, Any]) -> AsyncRembg:
    """The async client, made on the loop that will run it."""
    client = AsyncRembg(api_key, **options)
    await client.__aenter__()
    return client


# The result's type follows the options, as for rembg() (SyncImageFile for ImageFile)
@overload
def rembg_sync(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: Base64Options,
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: None = None,
    base_url: str | None = None,
    cache: CacheLike = None,
) -> Base64Image: ...


@overload
def rembg_sync(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: RemoveOptions | ImageFileOptions | None = None,
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    cache: CacheLike = None,
) -> SyncImageFile: ...


@overload
def rembg_sync(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: Mapping[str, Any],
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    cache: CacheLike = None,
) -> SyncImageFile | Base64Image: ...


def rembg_sync(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: RemoveOptions | Mapping[str, Any] | None = None,
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    cache: CacheLike = None,
) -> SyncImageFile | Base64Image:
    """The sync twin of `rembg`: one background removed, with a client made and closed for it.

    A file result is a `SyncImageFile`: ``result.cleanup()`` deletes it, without ``await``.
    (``rembg`` is the async one, after rembg.js; for many images keep one `Rembg` open.)
    """
    from ._api import rembg

    result = _run_alone(
        rembg(
            api_key=api_key,
            input_image=input_image,
            options=options,
            on_upload_progress=on_upload_progress,
            on_download_progress=on_download_progress,
            output_path=output_path,
            base_url=base_url,
            cache=cache,
        )
    )
    return handed_to_sync(result) if isinstance(result, ImageFile) else result


def _run_alone(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a loop of its own: here, or in a thread if a loop runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()
