"""Blocking file calls off the event loop: a few threads, cheap hand-overs, safe to cancel.

Measured against ``concurrent.futures.ThreadPoolExecutor`` running the same calls (one per
image to read and plan it, one to save and record it; ``benchmarks/RESULTS.md``, "A/B"), this
pool made a batch 1.17× as fast against the fixed-answer server, at about two thirds of the
CPU per image, and ~5 % faster end to end: it stays.

A batch makes several small file calls per image (read the input, save the answer). On
asyncio's default executor each is a hop with a thread wake-up one way and a self-pipe write
the other way, and up to six threads contend with the loop for the GIL: measured, the hops
cost more CPU than the HTTP exchange itself, and waking a sleeping thread is the dearest part
of a hop (on a virtual machine, an interrupt between processors). Here a few long-lived
threads take calls from one queue; the calls a loop makes in one turn are handed over together
at the end of it, waking a thread once for all of them; and finished calls go back to each
loop in bunches, waking it once for all the calls that finished while it was busy.

``asyncio.to_thread`` (and aiofiles, built the same way) also returns at once when the awaiting
task is cancelled, while the call goes on in its thread: a file opened there is lost (a
descriptor leak), and a read still running races the ``close()`` that cancellation triggers.
Here a cancelled caller first waits for the call to finish, so the file it uses can then be
closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

T = TypeVar("T")

#: Threads for file calls at most: enough that slow calls (a network file system) do not wait
#: in line behind each other.
MAX_FILE_THREADS: Final = 4

#: A second thread starts only when no call has finished for this long: on a local disk one
#: thread keeps up, and each thread more contends with the event loop for the GIL.
_STUCK_SECONDS: Final = 0.02

#: A thread holds back waking a loop for the outcomes of its calls while more calls are
#: queued, to wake it once for several; not past this after the first finished. A slow call
#: meanwhile does not hold them back longer than `_STUCK_SECONDS`: the loop looks for them.
_HOLD_SECONDS: Final = 0.001

_Call = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class _FileThreads:
    """Daemon threads running blocking calls for any event loop.

    One thread takes the calls while it keeps up; each thread more contends with the loop for
    the GIL. A sleeping thread is woken, or another started, only when none is awake or the
    awake one is stuck (a slow disk): then it takes the calls queued behind the slow one.
    """

    def __init__(self, max_threads: int) -> None:
        self._pending: collections.deque[_Call] = collections.deque()
        self._max_threads = max_threads
        self._lock = threading.Lock()
        self._threads = 0
        self._awake = 0  # threads taking calls, not asleep
        self._sleepers: list[threading.Lock] = []  # each held until its thread is woken
        self._progress = 0.0  # when a call last finished (time.monotonic)
        self._finished: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        self._this_turn: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        self._woken: set[asyncio.AbstractEventLoop] = set()  # to take their outcomes
        # Calls not yet resolved, per loop; while there are some, the loop patrols. Touched on
        # the loop's own thread only, but for closed loops dropped on another's.
        self._unresolved: dict[asyncio.AbstractEventLoop, int] = {}

    def submit(self, function: Callable[..., T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        """Run ``function(*args)`` in a thread; the future is resolved on the calling loop.

        The call is handed over at the end of the loop's turn, with the others made in it.
        """
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
        """Drop what loops closed meanwhile left here (``asyncio.run`` closes its loop before
        the last patrol; a loop may close with calls out, or made in its last turn): called
        whenever a loop that had no calls out makes one."""
        with self._lock:
            for table in (self._unresolved, self._this_turn, self._finished):
                # list(): one step under the GIL, while other loops add to `_unresolved`
                for loop in [loop for loop in list(table) if loop.is_closed()]:
                    del table[loop]
            self._woken = {loop for loop in self._woken if not loop.is_closed()}

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Queue the calls of the loop's last turn, waking a thread only if none is awake (or
        the awake ones are stuck): once for all of them."""
        with self._lock:
            self._pending.extend(self._this_turn.pop(loop))
            if self._awake == 0 or self._stuck():
                self._wake_one()

    def _stuck(self) -> bool:
        """No call has finished lately."""
        return time.monotonic() - self._progress > _STUCK_SECONDS

    def _wake_one(self) -> None:
        """Wake a sleeping thread, or start one if there is room (with the lock held)."""
        if not self._sleepers and self._threads == self._max_threads:
            return
        # Counted from now: a thread that slept through a quiet spell is not stuck.
        self._progress = time.monotonic()
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
        held_since = 0.0  # when the first of those outcomes was posted
        while True:
            with self._lock:
                call = self._pending.popleft() if self._pending else None
                if call is None and not held:
                    self._awake -= 1
                    self._sleepers.append(wake)
            if call is None:
                if held:  # nothing more to do: wake the loops for what is done, together
                    self._wake_loops(held)
                    held = set()
                else:
                    wake.acquire()  # asleep until _wake_one releases it
                continue
            function, args, loop, future = call
            try:
                outcome: _Outcome = (future, function(*args), None)
            except BaseException as error:  # handed to the caller, whatever it is
                outcome = (future, None, error)
            self._progress = now = time.monotonic()
            with self._lock:  # posted: the loop takes it when next woken (see _patrol too)
                posted = not loop.is_closed()  # a closed loop: nobody can take the outcome
                if posted:
                    self._finished.setdefault(loop, []).append(outcome)
            del call, function, args, future, outcome  # hold nothing while waiting for more
            if not posted:
                continue
            if not held:
                held_since = now
            held.add(loop)
            if now - held_since > _HOLD_SECONDS:
                self._wake_loops(held)
                held = set()

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
        """On the loop, every `_STUCK_SECONDS` while it has calls out: take the outcomes a
        thread posted but holds back the wake-up for, busy with a slow call meanwhile; and
        when that call is stuck, have another thread take the calls queued behind it (the
        hand-over that queued them may have come too soon to see it stuck, and one of them
        may be what the stuck call waits for)."""
        self._deliver(loop)
        with self._lock:
            if self._pending and self._stuck():
                self._wake_one()
        if self._unresolved[loop]:
            loop.call_later(_STUCK_SECONDS, self._patrol, loop)
        else:
            del self._unresolved[loop]


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
        while not future.done():  # cancelled again meanwhile: still wait, or undo is skipped
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if undo is not None and not future.cancelled() and future.exception() is None:
            undo(future.result())
        raise
