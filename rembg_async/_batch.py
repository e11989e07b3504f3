"""remove_many: many images with bounded concurrency, results as they complete.

Inputs are pulled lazily, never more than ``concurrency`` plus a read-ahead (`READ_AHEAD`)
in front of the work, so a million paths (or an endless generator) never become a million
tasks. Local inputs are read ahead of their turn to be sent, several in one thread call: a
thread hop costs more CPU than the HTTP exchange of a small image.

One item's failure is recorded and the others go on; a failure that every item would meet (a
refused key, a daily limit, an output folder that cannot be written) stops the batch from
starting new work instead. The first image goes alone, so that such a failure costs one
request, not ``concurrency``. Outputs mirror the inputs' layout and know where they came from
(``_outputs``); a credit budget is reserved before each image and settled after (``_budget``);
``stop()`` lets the images on the wire finish and calls back those still waiting to be sent
(``_batch_sends``).

The batch builds each image's `Call` and hands it to the client's exchange (a `Sender`), as
``remove()`` does; it never goes through the public ``remove()``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any, Final

import aiofiles
import attrs

from ._batch_items import (
    BatchItem,
    BatchProgress,
    BatchProgressCallback,
    ItemProgressCallback,
    Wire,
    for_batch,
    manifest_line,
    stops_batch,
)
from ._batch_sends import Send, Sends
from ._budget import CreditBudget
from ._closing import AsyncClosing
from ._download import KeptTarget
from ._exceptions import APIStatusError, RembgError
from ._exchange import Call, Sender
from ._inputs import LocalRead, RemoteInputs, Source, local_source, open_input, read_local
from ._limits import was_refused
from ._options import RemoveOptions
from ._outputs import OutputClashError, OutputTree, Provenance, Verdict, identify, options_key
from ._progress import ProgressCallback, ProgressEvent, call_back
from ._results import ImageFile
from ._retry import RetryPolicy
from ._storage._batches import needs_async_plan, open_manifest, plan_image
from ._storage._sinks import RemoteTarget
from ._storage._stores import Stores, is_remote
from ._storage._tree import RemoteOutputTree
from ._threads import run_to_completion

#: Images planned (their local input read, their output looked up) ahead of their turn to be
#: sent, at most: new ones start in groups of half this, so that their reads share a thread
#: call. Each holds a small input's bytes (up to 256 KiB) meanwhile.
READ_AHEAD: Final = 16


@attrs.frozen(kw_only=True)
class _Prepared:
    """An image's planning: its local file read (when it is one), or why its output's place
    cannot be written."""

    read: LocalRead | None
    problem: Exception | None
    source: Source | None = None  # a remote input, opened and checked


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
        outputs: OutputTree | RemoteOutputTree | None,
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
        self._total = len(inputs) if hasattr(inputs, "__len__") else None  # type: ignore[arg-type]
        self._targets: list[Any] = []  # of a listed batch's inputs, worked out up front
        if outputs is not None and isinstance(inputs, (list, tuple)):
            self._targets = _refuse_clashes(outputs, inputs)  # before anything is sent
        self._inputs = _async_iterator(inputs)
        self._options = options
        self._options_key = options_key(options.form_fields())
        self._retry = retry
        self._return_base64 = return_base64
        self._concurrency = concurrency
        self._outputs = outputs
        self._on_progress = on_progress
        self._on_item_progress = on_item_progress
        self._skip_existing = skip_existing
        self._manifest_path = manifest
        self._budget = budget
        self._remote = remote or RemoteInputs(stores=Stores())
        self._holding = 0  # credits this batch has reserved and not settled
        self._settled = asyncio.Event()
        self._unstarted: list[tuple[int, Any]] = []
        self._counts = {"done": 0, "failed": 0, "up": 0, "down": 0, "credits": 0}
        self._started_at = time.monotonic()
        self._in_flight: set[asyncio.Task[BatchItem | None]] = set()
        self._done: collections.deque[asyncio.Task[BatchItem | None]] = collections.deque()
        self._wake = asyncio.Event()
        self._ahead = min(concurrency, READ_AHEAD)
        self._sending = 0  # images that have their turn (see _take_turn)
        self._turns: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._proven = False  # the server has answered an image without a batch-wide refusal
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
        return self._counts["credits"]

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
        self._pass_turns()
        self._settled.set()
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
        manifest = await _open_manifest(self._manifest_path, self._remote)
        try:
            await self._start_more()
            while self._in_flight:
                await self._wake.wait()
                self._wake.clear()
                while self._done:
                    task = self._done.popleft()
                    self._in_flight.discard(task)
                    item = task.result()
                    if item is not None:
                        await self._account(item, manifest)
                        yield item
                await self._start_more()
        finally:
            # Work in flight is cancelled; finished items nobody received are cleaned up too.
            sending = self._sends.snapshot()
            outcomes = await _cancel_all(self._in_flight)
            self._in_flight.clear()
            try:
                await self._record_cancelled(sending, outcomes, manifest)
            finally:
                try:
                    if manifest is not None:
                        await manifest.close()
                finally:
                    await self._close_outputs()

    async def _record_cancelled(
        self,
        sending: dict[asyncio.Future[Any], Send],
        outcomes: dict[asyncio.Task[BatchItem | None], BaseException | BatchItem | None],
        manifest: Any,
    ) -> None:
        """What the closing found: the items nobody received into ``leftovers``, the images
        cancelled on the wire into ``cancelled``; both counted and into the manifest."""
        for task, outcome in outcomes.items():
            send = sending.get(task)
            if isinstance(outcome, BatchItem):  # ended (cancelled by a stop, just before, too)
                (self.cancelled if outcome.cancelled else self.leftovers).append(outcome)
            elif isinstance(outcome, asyncio.CancelledError) and send and send.wire.sent:
                self.cancelled.append(send.cancelled(outcome))
        for item in self.leftovers:
            self._counts[_counted_as(item)] += 1
        recorded = self.leftovers + self.cancelled
        if manifest is not None and recorded:
            await manifest.write("".join(manifest_line(item) for item in recorded))
            await manifest.flush()

    async def _close_outputs(self) -> None:
        if isinstance(self._outputs, RemoteOutputTree):
            await self._outputs.aclose()  # its last index segment
        elif self._outputs is not None:
            self._outputs.close()

    async def _open_outputs(self) -> bool:
        """Prepare the output folder; an error there stops the batch before any request."""
        if self._outputs is None:
            return True
        try:
            if isinstance(self._outputs, RemoteOutputTree):
                await self._outputs.open()
            else:
                await run_to_completion(self._outputs.open)
        except OSError as error:
            self._stop_with(error)
            return False
        return True

    async def _start_more(self) -> None:
        """Start images up to those that may be sent at once plus the read-ahead; once under
        way, only a group at a time (their reads then share a thread call)."""
        room = self._limit() + self._ahead - len(self._in_flight)
        if self._in_flight and room < max(1, self._ahead // 2):
            return
        index = self._counts.setdefault("index", 0)
        while not self._halted() and room > 0:
            try:
                value = await self._inputs.__anext__()
            except StopAsyncIteration:
                break
            task = asyncio.ensure_future(self._one(index, value))
            task.add_done_callback(self._finished)
            self._in_flight.add(task)
            index += 1
            room -= 1
        self._counts["index"] = index

    def _limit(self) -> int:
        """Images sent at once: the first goes alone, so that a refusal every image would meet
        (a refused key, a daily limit) costs one request."""
        return self._concurrency if self._proven else 1

    def _halted(self) -> bool:
        return self.stopped is not None or self.interrupted

    async def _take_turn(self) -> bool:
        """Wait until fewer than `_limit` images are being sent, first come first served; False
        if the batch stops meanwhile (the image is then not started)."""
        if self._halted():
            return False
        self._pass_turns()  # those ahead first (and drop the turns of tasks cancelled meanwhile)
        if not self._turns and self._sending < self._limit():
            self._sending += 1
            return True
        turn = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        try:
            return await turn  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self._end_turn()  # given, but never taken
            raise

    def _end_turn(self) -> None:
        self._sending -= 1
        self._pass_turns()

    def _pass_turns(self) -> None:
        """Give the free turns to those waiting; when the batch stops, send them all away.

        Called wherever that may change: a turn ends (after `stopped` or `_proven` is set in
        it), or `stop()`."""
        halted = self._halted()
        while self._turns and (halted or self._sending < self._limit()):
            turn = self._turns.popleft()
            if turn.done():  # its task was cancelled
                continue
            if not halted:
                self._sending += 1
            turn.set_result(not halted)

    def _finished(self, task: asyncio.Task[BatchItem | None]) -> None:
        # A queue of finished tasks, not asyncio.wait(): that adds and removes a callback on
        # every task in flight each time one finishes.
        self._done.append(task)
        self._wake.set()

    async def _one(self, index: int, value: Any) -> BatchItem | None:
        try:
            target, made, prepared, early = await self._plan(index, value)
            if early is None and not await self._take_turn():
                self._unstarted.append((index, value))
                return None
        except asyncio.CancelledError:  # read ahead, never sent: an input not started
            self._unstarted.append((index, value))
            raise
        if early is not None:
            return early
        try:
            return await self._charged(index, value, (target, made), prepared)
        finally:
            self._end_turn()

    async def _charged(
        self,
        index: int,
        value: Any,
        output: tuple[Any, Provenance | None],
        prepared: _Prepared | None,
    ) -> BatchItem | None:
        """Send ``value`` within the credit budget; its item, or None when it was not started."""
        if not await self._reserve():
            self._unstarted.append((index, value))
            return None
        wire = Wire()
        try:
            with self._sends.sending(index, value, wire):
                result = await self._send(index, value, output, prepared, wire)
        except Exception as error:  # an item's failure is its own (unless it stops the batch)
            await self._settle(wire, error)
            if was_refused(error) and not wire.sent:
                self._put_back(index, value, error)
                return None
            if wire.withheld:  # its retry, after the batch stopped
                return await self._between(index, value, wire, error)
            return await self._failed(index, value, error, wire)
        except BaseException as cancelled:  # what was sent may have been charged all the same
            await self._settle(wire, cancelled)
            if isinstance(cancelled, asyncio.CancelledError) and self._sends.was_recalled():
                return await self._recalled(index, value, wire, cancelled)
            raise
        await self._settle(wire, None)
        self._proven = True  # the server took an image: the others may go at once
        return BatchItem(
            input=value,
            index=index,
            result=result,
            output_path=_local_path(result),
            output_url=result.url if isinstance(result, ImageFile) else None,
            attempts=max(wire.attempts, 1),
            credits=wire.credits(None),
        )

    async def _plan(
        self, index: int, value: Any
    ) -> tuple[Any, Provenance | None, _Prepared | None, BatchItem | None]:
        """Where ``value`` goes, its provenance and (a local file) its bytes; or the item it
        ends as without sending."""
        if self._outputs is None:
            if isinstance(value, (str, os.PathLike)) and not is_remote(value):
                read = await run_to_completion(_read_if_possible, Path(value))
                return None, None, _Prepared(read=read, problem=None), None
            return None, None, None, None
        outputs = self._outputs
        try:
            target: Any = self._targets[index] if self._targets else outputs.target(value, index)
            if not outputs.claim(target, value):
                return target, None, None, _skipped(value, index, target)
            if needs_async_plan(outputs, value):
                made, verdict, prepared = await self._plan_remote(outputs, value, target)
            else:
                assert isinstance(outputs, OutputTree)
                made, verdict, prepared = await run_to_completion(
                    self._inspect, outputs, value, target
                )
        except (OutputClashError, OSError) as error:
            return None, None, None, BatchItem(input=value, index=index, error=error)
        if verdict is Verdict.FOREIGN:
            foreign = outputs.foreign(target)
            return target, made, None, BatchItem(input=value, index=index, error=foreign)
        if verdict is Verdict.DONE and self._skip_existing:
            return target, made, None, _skipped(value, index, target)
        return target, made, prepared, None

    async def _plan_remote(
        self, outputs: OutputTree | RemoteOutputTree, value: Any, target: Any
    ) -> tuple[Provenance, Verdict, _Prepared]:
        """`_inspect` for a remote input or output folder (see `_storage._batches`)."""
        plan = await plan_image(
            self._remote, outputs, value, target, self._options_key, self._skip_existing
        )
        prepared = _Prepared(read=None, problem=plan.problem, source=plan.source)
        return plan.made, plan.verdict, prepared

    def _inspect(
        self, outputs: OutputTree, value: Any, target: Path
    ) -> tuple[Provenance, Verdict, _Prepared]:
        """In one thread call, every blocking step of an image's planning: its provenance, its
        output's verdict, and unless it is skipped, the input read and the output's place
        checked."""
        verdict = Verdict.TODO
        there = os.path.lexists(target)  # asked afresh: a run into a subfolder may add to it
        if there:  # only then does the verdict need the input's stamp
            made = self._stamped(value, None)
            verdict = outputs.verdict(target, made)
            if verdict is Verdict.FOREIGN or (verdict is Verdict.DONE and self._skip_existing):
                return made, verdict, _Prepared(read=None, problem=None)
        try:
            outputs.check_place(target, there=there)
        except OSError as error:
            return self._stamped(value, None), verdict, _Prepared(read=None, problem=error)
        read = _read_if_possible(Path(value)) if isinstance(value, (str, os.PathLike)) else None
        # The index will say what was sent: the bytes read, stamped by their own fstat.
        return self._stamped(value, read), verdict, _Prepared(read=read, problem=None)

    def _stamped(self, value: Any, read: LocalRead | None) -> Provenance:
        """``value``'s provenance (blocking: a ``stat`` when it was not read)."""
        status = read.status if read is not None else None
        return identify(value, self._options_key, status, self._outputs.cwd)  # type: ignore[union-attr]

    async def _send(
        self,
        index: int,
        value: Any,
        output: tuple[Path | None, Provenance | None],
        prepared: _Prepared | None,
        wire: Wire,
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
            fields=self._options.form_fields(),
            output=self._kept(*output),
            returns="base64" if self._return_base64 else "file",
            on_upload=self._count("up", index, value, wire),
            on_download=self._count("down", index, value, wire),
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
        if isinstance(self._outputs, RemoteOutputTree):
            record = functools.partial(self._outputs.record, target, made)
            return RemoteTarget(url=target, then=record)
        return KeptTarget(path=target, then=functools.partial(self._outputs.record, target, made))

    def _put_back(self, index: int, value: Any, error: Exception) -> None:
        """The limiter refused to start ``value`` (a stop shared by the fleet, a spent shared
        budget): nothing was sent, so it is not started, and the batch stops."""
        self._unstarted.append((index, value))
        self._stop_with(error)

    async def _failed(self, index: int, value: Any, error: Exception, wire: Wire) -> BatchItem:
        if stops_batch(error, wire):
            self._stop_with(error)  # before its turn passes on: more would fail the same way
        elif wire.sent:
            self._proven = True
        attempts = error.attempts if isinstance(error, RembgError) else wire.attempts
        if isinstance(error, APIStatusError) and not wire.sent:
            attempts = max(attempts, 1)
        return BatchItem(
            input=value, index=index, error=error, attempts=attempts, credits=wire.credits(error)
        )

    async def _reserve(self) -> bool:
        """Hold a credit for one image; wait for images in flight to give theirs back before
        saying the budget is spent."""
        if self._budget is None:
            return True
        while True:
            if self._halted():  # stopped while waiting: not started
                return False
            if await self._budget.reserve(1):
                break
            if self._holding == 0:
                self._stop_with(self._budget.exhausted())
                return False
            self._settled.clear()
            await self._settled.wait()
        self._holding += 1
        return True

    async def _settle(self, wire: Wire, error: BaseException | None) -> None:
        spent = wire.credits(error)
        self._counts["credits"] += spent
        if self._budget is not None:
            self._holding -= 1
            await self._budget.settle(1, spent)
            self._settled.set()

    def _count(self, direction: str, index: int, value: Any, wire: Wire) -> ProgressCallback:
        def count(event: ProgressEvent) -> None:
            wire.saw(event)
            self._counts[direction] += event.bytes

        async def count_and_tell(event: ProgressEvent) -> None:
            count(event)
            await call_back(self._on_item_progress, index, value, event)  # type: ignore[arg-type]

        # A plain function unless the caller listens: no coroutine per event.
        return count if self._on_item_progress is None else count_and_tell

    async def _account(self, item: BatchItem, manifest: Any) -> None:
        self._counts[_counted_as(item)] += 1
        if manifest is not None:
            await manifest.write(manifest_line(item))
            await manifest.flush()
        if self._on_progress is not None:
            await call_back(self._on_progress, self.progress())

    def progress(self) -> BatchProgress:
        """The batch's standing now."""
        done, failed = self._counts["done"], self._counts["failed"]
        cancelled = self._counts.get("cancelled", 0)
        finished = done + failed + cancelled
        elapsed = time.monotonic() - self._started_at
        rate = finished / elapsed if elapsed > 0 and finished else None
        left = None if self._total is None else self._total - finished
        return BatchProgress(
            done=done,
            failed=failed,
            cancelled=cancelled,
            in_flight=self._sends.on_the_wire,
            total=self._total,
            bytes_up=self._counts["up"],
            bytes_down=self._counts["down"],
            rate=rate,
            estimated=None if rate is None or left is None else left / rate,
        )


def _counted_as(item: BatchItem) -> str:
    """Which of the batch's counts ``item`` adds to."""
    return "failed" if item.error is not None else "cancelled" if item.cancelled else "done"


def _read_if_possible(path: Path) -> LocalRead | None:
    """`read_local`, or None when the file cannot be read: ``remove()`` meets that again, and
    says it as usual."""
    try:
        return read_local(path)
    except OSError:
        return None


def _skipped(value: Any, index: int, target: Any) -> BatchItem:
    if isinstance(target, str) and is_remote(target):
        return BatchItem(input=value, index=index, skipped=True, output_url=target)
    return BatchItem(input=value, index=index, skipped=True, output_path=target)


def _local_path(result: Any) -> Path | None:
    if isinstance(result, ImageFile) and result.url is None:
        return result.output_image_path
    return None


def _refuse_clashes(
    outputs: OutputTree | RemoteOutputTree, inputs: list[Any] | tuple[Any, ...]
) -> list[Any]:
    """The targets of a listed batch's inputs; `OutputClashError` when two would make one."""
    probe: OutputTree | RemoteOutputTree
    if isinstance(outputs, RemoteOutputTree):
        probe = outputs.probe()
    else:
        probe = OutputTree(outputs.folder, outputs.root, outputs.extension, overwrite=False)
    targets: list[Any] = [probe.target(value, index) for index, value in enumerate(inputs)]
    for target, value in zip(targets, inputs, strict=True):
        probe.claim(target, value)
    return targets


async def _open_manifest(path: Path | str | None, remote: RemoteInputs) -> Any:
    if path is None:
        return None
    if isinstance(path, str):  # a remote URL (a local one is a Path by now)
        return await open_manifest(remote, path)
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    return await aiofiles.open(path, "a", encoding="utf-8")


async def _cancel_all(
    tasks: set[asyncio.Task[BatchItem | None]],
) -> dict[asyncio.Task[BatchItem | None], BaseException | BatchItem | None]:
    """Cancel ``tasks``; delete the temporary files of those that had finished all the same.
    Each task's outcome: its item, or what it raised."""
    for task in tasks:
        task.cancel()
    ordered = list(tasks)
    outcomes = await asyncio.gather(*ordered, return_exceptions=True)
    for outcome in outcomes:
        result = outcome.result if isinstance(outcome, BatchItem) else None
        if isinstance(result, ImageFile) and result.temporary:
            await result.cleanup()
    return dict(zip(ordered, outcomes, strict=True))


async def _async_iterator(inputs: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(inputs, AsyncIterable):
        async for value in inputs:
            yield value
    else:
        for value in inputs:
            yield value
