"""Progress events, shaped like Axios's, and the tracker that emits them.

The tracker is fed the size of every chunk that goes out or comes in. It emits an event for
the first chunk (the transfer has started), then at most one every ``interval`` seconds, and
always a final one when the transfer completes, so a progress bar reaches 100%. ``bytes`` is
what moved since the previous *emitted* event, so the ``bytes`` of all events add up to
``loaded``.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import attrs

#: The rate is the average over this many seconds of the latest samples.
RATE_WINDOW_SECONDS: Final = 3.0
#: The default least time between two events of one transfer.
DEFAULT_INTERVAL: Final = 0.1


@attrs.frozen(kw_only=True)
class ProgressEvent:
    """One step of an upload or a download.

    ``loaded`` bytes of ``total`` (None when the size is unknown) have moved, ``bytes`` of them
    since the previous event; ``progress`` is ``loaded / total``; ``rate`` is in bytes per
    second and ``estimated`` the seconds left (None until they can be known). ``attempt``
    counts from 1 and grows when a retry restarts the transfer.
    """

    loaded: int
    total: int | None
    progress: float | None
    bytes: int
    rate: float | None
    estimated: float | None
    upload: bool = False
    download: bool = False
    attempt: int = 1

    def to_dict(self) -> dict[str, object]:
        """The Axios progress event shape (``upload: true`` or ``download: true``)."""
        event: dict[str, object] = {
            "loaded": self.loaded,
            "total": self.total,
            "progress": self.progress,
            "bytes": self.bytes,
            "rate": self.rate,
            "estimated": self.estimated,
        }
        event["upload" if self.upload else "download"] = True
        return event


#: A progress callback: a plain function, or a coroutine function (awaited in turn). What it
#: returns is ignored (an awaitable is awaited first), so ``lambda e: bar.update(e.bytes)`` fits.
ProgressCallback = Callable[[ProgressEvent], object]


async def call_back(callback: Callable[..., object], *args: Any) -> None:
    """Call a user's callback, awaiting it if it is a coroutine function."""
    outcome = callback(*args)
    if inspect.isawaitable(outcome):
        await outcome


class ProgressTracker:
    """Turns chunk sizes into throttled ``ProgressEvent``s for one callback."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        *,
        total: int | None,
        upload: bool,
        interval: float = DEFAULT_INTERVAL,
        attempt: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._callback = callback
        self._total = total
        self._upload = upload
        self._interval = interval
        self._attempt = attempt
        self._clock = clock
        self._loaded = 0
        self._reported = 0
        self._last_emit = -float("inf")
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])
        self._finished = False

    @property
    def loaded(self) -> int:
        """Bytes moved so far."""
        return self._loaded

    async def advance(self, size: int) -> None:
        """Count ``size`` more bytes; emit an event if the interval has passed (or at the end)."""
        self._loaded += size
        if self._callback is None:
            return
        now = self._clock()
        self._samples.append((now, self._loaded))
        if self._total is not None and self._loaded >= self._total:
            await self.finish()
        elif now - self._last_emit >= self._interval:
            await self._emit(now)

    async def finish(self) -> None:
        """Emit the final event (once), unless the last event already reported everything."""
        if self._finished or self._callback is None:
            return
        self._finished = True
        if self._loaded > self._reported or self._reported == 0:
            await self._emit(self._clock())

    async def _emit(self, now: float) -> None:
        assert self._callback is not None
        self._last_emit = now
        event = self._event(now)
        self._reported = self._loaded
        await call_back(self._callback, event)

    def _event(self, now: float) -> ProgressEvent:
        loaded, total = self._loaded, self._total
        if total is not None:
            total = max(total, loaded)  # a server that sends more than it announced
        rate = self._rate(now)
        left = None if total is None else total - loaded
        return ProgressEvent(
            loaded=loaded,
            total=total,
            progress=None if total is None else (loaded / total if total else 1.0),
            bytes=loaded - self._reported,
            rate=rate,
            estimated=None if rate is None or left is None else left / rate,
            upload=self._upload,
            download=not self._upload,
            attempt=self._attempt,
        )

    def _rate(self, now: float) -> float | None:
        while len(self._samples) > 2 and self._samples[1][0] <= now - RATE_WINDOW_SECONDS:
            self._samples.popleft()
        first_time, first_loaded = self._samples[0]
        elapsed = now - first_time
        if elapsed <= 0:
            return None
        return (self._loaded - first_loaded) / elapsed
