"""Progress events, shaped like Axios's, and the tracker that emits them."""

from __future__ import annotations

import inspect
import math
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
        names = ("loaded", "total", "progress", "bytes", "rate", "estimated")
        event: dict[str, object] = {name: getattr(self, name) for name in names}
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


@attrs.define(eq=False)
class ProgressTracker:
    """Turns the sizes of the chunks sent or received into throttled ``ProgressEvent``s.

    An event for the first chunk (the transfer has started), then at most one every
    ``interval`` seconds, and always a final one, so that a progress bar reaches 100%.
    ``bytes`` is what moved since the previous *emitted* event: all events' add up to ``loaded``.
    """

    _callback: ProgressCallback | None
    _total: int | None = attrs.field(kw_only=True)
    _upload: bool = attrs.field(kw_only=True)
    _interval: float = attrs.field(default=DEFAULT_INTERVAL, kw_only=True)
    _attempt: int = attrs.field(default=1, kw_only=True)
    _clock: Callable[[], float] = attrs.field(default=time.monotonic, kw_only=True)
    #: Bytes moved so far.
    loaded: int = attrs.field(default=0, init=False)
    _reported: int = attrs.field(default=0, init=False)
    _last_emit: float = attrs.field(default=-math.inf, init=False)
    _samples: deque[tuple[float, int]] = attrs.field(init=False)
    _finished: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._samples = deque([(self._clock(), 0)])

    async def advance(self, size: int) -> None:
        """Count ``size`` more bytes; emit an event if the interval has passed (or at the end)."""
        self.loaded += size
        if self._callback is None:
            return
        now = self._clock()
        self._samples.append((now, self.loaded))
        if self._total is not None and self.loaded >= self._total:
            await self.finish()
        elif now - self._last_emit >= self._interval:
            await self._emit(now)

    async def finish(self) -> None:
        """Emit the final event (once), unless the last event already reported everything."""
        if self._finished or self._callback is None:
            return
        self._finished = True
        if self.loaded > self._reported or self._reported == 0:
            await self._emit(self._clock())

    async def _emit(self, now: float) -> None:
        assert self._callback is not None
        self._last_emit = now
        event = self._event(now)
        self._reported = self.loaded
        await call_back(self._callback, event)

    def _event(self, now: float) -> ProgressEvent:
        loaded, total = self.loaded, self._total
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
        return (self.loaded - first_loaded) / elapsed
