"""remove_many: many images with bounded concurrency, results as they complete.

Inputs are pulled lazily, never more than ``concurrency`` plus a read-ahead (`READ_AHEAD`)
in front of the work, so a million paths (or an endless generator) never become a million
tasks. Local inputs are read ahead of their turn to be sent, several in one thread call: a
thread hop costs more CPU than the HTTP exchange of a small image.

One item's failure is recorded and the others go on; a failure that every item would meet (a
refused key, a daily limit, an output folder that cannot be written) stops the batch from
starting new work instead. The first image goes alone, so that such a failure costs one
request, not ``concurrency``. Each image is planned once through its output folder, local or
remote, whose outputs mirror the inputs' layout and know where they came from (``_outputs``); a
credit budget is reserved before each image and settled after (``_budget``); turns to send
are taken in order, and ``stop()`` lets the images on the wire finish and calls back those
still waiting to be sent (``_sends``).

The batch builds each image's `Call` and hands it to the client's exchange (a `Sender`), as
``remove()`` does; it never goes through the public ``remove()``.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from pathlib import Path
from typing import Any, Final

from .._budget import BudgetExhaustedError, CreditBudget, Reservations
from .._closing import AsyncClosing
from .._download import KeptTarget
from .._exchange import Call, Sender
from .._files import run_to_completion
from .._inputs import RemoteInputs, local_source, open_input, read_local_or_none
from .._limits import was_refused
from .._options import RemoveOptions
from .._outputs import (
    Manifest,
    OutputClashError,
    OutputFolder,
    Plan,
    Provenance,
    Verdict,
    open_manifest,
    options_key,
    settled,
    targets_of,
)
from .._progress import ProgressCallback, ProgressEvent, call_back
from .._retry import RetryPolicy
from .._storage._sinks import RemoteTarget
from .._storage._stores import Stores, is_remote
from ._items import (
    BatchItem,
    BatchProgress,
    BatchProgressCallback,
    ItemProgressCallback,
    Tally,
    Wire,
    failed_item,
    for_batch,
    made_item,
    manifest_line,
    skipped_item,
    stops_batch,
)
from ._sends import Send, Sends, Turns, cancel_all, closing_items

#: Images planned (their local input read, their output looked up) ahead of their turn to be
#: sent, at most: new ones start in groups of half this, so that their reads share a thread
#: call. Each holds a small input's bytes (up to 256 KiB) meanwhile.
READ_AHEAD: Final = 16


#: What `_send` gets of an image's planning: its input read or opened, or its problem.
_Prepared = Plan


class _NotStarted(Exception):
    """The batch stopped, or its budget is spent, before this image could reserve a credit."""


class BatchRun(AsyncClosing):
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

    def _stop_with(self, error: BaseException) -> None:
        """Stop the batch for ``error`` (the first one stays): nothing more is sent."""
        if self.stopped is None:
            self.stopped = error
        self._halt()

    def _halt(self) -> None:
        """Those waiting for a turn, a credit or the rate limiter go back to the inputs not
        started."""
        self._turns.pass_on()
        self._credits.wake()
        self._sends.recall()

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

    async def _plan_group(self, group: list[tuple[int, Any]]) -> None:
        """Plan ``group`` (local inputs) with one thread call: an image its planning settles
        (skipped, someone else's output, refused) ends at once as an item with no task of its
        own (a re-run with nothing to do pays no task nor thread hop per image); the others
        start, their plan in hand. Cancelled meanwhile: the images not settled are not
        started."""
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
        """Claim ``value``'s target (held, in ``held``, from before the claim); or the item it
        ends as (given twice, a clash), its target released."""
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
            assert self._outputs is not None
            return BatchItem(input=value, index=index, error=self._outputs.foreign(target))
        if settled(plan.verdict, self._skip_existing):
            return skipped_item(value, index, target)
        return None

    async def _planned(self, index: int, value: Any, target: Any, plan: Plan) -> BatchItem | None:
        """Send an image planned in a group; its target is released once it has ended."""
        try:
            return await self._sent(index, value, (target, plan.made), plan)
        finally:
            assert self._outputs is not None
            self._outputs.release(target)

    def _halted(self) -> bool:
        return self.stopped is not None or self.interrupted

    def _finished(self, task: asyncio.Task[BatchItem | None]) -> None:
        # A queue of finished tasks, not asyncio.wait(): that adds and removes a callback on
        # every task in flight each time one finishes.
        self._done.append(task)
        self._wake.set()

    async def _one(self, index: int, value: Any) -> BatchItem | None:
        held: list[Any] = []  # the target claimed, whose folder the output folder holds
        try:
            return await self._planned_and_sent(index, value, held)
        finally:
            if held and self._outputs is not None:
                self._outputs.release(held[0])

    async def _planned_and_sent(self, index: int, value: Any, held: list[Any]) -> BatchItem | None:
        try:
            target, made, prepared, early = await self._plan(index, value, held)
        except asyncio.CancelledError:  # read ahead, never sent: an input not started
            self._unstarted.append((index, value))
            raise
        if early is not None:
            return early
        return await self._sent(index, value, (target, made), prepared)

    async def _sent(
        self,
        index: int,
        value: Any,
        output: tuple[Any, Provenance | None],
        prepared: _Prepared | None,
    ) -> BatchItem | None:
        """Send an image planned, once its turn comes; None when it was not started."""
        try:
            if not await self._turns.take():
                self._unstarted.append((index, value))
                return None
        except asyncio.CancelledError:  # read ahead, never sent: an input not started
            self._unstarted.append((index, value))
            raise
        try:
            return await self._charged(index, value, output, prepared)
        finally:
            self._turns.end()

    async def _charged(
        self,
        index: int,
        value: Any,
        output: tuple[Any, Provenance | None],
        prepared: _Prepared | None,
    ) -> BatchItem | None:
        """Send ``value`` within the credit budget; its item, or None when it was not started.

        The credit is reserved when the image is about to go to the network: a cache hit
        reserves none."""
        wire = Wire()
        reserved = False

        async def admit() -> None:
            nonlocal reserved
            if not await self._reserve():
                raise _NotStarted
            reserved = True

        try:
            with self._sends.sending(index, value, wire):
                result = await self._send(index, value, output, prepared, wire, admit)
        except _NotStarted:
            self._unstarted.append((index, value))
            return None
        except Exception as error:  # an item's failure is its own (unless it stops the batch)
            if reserved:
                await self._settle(wire, error)
            if was_refused(error) and not wire.sent:
                self._put_back(index, value, error)
                return None
            if wire.withheld:  # its retry, after the batch stopped
                return await self._between(index, value, wire, error)
            return await self._failed(index, value, error, wire)
        except BaseException as cancelled:  # what was sent may have been charged all the same
            if reserved:
                await self._settle(wire, cancelled)
            if isinstance(cancelled, asyncio.CancelledError) and self._sends.was_recalled():
                return await self._recalled(index, value, wire, cancelled)
            raise
        if reserved:
            await self._settle(wire, None)
        self._turns.proven = True  # the server (or the cache) took an image: the others may go
        return made_item(value, index, result, wire)

    async def _plan(
        self, index: int, value: Any, held: list[Any]
    ) -> tuple[Any, Provenance | None, Plan | None, BatchItem | None]:
        """Where ``value`` goes, its provenance and its input read or opened (a local file with
        no output folder: read ahead); or the item it ends as without sending. The target
        claimed goes into ``held``, to be released once the image has ended."""
        outputs = self._outputs
        if outputs is None:
            if not isinstance(value, (str, os.PathLike)) or is_remote(value):
                return None, None, None, None
            return None, None, Plan(read=await run_to_completion(read_local_or_none, value)), None
        try:
            target: Any = self._targets[index] if self._targets else outputs.target(value, index)
            held.append(target)
            if not await outputs.claim(target, value):
                return target, None, None, skipped_item(value, index, target)
            plan = await outputs.plan(
                value, target, self._options_key, skip_existing=self._skip_existing
            )
        except (OutputClashError, OSError) as error:
            return None, None, None, BatchItem(input=value, index=index, error=error)
        early = self._settled(index, value, target, plan)
        return target, plan.made, plan if early is None else None, early

    async def _send(
        self,
        index: int,
        value: Any,
        output: tuple[Path | None, Provenance | None],
        prepared: _Prepared | None,
        wire: Wire,
        admit: Callable[[], Awaitable[None]],
    ) -> Any:
        if prepared is not None and prepared.problem is not None:
            raise prepared.problem
        if prepared is not None and prepared.source is not None:
            source = prepared.source  # a remote input, opened in its planning
        elif prepared is not None and prepared.read is not None:
            source = local_source(Path(value), prepared.read)
        else:  # not read ahead (or unreadable: opening it again says why)
            source = await open_input(value, remote=self._remote)
        budgeted = self._budget is not None
        retry = for_batch(self._retry, wire, self._halted, charge_aware=budgeted)
        call = Call(
            source=source,
            fields=self._fields,
            output=self._kept(*output),
            returns="base64" if self._return_base64 else "file",
            on_upload=self._count("up", index, value, wire),
            on_download=self._count("down", index, value, wire),
            admit=admit,
        )
        return await self._send_call(call, retry)

    async def _recalled(
        self, index: int, value: Any, wire: Wire, cancelled: asyncio.CancelledError
    ) -> BatchItem | None:
        """An image called back by a stop: not started; or between attempts (see `_between`);
        or, when an attempt's upload began meanwhile, cancelled on the wire, and said so."""
        if wire.live is not None:
            return Send(index=index, value=value, wire=wire).cancelled(cancelled)
        if wire.failure is not None:
            return await self._between(index, value, wire, wire.failure)
        self._unstarted.append((index, value))
        return None

    async def _between(
        self, index: int, value: Any, wire: Wire, error: BaseException
    ) -> BatchItem | None:
        """An image stopped between attempts, the last of which failed with ``error``: not
        started when none of its attempts can have cost a credit, so that a re-run sends it;
        otherwise failed with that error (a re-run with ``--retry-failed`` sends it again)."""
        if wire.credits(error) == 0:
            self._unstarted.append((index, value))
            return None
        assert isinstance(error, Exception)
        return await self._failed(index, value, error, wire)

    def _kept(
        self, target: Any, made: Provenance | None
    ) -> Path | KeptTarget | RemoteTarget | None:
        """Where the result goes; noted in the folder's index in the thread call that saves it
        (remote: once the object is in place)."""
        if target is None or made is None or self._outputs is None:
            return target  # type: ignore[no-any-return]
        return self._outputs.keep(target, made)

    def _put_back(self, index: int, value: Any, error: Exception) -> None:
        """The limiter refused to start ``value`` (a stop shared by the fleet, a spent shared
        budget): nothing was sent, so it is not started, and the batch stops."""
        self._unstarted.append((index, value))
        self._stop_with(error)

    async def _failed(self, index: int, value: Any, error: Exception, wire: Wire) -> BatchItem:
        if stops_batch(error, wire):
            self._stop_with(error)  # before its turn passes on: more would fail the same way
        elif wire.sent:
            self._turns.proven = True
        return failed_item(value, index, error, wire)

    async def _reserve(self) -> bool:
        """Hold a credit for one image (see `Reservations`); False: not started."""
        try:
            return await self._credits.reserve(self._halted)
        except BudgetExhaustedError as spent:
            self._stop_with(spent)
            return False

    async def _settle(self, wire: Wire, error: BaseException | None) -> None:
        spent = wire.credits(error)
        self._tally.credits += spent
        await self._credits.settle(spent)

    def _count(self, direction: str, index: int, value: Any, wire: Wire) -> ProgressCallback:
        def count(event: ProgressEvent) -> None:
            wire.saw(event)
            self._tally.bytes[direction] += event.bytes

        async def count_and_tell(event: ProgressEvent) -> None:
            count(event)
            await call_back(self._on_item_progress, index, value, event)  # type: ignore[arg-type]

        # A plain function unless the caller listens: no coroutine per event.
        return count if self._on_item_progress is None else count_and_tell

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


async def async_iterator(inputs: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(inputs, AsyncIterable):
        async for value in inputs:
            yield value
    else:
        for value in inputs:
            yield value
