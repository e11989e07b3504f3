"""What the commands tell the user: the base install's plain lines, rich's live bars and
tables (the ``cli`` extra), and the summary at the end of a ``remove`` run.

Without rich every command still works and says the same things in plain lines; on a
terminal, ``remove`` says once how to get the bars. The summary is a table in a terminal and
plain lines anywhere else (a pipe, a log file), one fact each, that ``grep`` finds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import attrs

from .._adapters import rich_progress
from .._batch import BatchItem
from .._limits import RateLimitState
from .._progress import ProgressEvent

#: Printed once per run, on a terminal only (a pipe or a log never gets bars anyway).
BARS_HINT = "rembg-async: for live progress bars: pip install 'rembg-async[cli]'"


def has_rich() -> bool:
    """Whether rich (the ``cli`` extra) is installed."""
    return importlib.util.find_spec("rich") is not None


def wants_bars(args: argparse.Namespace) -> bool:
    """Whether ``remove`` draws live bars: on a terminal, not ``--quiet``, with rich installed;
    on a terminal without rich, say once how to get them."""
    if args.quiet or not sys.stdout.isatty():
        return False
    if has_rich():
        return True
    print(BARS_HINT, file=sys.stderr, flush=True)
    return False


class Reporter(Protocol):
    """What the remove command tells the user as the batch goes."""

    #: Whether `item_progress` shows anything: if not, the batch is given no callback (a
    #: coroutine per transfer event fewer).
    shows_progress: bool

    def item_progress(self, index: int, value: Any, event: ProgressEvent) -> None: ...
    def item_done(self, item: BatchItem) -> None: ...
    def interrupted(self, in_flight: int) -> None: ...
    def counted(self, total: int) -> None: ...


class PlainReporter:
    """One line per finished item, for logs and pipes (to stderr when stdout carries results)."""

    shows_progress = False

    def __init__(
        self, stream: TextIO, *, quiet: bool = False, paths: bool = True, counting: bool = False
    ) -> None:
        self._stream = stream
        self._quiet = quiet  # only failures, on stderr
        self._paths = paths  # False with --base64: the result's file is gone by now
        if counting and not quiet:  # the inputs are being counted while the first are sent
            print(COUNTING, file=sys.stderr, flush=True)

    def counted(self, total: int) -> None:
        """Say how many inputs there are, once they are counted."""
        if not self._quiet:
            print(COUNTED.format(total=total), file=sys.stderr, flush=True)

    def item_progress(self, index: int, value: Any, event: ProgressEvent) -> None:
        """Plain output shows no transfer progress."""

    def item_done(self, item: BatchItem) -> None:
        """A line saying how the item ended."""
        if self._quiet:
            if not item.ok:
                print(_not_made(item), file=sys.stderr, flush=True)
            return
        if not item.ok:
            line = _not_made(item)
        elif item.skipped:
            line = f"skipped {item.input} (done: {item.output_url or item.output_path})"
        else:
            line = f"ok      {item.input}" + (
                ""
                if item.result is None or not self._paths
                else f" -> {item.output_url or item.output_path}"
            )
            if item.cached:
                line += " (cached)"
        print(line, file=self._stream, flush=True)

    def interrupted(self, in_flight: int) -> None:
        """Say that no new image starts, and what is being finished."""
        print(INTERRUPTED.format(in_flight=in_flight), file=sys.stderr, flush=True)


def _not_made(item: BatchItem) -> str:
    """The line of an item that failed, or was cancelled."""
    if item.cancelled:
        return f"cancelled {item.input} (it was being sent)"
    return f"failed  {item.input}: {item.error}"


#: The plain report's lines while the inputs are counted (sending has begun), and after.
COUNTING = "rembg-async remove: counting the inputs… (the first are being sent meanwhile)"
COUNTED = "rembg-async remove: {total} input(s)"

INTERRUPTED = (
    "rembg-async remove: interrupted: starting no new image, finishing the {in_flight} in "
    "flight (press Ctrl-C again to cancel them)"
)


class RichReporter:
    """Live bars: the whole batch, and each image in flight with its bytes and speed."""

    shows_progress = True

    def __init__(
        self, total: int | None, rate_limit: Callable[[], RateLimitState] | None = None
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        # Bytes and speed come from our own events (``transfer_text``): after the upload, the
        # bar pulses and says "processing" until the answer starts, rather than sitting full
        # with the upload's last speed frozen on it.
        self.files = Progress(
            TextColumn("  {task.description}"),
            BarColumn(bar_width=FILE_BAR_WIDTH),
            TextColumn("{task.fields[transfer]}"),
        )
        # Until the inputs are counted, the bar has no total and says so.
        self._label = "images" if total is not None else "images (counting…)"
        self.overall = self.progress.add_task(self._label, total=total)
        self._tasks: dict[int, Any] = {}
        self._rate_limit = rate_limit
        self._finishing = False

    def counted(self, total: int) -> None:
        """The inputs are counted: the bar gets its total."""
        self._label = "images"
        self.progress.update(self.overall, total=total)
        if not self._finishing:
            self.progress.update(self.overall, description=self._label)

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        """Show both groups of bars while the batch runs."""
        from rich.console import Group
        from rich.live import Live

        with Live(Group(self.progress, self.files), refresh_per_second=10):
            yield

    def item_progress(self, index: int, value: Any, event: ProgressEvent) -> None:
        """Move the image's bar: the upload, "processing" until the answer starts, then the
        download, each to its own total; the name shortened so that the line fits."""
        if index not in self._tasks:
            self._tasks[index] = self.files.add_task("", total=None, transfer="")
        from rich.markup import escape  # a file may be named "[bold].png"

        width = self.files.console.width - FILE_LINE_OTHER_COLUMNS
        name = escape(shorten(Path(str(value)).name, max(width, 12)))
        task = self._tasks[index]
        if event.upload and event.total is not None and event.loaded >= event.total:
            self.files.reset(task, total=None, description=f"… {name}", transfer="processing")
            return
        arrow = "↑" if event.upload else "↓"
        self.files.update(task, description=f"{arrow} {name}", transfer=transfer_text(event))
        rich_progress(self.files, task)(event)

    def item_done(self, item: BatchItem) -> None:
        """Drop the image's bar and advance the batch's."""
        task = self._tasks.pop(item.index, None)
        if task is not None:
            self.files.remove_task(task)
        self.progress.advance(self.overall)
        if self._rate_limit is not None and not self._finishing:
            description = f"{self._label} [dim]{describe_rate(self._rate_limit())}[/dim]"
            self.progress.update(self.overall, description=description)
        if not item.ok:
            from rich.markup import escape  # names and the server's words are shown as they are

            line = escape(_not_made(item))
            self.progress.console.print(f"[red]{line}[/red]" if item.error else line)

    def interrupted(self, in_flight: int) -> None:
        """The batch bar says it is finishing, and how to cancel."""
        self._finishing = True  # the bar keeps saying so; the rate is in the summary
        self.progress.update(
            self.overall, description=f"finishing {in_flight} (Ctrl-C again cancels)"
        )


#: The per-image bar's width, and what its line holds besides the name (indent, arrow, bar,
#: bytes and speed, gaps), so that a line fits the terminal (80 columns: names up to 26).
FILE_BAR_WIDTH = 20
FILE_LINE_OTHER_COLUMNS = 54


def shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters: its middle elided, its extension kept."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[len(name) - (width - 1 - head) :]}"


def transfer_text(event: ProgressEvent) -> str:
    """What moved, of how much, and how fast, each when known: ``1.2/4.0 MB 3.1 MB/s``."""
    from rich.filesize import decimal

    done = decimal(event.loaded) if event.total is None else _of(event.loaded, event.total)
    return done if event.rate is None else f"{done} {decimal(int(event.rate))}/s"


def _of(loaded: int, total: int) -> str:
    from rich.filesize import decimal, pick_unit_and_suffix

    unit, _ = pick_unit_and_suffix(total, ["bytes", "kB", "MB", "GB", "TB"], 1000)
    if unit == 1:
        return f"{loaded}/{total} bytes"
    return f"{loaded / unit:.1f}/{decimal(total)}"


def describe_rate(state: RateLimitState) -> str:
    """The rate in force and the 429s seen, in a few words: ``8.5/s learned, 3× 429``."""
    rate = "unpaced" if state.rate is None else f"{state.rate:.3g}/s"
    source = "" if state.source == "none" else f" {state.source}"
    return f"{rate}{source}, {state.throttled}× 429"


#: Where the rate in force comes from, as the summary says it.
_SOURCES = {"learned": "learned", "server": "the API's headers", "fixed": "fixed"}


class Outcomes:
    """How a run's items ended, counted as they come (the items themselves are not kept: a
    million of them would be a gigabyte)."""

    def __init__(self) -> None:
        self.made = self.skipped = self.failed = self.cancelled = self.credits = 0
        self.cached = 0  # made from the result cache

    def add(self, item: BatchItem) -> None:
        """Count one item."""
        self.made += item.ok and not item.skipped
        self.skipped += item.skipped
        self.failed += item.error is not None
        self.cancelled += item.cancelled
        self.credits += item.credits
        self.cached += item.cached

    @property
    def all_ok(self) -> bool:
        """Whether every item was made or skipped."""
        return self.failed == 0 and self.cancelled == 0


@attrs.frozen(kw_only=True)
class Summary:
    """A run's counts and costs."""

    made: int
    skipped: int
    failed: int
    cancelled: int
    elapsed: float
    credits: int  # what the server was asked to charge, or may have charged
    rate_limit: RateLimitState | None
    outputs: str
    #: Made from the result cache (no request, no credit); None: the run had no cache.
    cached: int | None = None

    @classmethod
    def of(
        cls,
        items: Sequence[BatchItem] | Outcomes,
        *,
        elapsed: float,
        outputs: str,
        rate_limit: RateLimitState | None,
        cache: bool = False,
    ) -> Summary:
        """The summary of ``items`` or of their counts (``cache``: the run had one, so say
        what it served)."""
        counts = items if isinstance(items, Outcomes) else _counted(items)
        return cls(
            made=counts.made,
            skipped=counts.skipped,
            failed=counts.failed,
            cancelled=counts.cancelled,
            elapsed=elapsed,
            credits=counts.credits,
            rate_limit=rate_limit,
            outputs=outputs,
            cached=counts.cached if cache else None,
        )

    @property
    def rate(self) -> float | None:
        """Images made per second (None when none was)."""
        return self.made / self.elapsed if self.made and self.elapsed > 0 else None

    def lines(self) -> list[str]:
        """The summary as plain lines."""
        counts = f"made {self.made}, skipped {self.skipped}, failed {self.failed}"
        cached = "" if self.cached is None else f", cached {self.cached}"
        lines = [f"{counts}, cancelled {self.cancelled}{cached}"]
        rate = "" if self.rate is None else f", {self.rate:.2f} images/s"
        lines.append(f"time {self.elapsed:.1f} s{rate}, credits {self.credits}")
        if self.rate_limit is not None:
            pace = describe_pace(self.rate_limit, short=False)
            lines.append(f"429s {self.rate_limit.throttled}, API rate {pace}")
        if self.outputs and self.made:
            lines.append(f"outputs in {self.outputs}")
        return lines


