"""Progress adapters driving a rich or tqdm bar, duck-typed (neither is imported here): the
protocols below spell out the few methods they call, so type checkers still check the bar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from ._progress import ProgressEvent

_TaskID = TypeVar("_TaskID")
_TaskID_contra = TypeVar("_TaskID_contra", contravariant=True)


class RichProgressLike(Protocol[_TaskID_contra]):
    """What ``rich_progress`` needs of a ``rich.progress.Progress``."""

    def update(
        self,
        task_id: _TaskID_contra,
        /,
        *,
        total: float | None = ...,
        completed: float | None = ...,
    ) -> None: ...


class TqdmLike(Protocol):
    """What ``tqdm_progress`` needs of a ``tqdm`` bar."""

    total: float | None

    def update(self, n: float | None = ..., /) -> object: ...

    def reset(self, total: float | None = ...) -> object: ...


def rich_progress(
    progress: RichProgressLike[_TaskID], task_id: _TaskID
) -> Callable[[ProgressEvent], None]:
    """A callback that drives task ``task_id`` of a ``rich.progress.Progress``."""

    def update(event: ProgressEvent) -> None:
        progress.update(task_id, completed=event.loaded, total=event.total)

    return update


def tqdm_progress(bar: TqdmLike) -> Callable[[ProgressEvent], None]:
    """A callback that drives a ``tqdm`` bar (its total is set from the first event).

    A retry restarts the transfer: the bar restarts with it.
    """
    attempt = 1

    def update(event: ProgressEvent) -> None:
        nonlocal attempt
        if event.attempt != attempt:
            attempt = event.attempt
            bar.reset(total=event.total)
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
        bar.update(event.bytes)

    return update
