"""``rembg-async remove``: many files with live progress bars, or plain lines when piped."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path, PurePath
from typing import Any, Protocol, TextIO

from ._adapters import rich_progress
from ._batch import BatchRun
from ._batch_items import BatchItem
from ._budget import BudgetExhaustedError
from ._cli_args import positive, whole
from ._cli_plain import wants_bars
from ._client import AsyncRembg
from ._limits import RateLimitState
from ._options import RemoveOptions
from ._progress import ProgressEvent
from ._results import ImageFile
from ._retry import RetryPolicy
from ._storage._stores import is_remote
from ._threads import run_to_completion


def add_remove_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``remove``."""
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument(
        "--retry-failed",
        type=place,
        metavar="MANIFEST",
        help="run again only the inputs whose latest line in this manifest failed (placed "
        "as the INPUTs given place them; outcomes are appended to it)",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=place,
        default=Path("rembg-output"),
        help="where results go: a folder, or a URL such as s3://bucket/out/ (default: %(default)s)",
    )
    parser.add_argument("--format", default="webp", help="png, jpeg, webp or bmp (default: webp)")
    parser.add_argument("--w", type=int, help="target width in px (keeps the aspect ratio)")
    parser.add_argument("--h", type=int, help="target height in px (keeps the aspect ratio)")
    parser.add_argument("--exact-resize", action="store_true", help="force exactly w × h")
    parser.add_argument("--mask", action="store_true", help="return only the alpha mask")
    parser.add_argument("--bg-color", help="solid background: #RGB, #RRGGBB(AA) or a CSS name")
    parser.add_argument("--angle", type=float, default=0.0, help="rotate by this many degrees")
    parser.add_argument(
        "--no-expand", action="store_true", help="do not grow the canvas when rotating"
    )
    parser.add_argument(
        "--concurrency", type=whole(1), default=8, help="images at once (default: %(default)s)"
    )
    parser.add_argument(
        "--retries", type=whole(0), default=2, help="retries per image (default: %(default)s)"
    )
    parser.add_argument(
        "--rps",
        type=positive("number of requests per second"),
        help="requests per second, fixed (default: learn the API's rate limit as it goes)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share the rate limit, hold-offs and stops with every process using this Redis "
        "(redis://host:6379/0; default: $REMBG_REDIS_URL; needs the 'redis' extra)",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on a Dask cluster: its scheduler (tcp://host:8786), or local:N for N local "
        "worker processes (needs the 'dask' extra)",
    )
    parser.add_argument(
        "--base64", action="store_true", help="print data URLs instead of writing files"
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose output this tool made from them (the default; kept for scripts)",
    )
    parser.add_argument(
        "--redo", action="store_true", help="make again outputs already made from their inputs"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that were not made from their input by rembg-async",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="mirror inputs relative to this folder (default: each folder or glob given; "
        "a plain file goes straight into -o)",
    )
    parser.add_argument(
        "--manifest",
        type=place,
        help="append one JSON line per outcome to this file (or URL: put whole at the end)",
    )
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="storage_option",
        help="an fsspec option for s3:// (or other) URLs, repeatable: key=…, secret=…, "
        "client_kwargs.endpoint_url=http://… (needs the 'fsspec' extra and the store's "
        "package, s3fs for s3://; AWS_ENDPOINT_URL and FSSPEC_S3_* are honoured too)",
    )
    parser.add_argument(
        "--max-credits",
        type=whole(0),
        metavar="N",
        help="never start an image that could take this run's spend past N credits",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only failures and the data URLs"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be sent, what is done, and the credits left; send nothing",
    )


def place(text: str) -> Path | str:
    """An argparse type: a local path, or a remote URL kept as it is."""
    return text if is_remote(text) else Path(text)


def options_from(args: argparse.Namespace) -> RemoveOptions:
    """The RemoveOptions the arguments ask for (InvalidInputError if they are bad)."""
    return RemoveOptions(
        format=args.format,
        w=args.w,
        h=args.h,
        exact_resize=args.exact_resize,
        mask=args.mask,
        bg_color=args.bg_color,
        angle=args.angle,
        expand=not args.no_expand,
    )


class Reporter(Protocol):
    """What the remove command tells the user as the batch goes."""

    #: Whether `item_progress` shows anything: if not, the batch is given no callback (a
    #: coroutine per transfer event fewer).
    shows_progress: bool

    def item_progress(self, index: int, value: Any, event: ProgressEvent) -> None: ...
    def item_done(self, item: BatchItem) -> None: ...
    def interrupted(self, in_flight: int) -> None: ...


class PlainReporter:
    """One line per finished item, for logs and pipes (to stderr when stdout carries results)."""

    shows_progress = False

    def __init__(self, stream: TextIO, *, quiet: bool = False, paths: bool = True) -> None:
        self._stream = stream
        self._quiet = quiet  # only failures, on stderr
        self._paths = paths  # False with --base64: the result's file is gone by now

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
        print(line, file=self._stream, flush=True)

    def interrupted(self, in_flight: int) -> None:
        """Say that no new image starts, and what is being finished."""
        print(INTERRUPTED.format(in_flight=in_flight), file=sys.stderr, flush=True)


def _not_made(item: BatchItem) -> str:
    """The line of an item that failed, or was cancelled."""
    if item.cancelled:
        return f"cancelled {item.input} (it was being sent)"
    return f"failed  {item.input}: {item.error}"


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
        self.overall = self.progress.add_task("images", total=total)
        self._tasks: dict[int, Any] = {}
        self._rate_limit = rate_limit
        self._finishing = False

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
            description = f"images [dim]{describe_rate(self._rate_limit())}[/dim]"
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


class Interrupts:
    """Ctrl-C and SIGTERM, as GNU parallel takes them: the first stops new images from
    starting and lets those in flight finish; the second cancels the command's task."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self.signal: int | None = None
        self.run: BatchRun | None = None
        self.reporter: Reporter | None = None

    def on_signal(self, number: int) -> None:
        """Handle one signal."""
        if self.signal is not None:
            self._task.cancel()
            return
        self.signal = number
        self._stop()

    def attach(self, run: BatchRun, reporter: Reporter) -> None:
        """The batch to stop (at once, if a signal came before it started)."""
        self.run, self.reporter = run, reporter
        if self.signal is not None:
            self._stop()

    def _stop(self) -> None:
        if self.run is not None and not self.run.interrupted:
            self.run.stop()
            if self.reporter is not None:
                self.reporter.interrupted(self.run.progress().in_flight)

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal's number, as shells report it; None without a signal."""
        return None if self.signal is None else 128 + self.signal


async def run_remove(
    client: AsyncRembg,
    args: argparse.Namespace,
    options: RemoveOptions,
    inputs: dict[str, PurePath],
    items: list[BatchItem],
    interrupts: Interrupts,
) -> None:
    """Run the batch, appending each item to ``items`` (base64 results are printed)."""
    stream = sys.stderr if args.base64 else sys.stdout
    plain = PlainReporter(stream, quiet=args.quiet, paths=not args.base64)
    bars = wants_bars(args)
    reporter: Any = RichReporter(len(inputs), lambda: client.rate_limit) if bars else plain
    live = reporter.live() if isinstance(reporter, RichReporter) else contextlib.nullcontext()
    try:
        with live:
            async for item in _batch(client, inputs, args, options, reporter, interrupts):
                reporter.item_done(item)
                items.append(item)
    finally:  # cancelled (a second Ctrl-C): those ended unseen or cancelled on the wire are
        # said and counted
        run = interrupts.run
        for item in [*run.leftovers, *run.cancelled] if run is not None else ():
            reporter.item_done(item)
            items.append(item)


def batch_arguments(args: argparse.Namespace, inputs: dict[str, PurePath]) -> dict[str, Any]:
    """remove_many's arguments for files (none with ``--base64``: results are printed)."""
    if args.base64:
        return {}
    return {
        "output_dir": args.output_dir,
        "root": lambda value: inputs.get(str(value), PurePath(Path(str(value)).name)),
        "skip_existing": not args.redo,
        "overwrite": args.overwrite,
        "manifest": args.manifest,
        "storage_options": args.storage_options or None,
    }


async def _batch(
    client: AsyncRembg,
    inputs: dict[str, PurePath],
    args: argparse.Namespace,
    options: RemoveOptions,
    reporter: Reporter,
    interrupts: Interrupts,
) -> AsyncIterator[BatchItem]:
    """The batch; with ``--base64`` each result is printed as ``INPUT<TAB>data:…`` instead of
    being kept (its temporary file is removed)."""
    async with client.remove_many(
        list(inputs),
        options,
        concurrency=args.concurrency,
        on_item_progress=reporter.item_progress if reporter.shows_progress else None,
        max_credits=args.max_credits,
        **batch_arguments(args, inputs),
    ) as run:
        interrupts.attach(run, reporter)
        async for item in run:
            if args.base64 and item.result is not None:
                print(f"{item.input}\t{await _as_data_url(item)}", flush=True)
            yield item
        await _say_why_stopped(run)


async def _say_why_stopped(run: BatchRun) -> None:
    if run.stopped is None and not run.interrupted:
        return
    left = sum([1 async for _ in run.remaining])
    if run.stopped is None:
        why, then = "interrupted", "run the same command again to go on"
    elif isinstance(run.stopped, BudgetExhaustedError):
        why = f"stopped, {_reason(run.stopped)}"
        then = "to go on, raise --max-credits or run the same command again"
    else:
        why, then = f"stopped, {_reason(run.stopped)}", "once that is fixed, run it again"
    print(
        f"rembg-async remove: {why} ({left} input(s) not started; {then}: "
        "what is done is not redone)",
        file=sys.stderr,
    )


def _reason(error: BaseException) -> str:
    return str(getattr(error, "message", None) or error)


async def _as_data_url(item: BatchItem) -> str:
    result = item.result
    assert isinstance(result, ImageFile)
    try:
        data = await run_to_completion(result.output_image_path.read_bytes)
        encoded = base64.b64encode(data).decode("ascii")
    finally:
        await result.cleanup()
    return f"data:{result.content_type};base64,{encoded}"


def describe_rate(state: RateLimitState) -> str:
    """The rate in force and the 429s seen, in a few words: ``8.5/s learned, 3× 429``."""
    rate = "unpaced" if state.rate is None else f"{state.rate:.3g}/s"
    source = "" if state.source == "none" else f" {state.source}"
    return f"{rate}{source}, {state.throttled}× 429"


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
    """The retry policy the arguments ask for."""
    return RetryPolicy(max_retries=args.retries)
