"""Blocking file calls off the event loop, on a few long-lived threads that are cheap to hand
calls to and safe to cancel. Why not asyncio's executor: ``benchmarks/README.md`` (each step
measured) and ``benchmarks/RESULTS.md`` ("ThreadPoolExecutor vs the pool, A/B")."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

T = TypeVar("T")

#: Enough threads that slow calls (a network file system) do not wait in line behind each other.
_MAX_THREADS: Final = 4

#: Another thread is woken only when no call has finished for this long: on a local disk one
#: keeps up, and each thread more contends with the event loop for the GIL.
_STUCK_SECONDS: Final = 0.02

#: While more calls are queued, a thread holds back waking a loop for its outcomes (to wake it
#: once for several), up to this long after the first.
_HOLD_SECONDS: Final = 0.001

_Call = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class _FileThreads:
    """Daemon threads running blocking calls for any event loop, woken as seldom as possible."""

    def __init__(self) -> None:
        self._pending: collections.deque[_Call] = collections.deque()
        self._lock = threading.Lock()
        self._threads = 0
        self._awake = 0  # threads taking calls, not asleep
        self._sleepers: list[threading.Lock] = []  # each held until its thread is woken
        self._progress = 0.0  # when a call last finished (time.monotonic)
        self._finished: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        self._this_turn: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        self._woken: set[asyncio.AbstractEventLoop] = set()  # to take their outcomes
        # Calls not yet resolved, per loop (which patrols while it has some); touched on the
        # loop's own thread, except when `_forget_closed_loops` drops closed loops.
        self._unresolved: dict[asyncio.AbstractEventLoop, int] = {}

    def submit(self, function: Callable[..., T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        """Run ``function(*args)`` in a thread, handed over at the end of the loop's turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if loop not in self._unresolved:
            self._forget_closed_loops()
            self._unresolved[loop] = 0
            loop.call_later(_STUCK_SECONDS, self._patrol, loop)
        self._unresolved[loop] += 1
        with self._lock:
            calls = self._this_turn.get(loop)
            if calls is None:
                calls = self._this_turn[loop] = []
                loop.call_soon(self._hand_over, loop)
            calls.append((function, args, loop, future))
        return future

    def _forget_closed_loops(self) -> None:
        """Drop what closed loops left (a loop may close with calls out, or before its patrol)."""
        with self._lock:
            for table in (self._unresolved, self._this_turn, self._finished):
                # list(): one step under the GIL, while other loops add to `_unresolved`
                for loop in [loop for loop in list(table) if loop.is_closed()]:
                    del table[loop]
            self._woken = {loop for loop in self._woken if not loop.is_closed()}

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Queue the calls of the loop's last turn, waking a thread once for all of them."""
        with self._lock:
            self._pending.extend(self._this_turn.pop(loop))
            if self._awake == 0 or self._stuck():
                self._wake_one()

    def _stuck(self) -> bool:
        """No call has finished lately."""
        return time.monotonic() - self._progress > _STUCK_SECONDS

    def _wake_one(self) -> None:
        """Wake a sleeping thread, or start one if there is room (with the lock held)."""
        if not self._sleepers and self._threads == _MAX_THREADS:
            return
        self._progress = time.monotonic()  # a thread that slept through a quiet spell: not stuck
        self._awake += 1
        if self._sleepers:
            self._sleepers.pop().release()
        else:
            self._threads += 1
            threading.Thread(target=self._work, name="rembg-async-files", daemon=True).start()

    def _work(self) -> None:
        wake = threading.Lock()
        wake.acquire()
        held: set[asyncio.AbstractEventLoop] = set()  # loops not yet woken for outcomes
        held_since = now = 0.0  # when the first held outcome, and the last call, finished
        while True:
            with self._lock:
                call = self._pending.popleft() if self._pending else None
                if call is None and not held:
                    self._awake -= 1
                    self._sleepers.append(wake)
            if call is None and not held:
                wake.acquire()  # asleep until _wake_one releases it
                continue
            if call is not None:
                posted = self._run(call)
                self._progress = now = time.monotonic()
                if posted:
                    if not held:
                        held_since = now
                    held.add(call[2])
            if held and (call is None or now - held_since > _HOLD_SECONDS):
                self._wake_loops(held)  # the loops woken for what is done, together
                held = set()

    def _run(self, call: _Call) -> bool:
        """Run ``call`` and post its outcome to its loop; False if that loop is closed."""
        function, args, loop, future = call
        try:
            outcome: _Outcome = (future, function(*args), None)
        except BaseException as error:  # handed to the caller, whatever it is
            outcome = (future, None, error)
        with self._lock:
            if loop.is_closed():  # nobody can take the outcome
                return False
            self._finished.setdefault(loop, []).append(outcome)
            return True

    def _wake_loops(self, loops: Iterable[asyncio.AbstractEventLoop]) -> None:
        """Have each loop take its posted outcomes, unless it is woken for them already."""
        with self._lock:
            to_wake = [loop for loop in loops if loop not in self._woken]
            self._woken.update(to_wake)
        for loop in to_wake:
            try:
                loop.call_soon_threadsafe(self._deliver, loop)
            except RuntimeError:  # the loop was closed meanwhile: nobody waits for the outcome
                with self._lock:
                    self._finished.pop(loop, None)
                    self._woken.discard(loop)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            outcomes = self._finished.pop(loop, [])
            self._woken.discard(loop)
        if outcomes:  # (a wake-up may come after the patrol took them)
            self._unresolved[loop] -= len(outcomes)
        for future, result, error in outcomes:
            if future.cancelled():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def _patrol(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every `_STUCK_SECONDS` while the loop has calls out: take the outcomes a thread busy
        with a slow call holds back, and when that call is stuck, wake another thread for the
        calls behind it (one of them may be what the stuck call waits for)."""
        self._deliver(loop)
        with self._lock:
            if self._pending and self._stuck():
                self._wake_one()
        if self._unresolved[loop]:
            loop.call_later(_STUCK_SECONDS, self._patrol, loop)
        else:
            del self._unresolved[loop]


_FILE_THREADS: Final = _FileThreads()


async def run_to_completion(
    function: Callable[..., T], *args: object, undo: Callable[[T], object] | None = None
) -> T:
    """``function(*args)`` in a thread; on cancellation, wait for it to finish, then re-raise.

    ``undo`` is given the result of a call that completed for a caller cancelled meanwhile (to
    close or delete what it made). ``asyncio.to_thread`` returns at once instead, while the call
    goes on: a file opened there leaks, and a read still running races the ``close()``.
    """
    future = _FILE_THREADS.submit(function, args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():  # cancelled again meanwhile: still wait, or undo is skipped
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if undo is not None and not future.cancelled() and future.exception() is None:
            undo(future.result())
        raise
