"""The progress adapters drive real tqdm and rich bars to the end, through a retry."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress
from tqdm import tqdm

from rembg_async import ProgressEvent, rich_progress, tqdm_progress


def events(total: int, chunks: int, attempt: int = 1) -> list[ProgressEvent]:
    """An upload of ``total`` bytes in ``chunks`` equal events."""
    step = total // chunks
    return [
        ProgressEvent(
            loaded=step * n, total=total, progress=step * n / total, bytes=step,
            rate=None, estimated=None, upload=True, attempt=attempt,
        )
        for n in range(1, chunks + 1)
    ]  # fmt: skip


def test_tqdm_reaches_the_total_and_restarts_on_retry() -> None:
    """The bar counts bytes to the total; a new attempt starts it again from zero."""
    with tqdm(file=io.StringIO(), unit="B") as bar:
        update = tqdm_progress(bar)
        for event in events(1000, 4)[:2]:  # the first attempt dies half-way
            update(event)
        assert bar.n == 500
        for event in events(1000, 4, attempt=2):
            update(event)
        assert (bar.n, bar.total) == (1000, 1000)


def test_rich_reaches_the_total() -> None:
    """The task is completed to the event's total."""
    progress = Progress(console=Console(file=io.StringIO()))
    task = progress.add_task("x", total=None)
    update = rich_progress(progress, task)
    for event in events(1000, 5):
        update(event)
    state = progress.tasks[0]
    assert (state.completed, state.total, state.finished) == (1000, 1000, True)
