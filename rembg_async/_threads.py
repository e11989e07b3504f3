"""Blocking file calls off the event loop: a few threads, cheap hand-overs, safe to cancel.

A batch makes several small file calls per image (read the input, look up its output, save the
answer, note it in the index). On asyncio's default executor each is a hop with a thread wake-up
one way and a self-pipe write the other way, and up to six threads contend with the loop for
the GIL: measured, the hops cost more CPU than the HTTP exchange itself. Here a few long-lived
threads take calls from one queue, and finished calls go back to each loop in bunches, waking
it once for all the calls that finished while it was busy.

``asyncio.to_thread`` (and aiofiles, built the same way) also returns at once when the awaiting
task is cancelled, while the call goes on in its thread: a file opened there is lost (a
descriptor leak), and a read still running races the ``close()`` that cancellation triggers.
Here a cancelled caller first waits for the call to finish, so the file it uses can then be
closed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")

#: Threads for file calls at most: enough that slow calls (a network file system) do not wait
#: in line behind each other.
MAX_FILE_THREADS: Final = 4

#: A second thread starts only when no call has finished for this long: on a local disk one
#: thread keeps up, and each thread more contends with the event loop for the GIL.
_STUCK_SECONDS: Final = 0.02

_Call = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class _FileThreads:
    """Daemon threads running blocking calls for any event loop."""

    def __init__(self, max_threads: int) -> None:
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._max_threads = max_threads
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._progress = 0.0  # when a call last finished (time.monotonic)
        self._finished: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}

    def submit(self, function: Callable[..., T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        """Run ``function(*args)`` in a thread; the future is resolved on the calling loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._idle == 0 and self._threads < self._max_threads and self._stuck():
                self._threads += 1
                self._progress = time.monotonic()  # give it time to start before another
                threading.Thread(target=self._work, name="rembg-async-files", daemon=True).start()
        self._calls.put((function, args, loop, future))
        return future

    def _stuck(self) -> bool:
        """No thread yet, or none has finished a call lately."""
        return self._threads == 0 or time.monotonic() - self._progress > _STUCK_SECONDS

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            function, args, loop, future = self._calls.get()
            with self._lock:
                self._idle -= 1
            try:
                outcome: _Outcome = (future, function(*args), None)
            except BaseException as error:  # handed to the caller, whatever it is
                outcome = (future, None, error)
            self._progress = time.monotonic()
            self._hand_back(loop, outcome)
            del function, args, future, outcome  # hold nothing while waiting for the next call

    def _hand_back(self, loop: asyncio.AbstractEventLoop, outcome: _Outcome) -> None:
        """Queue ``outcome`` for ``loop``; wake the loop only if nothing is queued for it yet."""
        with self._lock:
            waiting = self._finished.setdefault(loop, [])
            waiting.append(outcome)
            if len(waiting) > 1:
                return  # the loop is already woken for the first; it takes this one too
        try:
            loop.call_soon_threadsafe(self._deliver, loop)
        except RuntimeError:  # the loop was closed meanwhile: nobody waits for the outcome
            with self._lock:
                self._finished.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            outcomes = self._finished.pop(loop, [])
        for future, result, error in outcomes:
            if future.cancelled():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


_FILE_THREADS: Final = _FileThreads(MAX_FILE_THREADS)


async def run_to_completion(
    function: Callable[..., T], *args: object, undo: Callable[[T], object] | None = None
) -> T:
    """``function(*args)`` in a thread; on cancellation, wait for it to finish, then re-raise.

    ``undo`` is given the result of a call that completed for a caller who was cancelled
    meanwhile, and will never see it: to close or delete what the call made.
    """
    future = _FILE_THREADS.submit(function, args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if undo is not None and not future.cancelled() and future.exception() is None:
            undo(future.result())
        raise


class Grouped(Generic[T]):
    """Items handed to one blocking function in groups, one thread call per group.

    While a group is being handled, items that arrive wait together for the next one: the
    index lines of outputs that finish close together are written at one go.
    """

    def __init__(self, handle: Callable[[list[T]], object]) -> None:
        self._handle = handle
        self._items: list[T] = []
        self._futures: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        """Hand ``item`` over; return once its group is handled, raising what that raised.

        A caller cancelled meanwhile still has its item handled.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # a cancelled caller never looks at its outcome
        self._items.append(item)
        self._futures.append(future)
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
        await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._items:
                items, futures = self._items, self._futures
                self._items, self._futures = [], []
                try:
                    await run_to_completion(self._handle, items)
                except Exception as error:  # each item's caller gets it
                    for future in futures:
                        future.set_exception(error)
                else:
                    for future in futures:
                        future.set_result(None)
        finally:
            self._task = None

    async def finish(self) -> None:
        """Wait until every item handed over is handled."""
        if self._task is not None:
            await asyncio.shield(self._task)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
