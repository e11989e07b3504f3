"""Sending one image of a batch: its turn (`Turns`), its credit (reserved as it goes to the
network, settled when its request ends), its `Call` handed to the client's exchange, how it
ends; and on a stop, calling back those with no attempt on the wire (`Sends`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from .._budget import BudgetExhaustedError, CreditBudget, Reservations
from .._exchange import Call, Sender
from .._inputs import RemoteInputs, local_source, open_input
from .._limits import was_refused
from .._outputs import OutputFolder, Plan
from .._progress import ProgressCallback, ProgressEvent, call_back
from .._results import ImageFile
from .._retry import RetryPolicy
from ._items import (
    BatchItem,
    ItemProgressCallback,
    Tally,
    Wire,
    failed_item,
    for_batch,
    made_item,
    stops_batch,
)

#: Each closing task's outcome: its item, or what it raised.
Outcomes = dict[asyncio.Task[BatchItem | None], BaseException | BatchItem | None]


class _NotStarted(Exception):
    """The batch stopped, or its budget is spent, before this image could reserve a credit."""


@attrs.frozen(kw_only=True)
class Send:
    """One image being sent: its place among the inputs, the input, what it did on the wire."""

    index: int
    value: Any
    wire: Wire

    def cancelled(self, error: BaseException) -> BatchItem:
        """The item of this image, cancelled after it reached the wire."""
        return BatchItem(
            input=self.value,
            index=self.index,
            cancelled=True,
            attempts=self.wire.attempts,
            credits=self.wire.credits(error),
        )


class Sends:
    """The images being sent, by the task that sends each."""

    def __init__(self) -> None:
        self.sends: dict[asyncio.Future[Any], Send] = {}
        self._recalled: set[asyncio.Future[Any]] = set()

    @contextlib.contextmanager
    def sending(self, index: int, value: Any, wire: Wire) -> Iterator[None]:
        """The current task sends ``value`` within the block."""
        task = asyncio.current_task()
        assert task is not None
        self.sends[task] = Send(index=index, value=value, wire=wire)
        try:
            yield
        finally:
            del self.sends[task]

    @property
    def on_the_wire(self) -> int:
        """Images with an attempt on the wire now (not those between attempts)."""
        return sum(1 for send in self.sends.values() if send.wire.live is not None)

    def recall(self) -> None:
        """Cancel the images with no attempt on the wire, but the current task (it stops the
        batch as it reserves its credit, and knows it)."""
        current = asyncio.current_task()
        for task, send in self.sends.items():
            if send.wire.live is None and task not in self._recalled and task is not current:
                self._recalled.add(task)
                task.cancel()

    def was_recalled(self) -> bool:
        """Whether the current task's cancellation is a `recall` (once: it is forgotten)."""
        task = asyncio.current_task()
        if task not in self._recalled:
            return False
        self._recalled.discard(task)
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: the task goes on as usual
        if uncancel is not None:
            uncancel()
        return True


class Turns:
    """Turns to send, first come first served: one alone until the server has taken an image
    (`proven`), so that a refusal every image would meet costs one request."""

    def __init__(self, concurrency: int, halted: Callable[[], bool]) -> None:
        self._concurrency = concurrency
        self._halted = halted
        self.proven = False  # the server has answered an image without a batch-wide refusal
        self._sending = 0  # images that have their turn
        self._waiting: collections.deque[asyncio.Future[bool]] = collections.deque()

    @property
    def limit(self) -> int:
        """Images sent at once now."""
        return self._concurrency if self.proven else 1

    async def take(self) -> bool:
        """Wait for a turn; False if the batch stops meanwhile (the image is not started)."""
        if self._halted():
            return False
        self.pass_on()  # those ahead first (and drop the turns of tasks cancelled meanwhile)
        if not self._waiting and self._sending < self.limit:
            self._sending += 1
            return True
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self.end()  # given, but never taken
            raise

    def end(self) -> None:
        """A turn taken is over."""
        self._sending -= 1
        self.pass_on()

    def pass_on(self) -> None:
        """Give the free turns to those waiting; once the batch stops, send them all away."""
        halted = self._halted()
        while self._waiting and (halted or self._sending < self.limit):
            turn = self._waiting.popleft()
            if turn.done():  # its task was cancelled
                continue
            if not halted:
                self._sending += 1
            turn.set_result(not halted)


async def cancel_all(tasks: set[asyncio.Task[BatchItem | None]]) -> Outcomes:
    """Cancel ``tasks``, each one's outcome (its item, or what it raised); the temporary files
    of those that had finished all the same deleted."""
    for task in tasks:
        task.cancel()
    ordered = list(tasks)
    outcomes = await asyncio.gather(*ordered, return_exceptions=True)
    for outcome in outcomes:
        result = outcome.result if isinstance(outcome, BatchItem) else None
        if isinstance(result, ImageFile) and result.temporary:
            await result.cleanup()
    return dict(zip(ordered, outcomes, strict=True))


