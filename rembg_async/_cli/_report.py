"""What the commands tell the user: plain lines (the base install), rich's live bars and tables
(the ``cli`` extra), and the summary at the end of a ``remove`` run: a table in a terminal,
plain lines that ``grep`` finds anywhere else."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import attrs

from .._batch import BatchItem
from .._limits import RateLimitState
from .._progress import ProgressEvent

#: The per-image bar's width, and what its line holds besides the name (indent, arrow, bar,
#: bytes and speed, gaps), so that a line fits the terminal (80 columns: names up to 26).
FILE_BAR_WIDTH = 20
FILE_LINE_OTHER_COLUMNS = 54
#: Where the rate in force comes from, as the summary says it.
_SOURCES = {"learned": "learned", "server": "the API's headers", "fixed": "fixed"}


def has_rich() -> bool:
    """Whether rich (the ``cli`` extra) is installed."""
    return importlib.util.find_spec("rich") is not None


def wants_bars(args: argparse.Namespace) -> bool:
    """Whether ``remove`` draws live bars (a terminal, not ``--quiet``, rich installed); on a
    terminal without rich, say once how to get them (a pipe or a log never gets bars)."""
    if args.quiet or not sys.stdout.isatty():
        return False
    if has_rich():
        return True
    _say("rembg-async: for live progress bars: pip install 'rembg-async[cli]'")
    return False


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class PlainReporter:
    """One line per finished item, for logs and pipes (to stderr when stdout carries results)."""

    def __init__(
        self, stream: TextIO, *, quiet: bool = False, paths: bool = True, counting: bool = False
    ) -> None:
        self._stream = stream
        self._quiet = quiet  # only failures, on stderr
        self._paths = paths  # False with --base64: the result's file is gone by now
        if counting and not quiet:  # the inputs are being counted while the first are sent
            _say("rembg-async remove: counting the inputs… (the first are being sent meanwhile)")

    def counted(self, total: int) -> None:
        """Say how many inputs there are, once they are counted."""
        if not self._quiet:
            _say(f"rembg-async remove: {total} input(s)")

    def item_done(self, item: BatchItem) -> None:
        """A line saying how the item ended."""
        if not item.ok:
            print(_not_made(item), file=sys.stderr if self._quiet else self._stream, flush=True)
            return
        if self._quiet:
            return
        output = item.output_url or item.output_path
        if item.skipped:
            line = f"skipped {item.input} (done: {output})"
        else:
            shown = item.result is not None and self._paths
            line = f"ok      {item.input}" + (f" -> {output}" if shown else "")
            line += " (cached)" if item.cached else ""
        print(line, file=self._stream, flush=True)

    def interrupted(self, in_flight: int) -> None:
        """Say that no new image starts, and what is being finished."""
        _say(
            f"rembg-async remove: interrupted: starting no new image, finishing the {in_flight} "
            "in flight (press Ctrl-C again to cancel them)"
        )


def _not_made(item: BatchItem) -> str:
    """The line of an item that failed, or was cancelled."""
    if item.cancelled:
        return f"cancelled {item.input} (it was being sent)"
    return f"failed  {item.input}: {item.error}"


class RichReporter:
    """Live bars: the whole batch, and each image in flight with its bytes and speed."""

    def __init__(
        self, total: int | None, rate_limit: Callable[[], RateLimitState] | None = None
    ) -> None:
        from rich import progress as bars

        self.progress = bars.Progress(
            bars.TextColumn("{task.description}", style="bold"),
            bars.BarColumn(),
            bars.MofNCompleteColumn(),
            bars.TimeRemainingColumn(),
        )
        # Bytes and speed come from our own events (``transfer_text``): after the upload, the
        # bar pulses and says "processing" until the answer starts, rather than sitting full
        # with the upload's last speed frozen on it.
        self.files = bars.Progress(
            bars.TextColumn("  {task.description}"),
            bars.BarColumn(bar_width=FILE_BAR_WIDTH),
            bars.TextColumn("{task.fields[transfer]}"),
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
        from rich.markup import escape  # a file may be named "[bold].png"

        if index not in self._tasks:
            self._tasks[index] = self.files.add_task("", total=None, transfer="")
        width = self.files.console.width - FILE_LINE_OTHER_COLUMNS
        name = escape(shorten(Path(str(value)).name, max(width, 12)))
        task = self._tasks[index]
        if event.upload and event.total is not None and event.loaded >= event.total:
            self.files.reset(task, total=None, description=f"… {name}", transfer="processing")
            return
        self.files.update(
            task,
            description=f"{'↑' if event.upload else '↓'} {name}",
            transfer=transfer_text(event),
            completed=event.loaded,
            total=event.total,
        )

    def item_done(self, item: BatchItem) -> None:
        """Drop the image's bar and advance the batch's."""
        from rich.markup import escape  # names and the server's words are shown as they are

        task = self._tasks.pop(item.index, None)
        if task is not None:
            self.files.remove_task(task)
        self.progress.advance(self.overall)
        if self._rate_limit is not None and not self._finishing:
            description = f"{self._label} [dim]{describe_rate(self._rate_limit())}[/dim]"
            self.progress.update(self.overall, description=description)
        if not item.ok:
            line = escape(_not_made(item))
            self.progress.console.print(f"[red]{line}[/red]" if item.error else line)

    def interrupted(self, in_flight: int) -> None:
        """The batch bar says it is finishing, and how to cancel."""
        self._finishing = True  # the bar keeps saying so; the rate is in the summary
        self.progress.update(
            self.overall, description=f"finishing {in_flight} (Ctrl-C again cancels)"
        )


def shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters: its middle elided, its extension kept."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[len(name) - (width - 1 - head) :]}"


def transfer_text(event: ProgressEvent) -> str:
    """What moved, of how much, and how fast, each when known: ``1.2/4.0 MB 3.1 MB/s``."""
    from rich.filesize import decimal, pick_unit_and_suffix

    done = decimal(event.loaded)
    if event.total is not None:
        unit, _ = pick_unit_and_suffix(event.total, ["bytes", "kB", "MB", "GB", "TB"], 1000)
        if unit == 1:
            done = f"{event.loaded}/{event.total} bytes"
        else:
            done = f"{event.loaded / unit:.1f}/{decimal(event.total)}"
    return done if event.rate is None else f"{done} {decimal(int(event.rate))}/s"


def describe_rate(state: RateLimitState) -> str:
    """The rate in force and the 429s seen, in a few words: ``8.5/s learned, 3× 429``."""
    rate = "unpaced" if state.rate is None else f"{state.rate:.3g}/s"
    source = "" if state.source == "none" else f" {state.source}"
    return f"{rate}{source}, {state.throttled}× 429"


def describe_pace(state: RateLimitState, *, short: bool = True) -> str:
    """The rate requests were sent at, and why: ``8.5/s (learned)``; ``unpaced: no 429s``
    while the API has refused nothing (requests then go as fast as the concurrency allows)."""
    if state.rate is None:
        why = "no 429s" if state.adaptive else "no --rps"
        if short:
            return f"unpaced: {why}"
        return f"unpaced: {why}, so requests went as fast as --concurrency let them"
    return f"{state.rate:.3g}/s ({_SOURCES.get(state.source, state.source)})"


class Outcomes:
    """How a run's items ended, counted as they come (the items themselves are not kept: a
    million of them would be a gigabyte)."""

    def __init__(self) -> None:
        self.made = self.skipped = self.failed = self.cancelled = 0
        self.credits = 0  # what the server was asked to charge, or may have charged
        self.cached = 0  # made from the result cache (no request, no credit)

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
    """A run's counts and costs; ``cache``: the run had one, so say what it served."""

    counts: Outcomes
    elapsed: float
    outputs: str
    rate_limit: RateLimitState | None
    cache: bool

    @property
    def rate(self) -> float | None:
        """Images made per second (None when none was)."""
        made = self.counts.made
        return made / self.elapsed if made and self.elapsed > 0 else None

    def lines(self) -> list[str]:
        """The summary as plain lines."""
        counts = self.counts
        cached = f", cached {counts.cached}" if self.cache else ""
        rate = "" if self.rate is None else f", {self.rate:.2f} images/s"
        lines = [
            f"made {counts.made}, skipped {counts.skipped}, failed {counts.failed}, "
            f"cancelled {counts.cancelled}{cached}",
            f"time {self.elapsed:.1f} s{rate}, credits {counts.credits}",
        ]
        if self.rate_limit is not None:
            pace = describe_pace(self.rate_limit, short=False)
            lines.append(f"429s {self.rate_limit.throttled}, API rate {pace}")
        if self.outputs and counts.made:
            lines.append(f"outputs in {self.outputs}")
        return lines

    def print_table(self) -> None:
        """The summary as a rich table on stderr."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        counts = self.counts
        columns: dict[str, int | str] = {
            "made": counts.made,
            "skipped": counts.skipped,
            "failed": counts.failed,
        }
        if counts.cancelled:  # only then: the table must fit 80 columns
            columns["cancelled"] = counts.cancelled
        if self.cache:  # only with a cache, for the same reason
            columns["cached"] = counts.cached
        columns["time"] = f"{self.elapsed:.1f} s"
        columns["rate"] = "-" if self.rate is None else f"{self.rate:.2f}/s"
        columns["credits"] = counts.credits
        if self.rate_limit is not None:
            columns["api rate"] = describe_pace(self.rate_limit)
            columns["429s"] = self.rate_limit.throttled
        table = Table(title="rembg-async remove")
        for column in columns:
            table.add_column(column, justify="right")
        table.add_row(*(str(cell) for cell in columns.values()))
        console = Console(stderr=True)
        console.print(table)
        if self.outputs and counts.made:
            console.print(f"outputs in {escape(self.outputs)}", highlight=False)


def print_summary(summary: Summary) -> None:
    """How the batch went, to stderr: a table on a terminal with rich, plain lines otherwise."""
    if sys.stderr.isatty() and sys.stdout.isatty() and has_rich():
        summary.print_table()
    else:
        _say("\n".join(summary.lines()))


#: What the remove command tells the user as the batch goes.
Reporter = PlainReporter | RichReporter
