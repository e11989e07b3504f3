"""The counting pass of ``rembg-async remove``: the inputs counted (and each folder checked for
clashes) in a thread beside the batch, so that sending need not wait for a walk over a million
files; the progress total comes when it is known."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Final

from .._batch import BatchRun
from .._outputs import OutputClashError
from ._plan import Failed
from ._walk import FolderCheck, Inputs, Stopped

#: How long the batch waits for the count before it starts sending anyway: a tree counted by
#: then (a few hundred thousand files) has its total, and its clashes refused, before anything
#: is sent.
GRACE: Final = 1.0


class Counting:
    """The count of ``inputs``, made in a thread (`start`); ``error`` is the clash it found
    (or the walk's own), after which the batch is stopped and nothing more is sent."""

    def __init__(self, inputs: Inputs | Failed, check: FolderCheck | None) -> None:
        self._inputs = inputs
        self._check = check
        self._stop = threading.Event()
        self._done = asyncio.Event()
        self._on_total: Callable[[int], None] | None = None
        self._run: BatchRun | None = None
        # Both walks meet the folders in one order: a folder the count has checked already
        # is not checked again as it is sent.
        self._checked = 0
        self._walked = 0
        self.total: int | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        """Count in a thread."""
        loop = asyncio.get_running_loop()

        def count() -> None:
            try:
                total: int | BaseException = self._inputs.count(self._counted_check, self._stop)
            except Stopped:
                return
            except (OutputClashError, OSError, ValueError) as error:
                total = error
            if not self._stop.is_set():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._counted, total)

        threading.Thread(target=count, name="rembg-async-count", daemon=True).start()

    def _counted_check(self, folder: str, names: list[str]) -> None:
        """The count's check of a folder (in the thread)."""
        if self._check is not None:
            self._check(folder, names)
        self._checked += 1

    def _walked_check(self, folder: str, names: list[str]) -> None:
        """The check of a folder about to be sent, unless the count has checked it."""
        self._walked += 1
        if self._check is not None and self._walked > self._checked:
            self._check(folder, names)

    def _counted(self, total: int | BaseException) -> None:
        if isinstance(total, BaseException):
            self.found(total)
        else:
            self.total = total
            if self._on_total is not None:
                self._on_total(total)
        self._done.set()

    def then(self, on_total: Callable[[int], None]) -> None:
        """Call ``on_total`` with the total when it comes (not if it is known already)."""
        self._on_total = on_total

    async def wait(self, timeout: float) -> None:
        """Wait for the count, at most ``timeout`` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):  # not TimeoutError before 3.11
            await asyncio.wait_for(self._done.wait(), timeout)

    def found(self, error: BaseException) -> None:
        """A clash (the first is kept): the batch sends nothing more."""
        if self.error is None:
            self.error = error
        if self._run is not None:
            self._run.stop()

    def attach(self, run: BatchRun) -> None:
        """The batch to stop (at once, if a clash was found before it started)."""
        self._run = run
        if self.error is not None:
            run.stop()

    def stream(self) -> Iterator[str]:
        """The inputs, each folder checked before any of its inputs goes: a clash ends them
        (and stops the batch), so that no input of a clashing folder is ever sent."""
        try:
            for value in self._inputs.walk(self._walked_check):
                if self.error is not None:
                    return
                yield value
        except OutputClashError as error:
            self.found(error)

    def close(self) -> None:
        """Stop counting (the batch ended first)."""
        self._stop.set()