def closing_items(
    sending: dict[asyncio.Future[Any], Send], outcomes: Outcomes
) -> tuple[list[BatchItem], list[BatchItem]]:
    """Of a closing batch's tasks: the items that had ended unseen, and those cancelled on the
    wire (``sending``: the images being sent then)."""
    ended: list[BatchItem] = []
    cancelled: list[BatchItem] = []
    for task, outcome in outcomes.items():
        send = sending.get(task)
        if isinstance(outcome, BatchItem):  # ended (cancelled by a stop, just before, too)
            (cancelled if outcome.cancelled else ended).append(outcome)
        elif isinstance(outcome, asyncio.CancelledError) and send and send.wire.sent:
            cancelled.append(send.cancelled(outcome))
    return ended, cancelled


class Sending:
    """How a batch sends one image, and stops sending; the state is the run's (`BatchRun`)."""

    _send_call: Sender
    _fields: dict[str, str]
    _retry: RetryPolicy
    _return_base64: bool
    _outputs: OutputFolder | None
    _on_item_progress: ItemProgressCallback | None
    _budget: CreditBudget | None
    _credits: Reservations
    _remote: RemoteInputs
    _tally: Tally
    _turns: Turns
    _sends: Sends
    _unstarted: list[tuple[int, Any]]
    stopped: BaseException | None
    interrupted: bool

    async def _sent(self, index: int, value: Any, target: Any, plan: Plan) -> BatchItem | None:
        """Send an image planned, once its turn comes; None when it was not started."""
        try:
            taken = await self._turns.take()
        except asyncio.CancelledError:  # read ahead, never sent: an input not started
            self._unstarted.append((index, value))
            raise
        if not taken:
            self._unstarted.append((index, value))
            return None
        try:
            return await self._charged(index, value, target, plan)
        finally:
            self._turns.end()

    async def _charged(self, index: int, value: Any, target: Any, plan: Plan) -> BatchItem | None:
        """Send ``value`` with a credit reserved as it goes to the network (not for a cache hit)."""
        wire = Wire()
        reserved = False

        async def admit() -> None:
            nonlocal reserved
            if not await self._reserve():
                raise _NotStarted
            reserved = True

        try:
            with self._sends.sending(index, value, wire):
                result = await self._send(index, value, target, plan, wire, admit)
        except _NotStarted:
            self._unstarted.append((index, value))
            return None
        except Exception as error:  # an item's failure is its own (unless it stops the batch)
            if reserved:
                await self._settle(wire, error)
            if was_refused(error) and not wire.sent:  # by the limiter: a fleet's stop, a budget
                self._unstarted.append((index, value))
                self._stop_with(error)
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

    async def _send(
        self,
        index: int,
        value: Any,
        target: Any,
        plan: Plan,
        wire: Wire,
        admit: Callable[[], Awaitable[None]],
    ) -> Any:
        if plan.problem is not None:
            raise plan.problem
        if plan.source is not None:
            source = plan.source  # a remote input, opened in its planning
        elif plan.read is not None:
            source = local_source(Path(value), plan.read)
        else:  # not read ahead (or unreadable: opening it again says why)
            source = await open_input(value, remote=self._remote)
        if self._outputs is not None and plan.made is not None:
            target = self._outputs.keep(target, plan.made)  # noted in its index as it is saved
        call = Call(
            source=source,
            fields=self._fields,
            output=target,
            returns="base64" if self._return_base64 else "file",
            on_upload=self._count("up", index, value, wire),
            on_download=self._count("down", index, value, wire),
            admit=admit,
        )
        budgeted = self._budget is not None
        return await self._send_call(
            call, for_batch(self._retry, wire, self._halted, charge_aware=budgeted)
        )

    async def _recalled(
        self, index: int, value: Any, wire: Wire, cancelled: asyncio.CancelledError
    ) -> BatchItem | None:
        """An image called back by a stop: not started, between attempts, or cancelled on the
        wire (its upload began meanwhile)."""
        if wire.live is not None:
            return Send(index=index, value=value, wire=wire).cancelled(cancelled)
        if wire.failure is not None:
            return await self._between(index, value, wire, wire.failure)
        self._unstarted.append((index, value))
        return None

    async def _between(
        self, index: int, value: Any, wire: Wire, error: BaseException
    ) -> BatchItem | None:
        """Stopped after an attempt failed with ``error``: not started if no attempt can have
        cost a credit (a re-run sends it), else failed with it."""
        if wire.credits(error) == 0:
            self._unstarted.append((index, value))
            return None
        assert isinstance(error, Exception)
        return await self._failed(index, value, error, wire)

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

    def _halted(self) -> bool:
        return self.stopped is not None or self.interrupted

    def _stop_with(self, error: BaseException) -> None:
        """Stop the batch for ``error`` (the first one stays): nothing more is sent."""
        if self.stopped is None:
            self.stopped = error
        self._halt()

    def _halt(self) -> None:
        """Send back to the inputs not started those waiting for a turn, credit or limiter."""
        self._turns.pass_on()
        self._credits.wake()
        self._sends.recall()
