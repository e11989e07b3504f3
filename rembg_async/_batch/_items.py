"""What a batch reports (its items, progress and manifest lines) and what each item cost, read
from the wire: a 200 was charged; an attempt that failed after its upload began with no answer
may have been (counted, so that a budget errs safe); an error status or no connection was not."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import aiohttp
import attrs

from .._exceptions import (
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RembgError,
)
from .._progress import ProgressEvent
from .._results import Base64Image, ImageFile, SyncImageFile, handed_to_sync
from .._retry import RetryPolicy
from .._storage._stores import is_remote

#: Failures writing outputs that every further image would meet too.
_OUTPUT_STOPPERS: Final = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
)
#: The statuses of a manifest's line that a re-run should do again.
_NOT_MADE: Final = frozenset({"failed", "cancelled"})


@attrs.frozen(kw_only=True)
class BatchItem:
    """The outcome of one input: a ``result``, an ``error``, ``skipped`` (already done), or
    ``cancelled`` (the batch was closed while it was on the wire: see `BatchRun.cancelled`).

    ``output_path`` is where the result is (or, when skipped, already was); for a remote
    ``output_dir``, ``output_url`` is, and ``output_path`` is None. ``attempts`` is
    how many requests were made for it (0 when none was), ``credits`` how many of them the
    server charged or may have charged. ``cached``: the client's result cache served it
    (no request, no credit).
    """

    input: Any
    index: int
    result: ImageFile | Base64Image | None = None
    error: BaseException | None = None
    skipped: bool = False
    output_path: Path | None = None
    attempts: int = 0
    credits: int = 0
    #: Where the result is (or was, when skipped) in a remote store; None for a local file.
    output_url: str | None = None
    #: Cancelled while it was being sent (it may have cost a credit all the same).
    cancelled: bool = False
    #: Served by the client's result cache: nothing was sent.
    cached: bool = False

    @property
    def ok(self) -> bool:
        """True when the image was made now or before (skipped); False when it failed or was
        cancelled."""
        return self.error is None and not self.cancelled

    @property
    def status(self) -> str:
        """``"ok"``, ``"skipped"``, ``"failed"`` or ``"cancelled"``."""
        if self.error is not None:
            return "failed"
        return "cancelled" if self.cancelled else "skipped" if self.skipped else "ok"


def made_item(value: Any, index: int, result: ImageFile | Base64Image, wire: Wire) -> BatchItem:
    """The item of an image made now."""
    url = result.url if isinstance(result, ImageFile) else None
    local = result.output_image_path if isinstance(result, ImageFile) and url is None else None
    made = BatchItem(input=value, index=index, result=result, output_path=local, output_url=url)
    if result.cached:  # its download events came from the cache, not the wire
        return attrs.evolve(made, cached=True)
    return attrs.evolve(made, attempts=max(wire.attempts, 1), credits=wire.credits(None))


def skipped_item(value: Any, index: int, target: Any) -> BatchItem:
    """The item of an image made before, at ``target`` (a path, or a URL)."""
    return BatchItem(input=value, index=index, skipped=True, **output_at(target))


def output_at(target: Any) -> dict[str, Any]:
    """A local output's ``output_path``, or a remote one's ``output_url``."""
    if isinstance(target, str) and is_remote(target):
        return {"output_url": target}
    return {"output_path": target}


def failed_item(value: Any, index: int, error: Exception, wire: Wire) -> BatchItem:
    """The item of an image that failed with ``error``."""
    attempts = error.attempts if isinstance(error, RembgError) else wire.attempts
    if isinstance(error, APIStatusError) and not wire.sent:
        attempts = max(attempts, 1)
    return BatchItem(
        input=value, index=index, error=error, attempts=attempts, credits=wire.credits(error)
    )


@attrs.frozen(kw_only=True)
class SyncBatchItem(BatchItem):
    """A `BatchItem` of the sync client's ``remove_many``: a file ``result`` is a
    `SyncImageFile`, cleaned up by a plain ``cleanup()``."""

    result: SyncImageFile | Base64Image | None = None

    @classmethod
    def of(cls, item: BatchItem) -> SyncBatchItem:
        """``item`` for the sync client; its file, if any, is handed over with it."""
        fields = {str(a.alias): getattr(item, a.name) for a in attrs.fields(BatchItem)}
        if isinstance(item.result, ImageFile):
            fields["result"] = handed_to_sync(item.result)
        return cls(**fields)


@attrs.frozen(kw_only=True)
class BatchProgress:
    """Where a batch stands: items ``done`` (made or skipped), ``failed``, ``in_flight`` (on
    the wire: an attempt's upload has begun, and that attempt has not ended; not counting those
    read ahead, waiting for their turn to be sent, or between attempts), of ``total`` (None
    when the inputs have no length); bytes sent and received; the ``rate`` in items per
    second and the seconds ``estimated`` to finish (when the total is known); ``cancelled``:
    items cancelled on the wire by a stop that began as their upload did."""

    done: int
    failed: int
    in_flight: int
    total: int | None
    bytes_up: int
    bytes_down: int
    rate: float | None
    estimated: float | None
    cancelled: int = 0

    @property
    def finished(self) -> int:
        """Items that have ended, well or not."""
        return self.done + self.failed + self.cancelled


@attrs.define
class Tally:
    """A batch's counts: items by outcome, bytes each way, credits; its progress from them."""

    total: int | None  # None: the inputs have no length
    started_at: float = attrs.Factory(time.monotonic)
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    credits: int = 0
    bytes: dict[str, int] = attrs.Factory(lambda: {"up": 0, "down": 0})

    def add(self, item: BatchItem) -> None:
        """Count ``item`` by its outcome."""
        if item.error is not None:
            self.failed += 1
        elif item.cancelled:
            self.cancelled += 1
        else:
            self.done += 1

    def progress(self, in_flight: int) -> BatchProgress:
        """Where the batch stands, with ``in_flight`` images on the wire."""
        finished = self.done + self.failed + self.cancelled
        elapsed = time.monotonic() - self.started_at
        rate = finished / elapsed if elapsed > 0 and finished else None
        left = None if self.total is None else self.total - finished
        return BatchProgress(
            done=self.done,
            failed=self.failed,
            cancelled=self.cancelled,
            in_flight=in_flight,
            total=self.total,
            bytes_up=self.bytes["up"],
            bytes_down=self.bytes["down"],
            rate=rate,
            estimated=None if rate is None or left is None else left / rate,
        )


