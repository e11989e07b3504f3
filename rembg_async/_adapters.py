"""Progress adapters: our events driving a rich progress bar or a tqdm bar.

Both are duck-typed (no import of rich or tqdm here): they call the few methods those bars have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._progress import ProgressEvent


def rich_progress(progress: Any, task_id: Any) -> Callable[[ProgressEvent], None]:
    """A callback that drives task ``task_id`` of a :class:`rich.progress.Progress`."""

    def update(event: ProgressEvent) -> None:
        progress.update(task_id, completed=event.loaded, total=event.total)

    return update


def tqdm_progress(bar: Any) -> Callable[[ProgressEvent], None]:
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
