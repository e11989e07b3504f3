"""`Rembg`: the sync twin of `AsyncRembg`, for scripts, threads, Django views and notebooks.

It holds an `AsyncRembg` on a private event loop that runs in a thread of its own, and each
method hands the coroutine over to that loop and waits for it: there is one implementation of
every rule (retries, limits, checks), the async one. This works from any thread, several at a
time, and where a loop is already running in the calling thread (a notebook): the work never
runs on the caller's loop. Callbacks (progress) are plain functions, called in the client's
thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ._batch_items import BatchItem
from ._client import AsyncRembg
from ._inputs import ImageInput
from ._options import RemoveOptions
from ._progress import ProgressCallback
from ._results import Base64Image, ImageBytes, ImageFile
from ._usage import BillingCycleSummary, MembershipUsage

T = TypeVar("T")


class Rembg:
    """A sync client of the RemBG API: ``with Rembg() as client: client.remove(...)``.

    The same arguments as `AsyncRembg` and the same methods, without ``await``; results are
    the same objects (an `ImageFile`'s ``close()`` or ``with`` deletes it). One client may be
    shared by many threads; ``close()`` it (or use ``with``) when done.
    """

    def __init__(self, api_key: str | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="rembg-async sync client", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._client: AsyncRembg = self._run(_make_client(api_key, options))
        except BaseException:  # bad arguments: no thread left behind
            self._stop()
            raise

    def __repr__(self) -> str:
        return repr(self._client).replace("<AsyncRembg", "<Rembg", 1)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the client's loop and wait for its result."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("this Rembg client is closed; make a new one")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | Mapping[str, Any] | None = None,
        *,
        return_base64: bool = False,
        output_path: str | os.PathLike[str] | None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        **more: Any,
    ) -> ImageFile | Base64Image | ImageBytes:
        """`AsyncRembg.remove`, waited for: the same arguments (``retry``, ``timeout``,
        ``return_bytes``…)."""
        return self._run(
            self._client.remove(
                input_image,
                options,
                return_base64=return_base64,
                output_path=output_path,
                on_upload_progress=on_upload_progress,
                on_download_progress=on_download_progress,
                **more,
            )
        )

    def remove_many(
        self,
        inputs: Iterable[Any],
        options: RemoveOptions | Mapping[str, Any] | None = None,
        **more: Any,
    ) -> Iterator[BatchItem]:
        """`AsyncRembg.remove_many` as a plain iterator of `BatchItem` (same arguments).

        Stopping early (``break``, or closing the iterator) stops the run.
        """
        run = self._run(_start(self._client, inputs, options, more))
        try:
            while True:
                try:
                    yield self._run(run.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._run(run.aclose())

    def membership_usage(self, **arguments: Any) -> MembershipUsage:
        """`AsyncRembg.membership_usage`, waited for."""
        return self._run(self._client.membership_usage(**arguments))

    def billing_cycles(self) -> list[BillingCycleSummary]:
        """`AsyncRembg.billing_cycles`, waited for."""
        return self._run(self._client.billing_cycles())

    def close(self) -> None:
        """Close the connections and stop the client's thread; safe to call twice."""
        if self._closed:
            return
        try:
            self._run(self._client.aclose())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Rembg:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def _make_client(api_key: str | None, options: dict[str, Any]) -> AsyncRembg:
    """The async client, made on the loop that will run it."""
    client = AsyncRembg(api_key, **options)
    await client.__aenter__()
    return client


async def _start(
    client: AsyncRembg,
    inputs: Iterable[Any],
    options: RemoveOptions | Mapping[str, Any] | None,
    more: dict[str, Any],
) -> Any:
    return client.remove_many(inputs, options, **more)


def rembg_sync(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: RemoveOptions | Mapping[str, Any] | None = None,
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
) -> ImageFile | Base64Image:
    """The sync twin of `rembg`: one background removed, with a client made and closed for it.

    (``rembg`` is the async one, after rembg.js; for many images keep one `Rembg` open.)
    """
    from ._api import rembg

    coroutine = rembg(
        api_key=api_key,
        input_image=input_image,
        options=options,
        on_upload_progress=on_upload_progress,
        on_download_progress=on_download_progress,
        output_path=output_path,
        base_url=base_url,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a plain script or thread: run it here
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # a loop runs here: not on it
        return thread.submit(asyncio.run, coroutine).result()