#: A batch progress callback: a plain function, or a coroutine function (awaited in turn).
BatchProgressCallback = Callable[[BatchProgress], object]
#: A per-item progress callback: the item's index, its input, and one of its progress events.
ItemProgressCallback = Callable[[int, Any, ProgressEvent], object]


@attrs.define
class Wire:
    """What one item's attempts did on the wire (told by its progress events and `BatchRetry`)."""

    sent: set[int] = attrs.Factory(set)  # attempts whose upload began
    answered: set[int] = attrs.Factory(set)  # attempts that received a 200
    #: The attempt whose upload has begun and not ended; None before the first and between.
    live: int | None = None
    #: The error that ended the latest failed attempt.
    failure: BaseException | None = None
    #: A retry the base policy would have made, withheld because the batch had stopped.
    withheld: bool = False

    def saw(self, event: ProgressEvent) -> None:
        """Note an event of the item's transfer."""
        if event.upload:
            self.sent.add(event.attempt)
            self.live = event.attempt
        else:
            self.answered.add(event.attempt)

    def ended(self, error: BaseException) -> None:
        """Note that the attempt on the wire failed with ``error``."""
        self.live = None
        self.failure = error

    @property
    def attempts(self) -> int:
        """Requests made: the last attempt that sent anything."""
        return max(self.sent | self.answered, default=0)

    def may_be_charged(self, attempt: int, error: BaseException | None) -> bool:
        """Whether ``attempt``, which failed with ``error``, may have cost a credit."""
        if attempt in self.answered:
            return True
        return attempt in self.sent and not _certainly_free(error)

    def credits(self, error: BaseException | None) -> int:
        """The credits the item cost or may have, ending with ``error`` (or its last failure)."""
        if error is not None and self.live is None and self.failure is not None:
            error = self.failure
        last = self.attempts
        lost = error is not None and last not in self.answered and self.may_be_charged(last, error)
        return len(self.answered) + lost


def _certainly_free(error: BaseException | None) -> bool:
    """A failure the server did not charge: it answered with an error, or was never reached."""
    if isinstance(error, APIStatusError):
        return True
    if isinstance(error, APITimeoutError) and error.timeout == "connect":
        return True
    return isinstance(error, RembgError) and isinstance(
        error.__cause__, aiohttp.ClientConnectorError
    )


