"""remove_many: many images with bounded concurrency, results as they complete.

Inputs are pulled lazily, never more than ``concurrency`` plus a read-ahead (`READ_AHEAD`)
in front of the work, so a million paths (or an endless generator) never become a million
tasks. Local inputs are read ahead of their turn to be sent, several in one thread call: a
thread hop costs more CPU than the HTTP exchange of a small image.

One item's failure is recorded and the others go on; a failure that every item would meet (a
refused key, a daily limit, an output folder that cannot be written) stops the batch from
starting new work instead. The first image goes alone, so that such a failure costs one
request, not ``concurrency``. Each image is planned once through its output folder, local or
remote, whose outputs mirror the inputs' layout and know where they came from (``_outputs``);
a credit budget is reserved before each image and settled after (``_budget``); turns to send
are taken in order, and ``stop()`` lets the images on the wire finish and calls back those
still waiting to be sent (``_sends``).

This module is the run: its state, its loop (pulling inputs, starting images, yielding items
as they end, the manifest and progress), its stops and its closing. How an image is planned
is `_planning`'s; how it is sent, `_sending`'s. The batch builds each image's `Call` and hands
it to the client's exchange (a `Sender`), as ``remove()`` does; it never goes through the
public ``remove()``.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Coroutine,
    Iterable,
)
from pathlib import Path
from typing import Any, Final

from .._budget import CreditBudget, Reservations
from .._closing import AsyncClosing
from .._exchange import Sender
from .._inputs import RemoteInputs, async_iterator
from .._options import RemoveOptions
from .._outputs import (
    Manifest,
    OutputFolder,
    open_manifest,
    options_key,
    targets_of,
)
from .._progress import call_back
from .._retry import RetryPolicy
from .._storage._stores import Stores, is_remote
from ._items import (
    BatchItem,
    BatchProgress,
    BatchProgressCallback,
    ItemProgressCallback,
    Tally,
    manifest_line,
)
from ._planning import Planning
from ._sends import Send, Sends, Turns, cancel_all, closing_items

#: Images planned (their local input read, their output looked up) ahead of their turn to be
#: sent, at most: new ones start in groups of half this, so that their reads share a thread
#: call. Each holds a small input's bytes (up to 256 KiB) meanwhile.
READ_AHEAD: Final = 16


class BatchRun(Planning, AsyncClosing):
    """The running batch: an async iterator of `BatchItem`, in completion order.

    Leaving ``async with`` (or ``await run.aclose()``) cancels the work in flight and cleans
    up; so does cancelling the task that iterates. ``cancelled`` then holds an item for each
    image that was cancelled on the wire, ``leftovers`` one for each image that had ended but
    was not yielded yet (the manifest has a line for each; a temporary result's file is gone).
    ``stop()`` instead sends nothing more: the attempts on the wire finish (and are not
    retried), the images not yet sent (waiting for their turn, for the rate limiter, for a
    connection) are not started, nor those waiting for a retry (unless an attempt of theirs
    may have been charged: they then fail with its error). ``stopped`` is the error that
    stopped the batch (a daily or monthly limit, a refused key or account, an output folder
    that cannot be written, a spent budget), if one did; it too sends nothing more.
    ``remaining`` then yields the inputs never started.
    """

    def __init__(
        self,
        send: Sender,
        inputs: Iterable[Any] | AsyncIterable[Any],
        options: RemoveOptions,
        *,
        retry: RetryPolicy,
        return_base64: bool = False,
        concurrency: int,
        outputs: OutputFolder | None,
        on_progress: BatchProgressCallback | None,
        on_item_progress: ItemProgressCallback | None,
        skip_existing: bool,
        manifest: Path | str | None,
        budget: CreditBudget | None,
        remote: RemoteInputs | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if skip_existing and outputs is None:
            raise ValueError("skip_existing needs an output_dir to look in")
        self._send_call = send
        self._tally = Tally(total=len(inputs) if hasattr(inputs, "__len__") else None)  # type: ignore[arg-type]
        self._targets: list[Any] = []  # of a listed batch's inputs, worked out up front
        if outputs is not None and isinstance(inputs, (list, tuple)):
            self._targets = targets_of(outputs, inputs)  # clashes refused before any sending
        self._inputs = async_iterator(inputs)
        self._fields = options.form_fields()  # the same for every image
        self._options_key = options_key(self._fields)
        self._retry = retry
        self._return_base64 = return_base64
        self._concurrency = concurrency
        self._outputs = outputs
        self._on_progress = on_progress
        self._on_item_progress = on_item_progress
        self._skip_existing = skip_existing
        self._manifest_path = manifest
        self._budget = budget
        self._credits = Reservations(budget)
        self._remote = remote or RemoteInputs(stores=Stores())
        self._unstarted: list[tuple[int, Any]] = []
        self._next = 0  # the index of the next input pulled
        self._in_flight: set[asyncio.Task[BatchItem | None]] = set()
        self._done: collections.deque[asyncio.Task[BatchItem | None]] = collections.deque()
        #: Items settled in a group's planning (skipped, someone else's output, refused), with
        #: no task of their own: at most a group of them, until yielded.
        self._ready: collections.deque[BatchItem] = collections.deque()
        self._wake = asyncio.Event()
        self._ahead = min(concurrency, READ_AHEAD)
        self._turns = Turns(concurrency, self._halted)
        self._sends = Sends()  # images with their turn, until their request has ended
        self._items = self._run()
        self.stopped: BaseException | None = None
        self.interrupted = False
        #: The images cancelled on the wire when the batch was closed (in no order).
        self.cancelled: list[BatchItem] = []
        #: The items that had ended (made, skipped or failed) but were not yet yielded when the
        #: batch was closed (in no order): counted, and in the manifest, all the same.
        self.leftovers: list[BatchItem] = []

    @property
    def remaining(self) -> AsyncIterator[Any]:
        """The inputs not started (after a stop): those held back, then those not pulled."""
        return self._remaining()

    async def _remaining(self) -> AsyncIterator[Any]:
        for _, value in sorted(self._unstarted, key=lambda pair: pair[0]):
            yield value
        self._unstarted.clear()
        async for value in self._inputs:
            yield value

    @property
    def credits(self) -> int:
        """Credits the batch's requests cost so far (counting those that may have cost one)."""
        return self._tally.credits

    def stop(self) -> None:
        """Send nothing more, retries included: the attempts on the wire finish and their images
        are yielded, the others go back to the inputs not started (``remaining``). Safe to
        repeat."""
        self.interrupted = True
        self._halt()

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
        if not await self._open_outputs():
            return
        manifest = await open_manifest(self._manifest_path, self._remote)
        try:
            await self._start_more()
            while self._in_flight or self._ready:
                if not self._ready:
                    await self._wake.wait()
                self._wake.clear()
                while self._ready or self._done:
                    item = self._ready.popleft() if self._ready else self._took_done()
                    if item is not None:
                        await self._account(item, manifest)
                        yield item
                await self._start_more()
        finally:
            # Work in flight is cancelled; finished items nobody received are cleaned up too.
            sending = self._sends.snapshot()
            outcomes = await cancel_all(self._in_flight)
            self._in_flight.clear()
            try:
                await self._record_cancelled(sending, outcomes, manifest)
            finally:
                try:
                    if manifest is not None:
                        await manifest.close()
                finally:
                    await self._close_outputs()

    def _took_done(self) -> BatchItem | None:
        task = self._done.popleft()
        self._in_flight.discard(task)
        return task.result()

    async def _record_cancelled(
        self,
        sending: dict[asyncio.Future[Any], Send],
        outcomes: dict[asyncio.Task[BatchItem | None], BaseException | BatchItem | None],
        manifest: Manifest | None,
    ) -> None:
        """What the closing found: the items nobody received into ``leftovers``, the images
        cancelled on the wire into ``cancelled``; both counted and into the manifest."""
        leftovers, cancelled = closing_items(sending, outcomes)
        self.leftovers.extend(self._ready)
        self._ready.clear()
        self.leftovers.extend(leftovers)
        self.cancelled.extend(cancelled)
        for item in self.leftovers:
            self._tally.add(item)
        recorded = self.leftovers + self.cancelled
        if manifest is not None and recorded:
            await manifest.write("".join(manifest_line(item) for item in recorded))
            await manifest.flush()

    async def _close_outputs(self) -> None:
        if self._outputs is not None:
            await self._outputs.close()  # a remote folder's last index segment

    async def _open_outputs(self) -> bool:
        """Prepare the output folder; an error there stops the batch before any request."""
        if self._outputs is None:
            return True
        try:
            await self._outputs.open()
        except OSError as error:
            self._stop_with(error)
            return False
        return True

    async def _start_more(self) -> None:
        """Start images up to those that may be sent at once plus the read-ahead; once under
        way, only a group at a time. Local inputs going to an output folder are planned as a
        group, in one thread call (`_plan_group`); the others each in their own task."""
        room = self._turns.limit + self._ahead - len(self._in_flight)
        if self._in_flight and room < max(1, self._ahead // 2):
            return
        group: list[tuple[int, Any]] = []
        try:
            while not self._halted() and room > 0:
                try:
                    value = await self._inputs.__anext__()
                except StopAsyncIteration:
                    break
                if self._outputs is not None and _local_path(value):
                    group.append((self._next, value))
                else:
                    self._start(self._one(self._next, value))
                self._next += 1
                room -= 1
        except asyncio.CancelledError:  # pulled, never planned: inputs not started
            self._unstarted.extend(group)
            raise
        if group:
            await self._plan_group(group)

    def _start(self, work: Coroutine[Any, Any, BatchItem | None]) -> None:
        task = asyncio.ensure_future(work)
        task.add_done_callback(self._finished)
        self._in_flight.add(task)

    def _finished(self, task: asyncio.Task[BatchItem | None]) -> None:
        # A queue of finished tasks, not asyncio.wait(): that adds and removes a callback on
        # every task in flight each time one finishes.
        self._done.append(task)
        self._wake.set()

    async def _account(self, item: BatchItem, manifest: Manifest | None) -> None:
        self._tally.add(item)
        if manifest is not None:
            await manifest.write(manifest_line(item))
            await manifest.flush()
        if self._on_progress is not None:
            await call_back(self._on_progress, self.progress())

    def progress(self) -> BatchProgress:
        """The batch's standing now."""
        return self._tally.progress(self._sends.on_the_wire)


def _local_path(value: Any) -> bool:
    """Whether ``value`` names a local file (planned in a group)."""
    return isinstance(value, (str, os.PathLike)) and not is_remote(value)