def _counted(items: Sequence[BatchItem]) -> Outcomes:
    counts = Outcomes()
    for item in items:
        counts.add(item)
    return counts


def describe_pace(state: RateLimitState, *, short: bool = True) -> str:
    """The rate requests were sent at, and why: ``8.5/s (learned)``; ``unpaced: no 429s``
    while the API has refused nothing (requests then go as fast as the concurrency allows)."""
    if state.rate is None:
        why = "no 429s" if state.adaptive else "no --rps"
        if short:
            return f"unpaced: {why}"
        return f"unpaced: {why}, so requests went as fast as --concurrency let them"
    return f"{state.rate:.3g}/s ({_SOURCES.get(state.source, state.source)})"


def print_summary(
    items: Sequence[BatchItem] | Outcomes,
    *,
    elapsed: float,
    outputs: str,
    rate_limit: RateLimitState | None,
    cache: bool = False,
) -> None:
    """How the batch went, to stderr (stdout stays for results): a table when both streams
    are a terminal and rich (the ``cli`` extra) is installed, plain lines otherwise;
    ``cache``: the run had a result cache (the summary says how many it served)."""
    summary = Summary.of(
        items, elapsed=elapsed, outputs=outputs, rate_limit=rate_limit, cache=cache
    )
    if sys.stderr.isatty() and sys.stdout.isatty() and has_rich():
        _print_table(summary)
    else:
        print("\n".join(summary.lines()), file=sys.stderr, flush=True)


def _print_table(summary: Summary) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="rembg-async remove")
    row = [str(summary.made), str(summary.skipped), str(summary.failed)]
    columns = ["made", "skipped", "failed"]
    if summary.cancelled:
        columns.append("cancelled")  # only then: the table must fit 80 columns
        row.append(str(summary.cancelled))
    if summary.cached is not None:
        columns.append("cached")  # only with a cache, for the same reason
        row.append(str(summary.cached))
    columns += ["time", "rate", "credits"]
    rate = "-" if summary.rate is None else f"{summary.rate:.2f}/s"
    row += [f"{summary.elapsed:.1f} s", rate, str(summary.credits)]
    if summary.rate_limit is not None:
        columns += ["api rate", "429s"]
        row += [describe_pace(summary.rate_limit), str(summary.rate_limit.throttled)]
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*row)
    console = Console(stderr=True)
    console.print(table)
    if summary.outputs and summary.made:
        console.print(f"outputs in {escape(summary.outputs)}", highlight=False)
