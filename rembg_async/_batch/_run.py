"""remove_many's run: pulling inputs lazily (at most the turns to send plus `READ_AHEAD`),
planning them (local inputs a group per thread call), yielding items as they end, the manifest,
progress, stops and closing. How an image is sent is `_sending`'s."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Coroutine, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

from .._budget import CreditBudget, Reservations
from .._closing import AsyncClosing
from .._exchange import Sender
from .._files import run_to_completion
from .._inputs import RemoteInputs, async_iterator, read_local_or_none
from .._options import RemoveOptions
from .._outputs import (
    Manifest,
    OutputClashError,
    OutputFolder,
    Plan,
    Verdict,
    foreign_error,
    open_manifest,
    options_key,
    settled,
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
    skipped_item,
)
from ._sending import Sending, Sends, Turns, cancel_all, closing_items

#: Images planned (their local input read, their output looked up) ahead of their turn to be
#: sent, at most: new ones start in groups of half this, so that their reads share a thread
#: call. Each holds a small input's bytes (up to 256 KiB) meanwhile.
READ_AHEAD: Final = 16


R = TypeVar("R", bound="ItemRun")


class ItemRun(AsyncClosing):
    """A run's items as an async iterator over its generator ``_items`` (`BatchRun`, `DaskRun`)."""

    _items: AsyncGenerator[BatchItem, None]

    def __aiter__(self: R) -> R:
        return self

    async def __anext__(self) -> BatchItem:
        return await self._items.__anext__()

    async def _close_on_exit(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the work in flight and release everything (a Dask run: its tasks under way,
        and its workers' clients). Safe to call twice."""
        await self._items.aclose()


class BatchRun(Sending, ItemRun):
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
        #: Items settled in a group's planning, with no task of their own, until yielded.
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

    def progress(self) -> BatchProgress:
        """The batch's standing now."""
        return self._tally.progress(self._sends.on_the_wire)

    async def _run(self) -> AsyncGenerator[BatchItem, None]:
        async with contextlib.AsyncExitStack() as closing:
            if self._outputs is not None:
                try:
                    await self._outputs.open()
                except OSError as error:  # every image would meet it: stop before any request
                    self._stop_with(error)
                    return
                closing.push_async_callback(self._outputs.close)  # a remote folder's last segment
            manifest = await open_manifest(self._manifest_path, self._remote)
            if manifest is not None:
                closing.push_async_callback(manifest.close)
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
                sending = dict(self._sends.sends)
                outcomes = await cancel_all(self._in_flight)
                self._in_flight.clear()
                await self._record_cancelled(closing_items(sending, outcomes), manifest)

    def _took_done(self) -> BatchItem | None:
        task = self._done.popleft()
        self._in_flight.discard(task)
        return task.result()

    async def _record_cancelled(
        self, found: tuple[list[BatchItem], list[BatchItem]], manifest: Manifest | None
    ) -> None:
        """Count and write down the closing's ``found``: ``leftovers`` and ``cancelled``."""
        self.leftovers.extend(self._ready)
        self._ready.clear()
        self.leftovers.extend(found[0])
        self.cancelled.extend(found[1])
        for item in self.leftovers:
            self._tally.add(item)
        recorded = self.leftovers + self.cancelled
        if manifest is not None and recorded:
            await manifest.write("".join(manifest_line(item) for item in recorded))
            await manifest.flush()

    async def _start_more(self) -> None:
        """Start images up to the turns plus the read-ahead, a group of local inputs at a time."""
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
                if self._outputs is None:
                    self._start(self._one(self._next, value))
                elif _local_path(value):
                    group.append((self._next, value))
                else:  # its planning may ask its store: in a task of its own
                    self._start(self._plan_group([(self._next, value)]))
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

    async def _one(self, index: int, value: Any) -> BatchItem | None:
        """Send an image with no output folder (a local file read ahead)."""
        try:
            read = None
            if _local_path(value):
                read = await run_to_completion(read_local_or_none, value)
        except asyncio.CancelledError:  # read ahead, never sent: an input not started
            self._unstarted.append((index, value))
            raise
        return await self._sent(index, value, None, Plan(read=read))

    async def _plan_group(self, group: list[tuple[int, Any]]) -> None:
        """Plan ``group`` (local inputs: in one thread call); one its plan settles ends with no
        task of its own, so that a re-run with nothing to do pays no task nor hop per image."""
        outputs = self._outputs
        assert outputs is not None
        held: list[tuple[int, Any, Any]] = []  # claimed, to plan: (index, value, target)
        taken = 0  # of the group: claimed or settled
        try:
            for index, value in group:
                taken += 1  # held from here on while it is claimed
                early = await self._claim(index, value, held)
                if early is not None:
                    self._ready.append(early)
            pairs = [(value, target) for _, value, target in held]
            plans = await outputs.plan_many(
                pairs, self._options_key, skip_existing=self._skip_existing
            )
        except asyncio.CancelledError:  # read ahead, never sent: inputs not started
            for index, value, target in held:
                outputs.release(target)
                self._unstarted.append((index, value))
            self._unstarted.extend(group[taken:])
            raise
        for (index, value, target), plan in zip(held, plans, strict=True):
            early = self._settled(index, value, target, plan)
            if early is None:
                assert isinstance(plan, Plan)
                self._start(self._planned(index, value, target, plan))
            else:
                outputs.release(target)
                self._ready.append(early)

    async def _claim(
        self, index: int, value: Any, held: list[tuple[int, Any, Any]]
    ) -> BatchItem | None:
        """Claim ``value``'s target into ``held``; or its item (given twice, a clash), released."""
        outputs = self._outputs
        assert outputs is not None
        try:
            target = self._targets[index] if self._targets else outputs.target(value, index)
        except (OutputClashError, OSError) as error:
            return BatchItem(input=value, index=index, error=error)
        held.append((index, value, target))
        try:
            if await outputs.claim(target, value):
                return None
            early = skipped_item(value, index, target)
        except (OutputClashError, OSError) as error:
            early = BatchItem(input=value, index=index, error=error)
        held.pop()
        outputs.release(target)
        return early

    def _settled(
        self, index: int, value: Any, target: Any, plan: Plan | OSError
    ) -> BatchItem | None:
        """The item a planned image ends as without sending, if its plan says so."""
        if isinstance(plan, OSError):
            return BatchItem(input=value, index=index, error=plan)
        if plan.verdict is Verdict.FOREIGN:
            return BatchItem(input=value, index=index, error=foreign_error(target))
        if settled(plan.verdict, self._skip_existing):
            return skipped_item(value, index, target)
        return None

    async def _planned(self, index: int, value: Any, target: Any, plan: Plan) -> BatchItem | None:
        """Send an image planned in a group; its target is released once it has ended."""
        try:
            return await self._sent(index, value, target, plan)
        finally:
            assert self._outputs is not None
            self._outputs.release(target)


def _local_path(value: Any) -> bool:
    """Whether ``value`` names a local file (planned in a group)."""
    return isinstance(value, (str, os.PathLike)) and not is_remote(value)
