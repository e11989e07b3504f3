"""The images a batch is sending, and which of them are on the wire.

An image has its turn from the batch, then may still wait: for a slot and a start in the
client's rate limiter, for its connection; after a failed attempt, for its retry. When the
batch stops (``stop()``, Ctrl-C, an error every image would meet), the images that have no
attempt on the wire are called back: their tasks are cancelled wherever they wait, and they go
back among the inputs not started (or, when an earlier attempt may have been charged, end as
failed with that attempt's error). Those with an attempt on the wire finish that attempt, and
retry no more. A batch closed meanwhile cancels those too, and records them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import attrs

from ._batch_items import BatchItem, Wire


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
        self._sends: dict[asyncio.Future[Any], Send] = {}
        self._recalled: set[asyncio.Future[Any]] = set()

    @contextlib.contextmanager
    def sending(self, index: int, value: Any, wire: Wire) -> Iterator[None]:
        """The current task sends ``value`` within the block."""
        task = asyncio.current_task()
        assert task is not None
        self._sends[task] = Send(index=index, value=value, wire=wire)
        try:
            yield
        finally:
            del self._sends[task]

    @property
    def on_the_wire(self) -> int:
        """Images with an attempt on the wire now: its upload has begun, and it has not ended
        (not counting those between attempts)."""
        return sum(1 for send in self._sends.values() if send.wire.live is not None)

    def recall(self) -> None:
        """Cancel the images that have no attempt on the wire, wherever they wait."""
        for task, send in self._sends.items():
            if send.wire.live is None and task not in self._recalled:
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

    def snapshot(self) -> dict[asyncio.Future[Any], Send]:
        """The images being sent now, by task."""
        return dict(self._sends)
