"""The images a batch is sending, which are on the wire, and their turns to send; on a stop,
those with no attempt on the wire are called back (their tasks cancelled where they wait)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from .._results import ImageFile
from ._items import BatchItem, Wire


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
        """Cancel the images with no attempt on the wire, but the current task's own (it stops
        the batch as it reserves its credit, and knows it)."""
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
    """Turns to send, first come first served: ``concurrency`` at once, but one alone until the
    server has taken an image (`proven`), so that a refusal every image would meet costs one
    request."""

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
        """Give the free turns to those waiting (a turn ended, `proven` was set, or the batch
        stopped: then send them all away)."""
        halted = self._halted()
        while self._waiting and (halted or self._sending < self.limit):
            turn = self._waiting.popleft()
            if turn.done():  # its task was cancelled
                continue
            if not halted:
                self._sending += 1
            turn.set_result(not halted)


async def cancel_all(
    tasks: set[asyncio.Task[BatchItem | None]],
) -> dict[asyncio.Task[BatchItem | None], BaseException | BatchItem | None]:
    """Cancel ``tasks`` and await each one's outcome (its item, or what it raised); delete the
    temporary files of those that had finished all the same."""
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
    sending: dict[asyncio.Future[Any], Send],
    outcomes: dict[asyncio.Task[BatchItem | None], BaseException | BatchItem | None],
) -> tuple[list[BatchItem], list[BatchItem]]:
    """Of a closing batch's ``outcomes`` (``sending``: the images being sent then): the items
    that had ended unseen, and those cancelled on the wire."""
    ended: list[BatchItem] = []
    cancelled: list[BatchItem] = []
    for task, outcome in outcomes.items():
        send = sending.get(task)
        if isinstance(outcome, BatchItem):  # ended (cancelled by a stop, just before, too)
            (cancelled if outcome.cancelled else ended).append(outcome)
        elif isinstance(outcome, asyncio.CancelledError) and send and send.wire.sent:
            cancelled.append(send.cancelled(outcome))
    return ended, cancelled
