"""`LoopThread`: an event loop in a thread of its own that sync callers hand coroutines to; its
closing cancels the calls still running, so that no caller is left waiting on a stopped loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")

#: What runs last on the loop when it closes (the owner's own closing), if anything.
Last: TypeAlias = Callable[[], Coroutine[Any, Any, None]] | None


class ClosedError(RuntimeError):
    """The client is closed, or was closed while the call ran (its work was cancelled)."""


class LoopThread:
    """An event loop running in a daemon thread named ``name`` until `close`."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        # Held while deciding "closed or not" and handing a call over: none reaches a closing loop
        self._lock = threading.Lock()
        self._closed = False
        self._calls: set[concurrent.futures.Future[Any]] = set()  # under the lock
        self._tasks: set[asyncio.Task[Any]] = set()  # the calls' tasks; on the loop only
        self._thread = threading.Thread(target=_serve, args=(self._loop,), name=name, daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        """Whether `close` (or `close_soon`) has begun."""
        return self._closed

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for it; `ClosedError` if closed, or closed
        (by another thread) while it ran."""
        with self._lock:
            if self._closed:
                coroutine.close()
                raise ClosedError("this Rembg client is closed; make a new one")
            call = asyncio.run_coroutine_threadsafe(self._tracked(coroutine), self._loop)
            self._calls.add(call)
        try:
            return call.result()
        except concurrent.futures.CancelledError:
            if not self._closed:
                raise
            raise ClosedError(
                "this Rembg client was closed (close() or leaving 'with', in another thread) "
                "while this call ran; its work was cancelled"
            ) from None
        finally:
            with self._lock:
                self._calls.discard(call)

    async def _tracked(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """``coroutine``, with its task known to `close`, which cancels it."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await coroutine
        finally:
            self._tasks.discard(task)

    def close(self, last: Last = None) -> None:
        """Cancel the calls still running, run ``last``, stop the loop and wait for the thread;
        safe to repeat."""
        with self._lock:
            first, self._closed = not self._closed, True
        if not first:
            return
        try:
            asyncio.run_coroutine_threadsafe(_end(self._tasks, last), self._loop).result()
        finally:
            # Were a call left (this thread interrupted meanwhile), its caller would wait for
            # ever on the stopped loop: cancelling it wakes that caller.
            with self._lock:
                left = list(self._calls)
            for call in left:
                call.cancel()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def close_soon(self, last: Last = None) -> None:
        """`close` without waiting, for a collector (which may run on the loop's own thread)."""
        self._closed = True
        closing = _end(self._tasks, last, then_stop=self._loop)
        try:
            asyncio.run_coroutine_threadsafe(closing, self._loop)
        except RuntimeError:  # the loop is gone already (the interpreter is exiting)
            closing.close()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The thread: the loop runs until stopped, then is closed where it ran."""
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _end(
    tasks: set[asyncio.Task[Any]],
    last: Last,
    then_stop: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Cancel the calls' tasks and wait for their clean-up, then run ``last`` (and stop the
    loop, when asked)."""
    try:
        try:
            running = list(tasks)
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
        finally:
            if last is not None:
                await last()
    finally:
        if then_stop is not None:
            then_stop.stop()