@attrs.frozen(kw_only=True)
class BatchRetry(RetryPolicy):
    """A batch image's retry policy: none once the batch stops, nor under a budget
    (``charge_aware``) after an attempt that may have cost a credit (one credit per image)."""

    base: RetryPolicy
    wire: Wire
    halted: Callable[[], bool]
    charge_aware: bool = False

    def delay(self, error: RembgError, attempt: int) -> float | None:
        """As the base policy, but see `BatchRetry`. ``attempt`` counts failures only (short-term
        429s wait apart); the attempt that failed is ``error.attempts``."""
        self.wire.ended(error)
        if self.charge_aware and self.wire.may_be_charged(error.attempts, error):
            return None
        return self._unless_halted(self.base.delay(error, attempt))

    def flow_control_delay(self, error: RateLimitError, spent: float, count: int) -> float | None:
        """As the base policy, but never once the batch has stopped."""
        self.wire.ended(error)
        return self._unless_halted(self.base.flow_control_delay(error, spent, count))

    def _unless_halted(self, delay: float | None) -> float | None:
        if delay is not None and self.halted():
            self.wire.withheld = True
            return None
        return delay


def for_batch(
    policy: RetryPolicy, wire: Wire, halted: Callable[[], bool], *, charge_aware: bool
) -> RetryPolicy:
    """``policy`` for one image of a batch (see `BatchRetry`)."""
    # Its own fields only: a subclass's would not fit (its rules still apply, through base).
    fields = {field.name: getattr(policy, field.name) for field in attrs.fields(RetryPolicy)}
    return BatchRetry(**fields, base=policy, wire=wire, halted=halted, charge_aware=charge_aware)


def stops_batch(error: BaseException | None, wire: Wire) -> bool:
    """Whether ``error`` would repeat for every image: a daily or monthly limit, a refused key
    or account, an output folder that cannot be written or is full."""
    if isinstance(error, RateLimitError):
        return error.scope in ("daily", "monthly")
    if isinstance(error, (AuthenticationError, PaymentRequiredError, PermissionDeniedError)):
        return True
    # Before sending, an OSError is the input's own (unreadable, missing); after, the output's.
    return isinstance(error, OSError) and error.errno in _OUTPUT_STOPPERS and bool(wire.sent)


def describe(value: Any, index: int) -> str:
    """The input as the manifest names it."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    return f"<{type(value).__name__} #{index}>"


def manifest_line(item: BatchItem) -> str:
    """The manifest's JSON line for ``item``."""
    error = item.error
    entry = {
        "input": describe(item.input, item.index),
        "output": item.output_url or (str(item.output_path) if item.output_path else None),
        "status": item.status,
        "error": None if error is None else str(error),
        "error_type": None if error is None else type(error).__name__,
        "bytes": None if item.result is None else item.result.size,
        "attempts": item.attempts,
        "credits": item.credits,
        "cached": item.cached,
    }
    return json.dumps(entry) + "\n"


def failed_inputs(manifest: str | os.PathLike[str]) -> list[str]:
    """The inputs whose latest line in ``manifest`` failed or was cancelled: what a re-run
    should do again."""
    with open(manifest, encoding="utf-8") as lines:
        return failed_in(lines)


def failed_in(lines: Iterable[str]) -> list[str]:
    """`failed_inputs` of a manifest's lines, remembering only the inputs failed so far."""
    failed: dict[str, None] = {}  # a dict: in the order they first failed, each once
    for entry in _entries(lines):
        if entry["status"] in _NOT_MADE:
            failed[entry["input"]] = None
        else:
            failed.pop(entry["input"], None)
    return list(failed)


def latest_statuses(manifest: str | os.PathLike[str]) -> dict[str, str]:
    """Each input of ``manifest`` with the status of its latest line (blocking)."""
    with open(manifest, encoding="utf-8") as lines:
        return statuses_of(lines)


def statuses_of(lines: Iterable[str]) -> dict[str, str]:
    """Each input of a manifest's ``lines`` with the status of its latest line."""
    return {entry["input"]: entry["status"] for entry in _entries(lines)}


def _entries(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    return (json.loads(line) for line in lines if line.strip())
