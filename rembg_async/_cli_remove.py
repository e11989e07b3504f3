"""``rembg-async remove``: many files with live progress bars, or plain lines when piped."""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO

from ._adapters import rich_progress
from ._batch import BatchItem
from ._client import AsyncRembg
from ._contract import ALLOWED_EXTENSIONS
from ._limits import RateLimitState
from ._options import RemoveOptions
from ._progress import ProgressEvent
from ._results import ImageFile
from ._retry import RetryPolicy
from ._threads import run_to_completion


def add_remove_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``remove``."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("rembg-output"),
        help="where results go (default: %(default)s)",
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
        "--concurrency", type=int, default=8, help="images at once (default: %(default)s)"
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="retries per image (default: %(default)s)"
    )
    parser.add_argument(
        "--rps",
        type=_positive,
        help="requests per second, fixed (default: learn the API's rate limit as it goes)",
    )
    parser.add_argument(
        "--base64", action="store_true", help="print data URLs instead of writing files"
    )
    parser.add_argument(
        "--skip-existing", action="store_true", help="skip inputs whose output exists"
    )
    parser.add_argument(
        "--manifest", type=Path, help="append one JSON line per outcome to this file"
    )


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


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


def expand_inputs(patterns: list[str]) -> Iterator[str]:
    """Files as given; folders as every image inside them (recursively); globs expanded.

    Lazy, so a folder of a million images is walked as the batch goes.
    """
    for pattern in patterns:
        if os.path.isdir(pattern):
            yield from (
                str(path) for path in sorted(Path(pattern).rglob("*")) if _is_image_name(path)
            )
        elif glob.has_magic(pattern):
            yield from sorted(glob.glob(pattern, recursive=True))
        else:
            yield pattern


def _is_image_name(path: Path) -> bool:
    return path.is_file() and path.suffix.lower().lstrip(".") in ALLOWED_EXTENSIONS


class Reporter(Protocol):
    """What the remove command tells the user as the batch goes."""

    def item_progress(self, index: int, value: Any, event: ProgressEvent) -> None: ...
    def item_done(self, item: BatchItem) -> None: ...


class PlainReporter:
    """One line per finished item, for logs and pipes (to stderr when stdout carries results)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def item_progress(self, index: int, value: Any, event: ProgressEvent) -> None:
        """Plain output shows no transfer progress."""

    def item_done(self, item: BatchItem) -> None:
        """A line saying how the item ended."""
        if item.error is not None:
            line = f"failed  {item.input}: {item.error}"
        elif item.skipped:
            line = f"skipped {item.input} (exists: {item.output_path})"
        else:
            line = f"ok      {item.input}" + (
                "" if item.result is None else f" -> {item.output_path}"
            )
        print(line, file=self._stream, flush=True)


class RichReporter:
    """Live bars: the whole batch, and each image in flight with its bytes and speed."""

    def __init__(
        self, total: int | None, rate_limit: Callable[[], RateLimitState] | None = None
    ) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        self.files = Progress(
            TextColumn("  {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()
        )
        self.overall = self.progress.add_task("images", total=total)
        self._tasks: dict[int, Any] = {}
        self._rate_limit = rate_limit

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        """Show both groups of bars while the batch runs."""
        from rich.console import Group
        from rich.live import Live

        with Live(Group(self.progress, self.files), refresh_per_second=10):
            yield

    def item_progress(self, index: int, value: Any, event: ProgressEvent) -> None:
        """Move the image's bar (uploads, then downloads, each to its own total)."""
        if index not in self._tasks:
            self._tasks[index] = self.files.add_task(Path(str(value)).name, total=None)
        arrow = "↑" if event.upload else "↓"
        self.files.update(self._tasks[index], description=f"{arrow} {Path(str(value)).name}")
        rich_progress(self.files, self._tasks[index])(event)

    def item_done(self, item: BatchItem) -> None:
        """Drop the image's bar and advance the batch's."""
        task = self._tasks.pop(item.index, None)
        if task is not None:
            self.files.remove_task(task)
        self.progress.advance(self.overall)
        if self._rate_limit is not None:
            description = f"images [dim]{describe_rate(self._rate_limit())}[/dim]"
            self.progress.update(self.overall, description=description)
        if item.error is not None:
            self.progress.console.print(f"[red]failed[/red] {item.input}: {item.error}")


async def run_remove(
    client: AsyncRembg, args: argparse.Namespace, options: RemoveOptions
) -> list[BatchItem]:
    """Run the batch; returns every item (base64 results are printed as they come)."""
    # With bars the total is worth listing the inputs first; piped, they stay lazy.
    inputs = list(expand_inputs(args.inputs)) if sys.stdout.isatty() else expand_inputs(args.inputs)
    total = len(inputs) if isinstance(inputs, list) else None
    plain = PlainReporter(sys.stderr if args.base64 else sys.stdout)
    rate_limit = lambda: client.rate_limit  # noqa: E731
    reporter: Any = RichReporter(total, rate_limit) if sys.stdout.isatty() else plain
    live = reporter.live() if isinstance(reporter, RichReporter) else contextlib.nullcontext()
    items: list[BatchItem] = []
    with live:
        async for item in _batch(client, inputs, args, options, reporter):
            reporter.item_done(item)
            items.append(item)
    return items


async def _batch(
    client: AsyncRembg,
    inputs: Any,
    args: argparse.Namespace,
    options: RemoveOptions,
    reporter: Reporter,
) -> AsyncIterator[BatchItem]:
    """The batch; with ``--base64`` each result is printed as ``INPUT<TAB>data:…`` instead of
    being kept (its temporary file is removed)."""
    to_files = {} if args.base64 else {
        "output_dir": args.output_dir,
        "skip_existing": args.skip_existing,
        "manifest": args.manifest,
    }  # fmt: skip
    async with client.remove_many(
        inputs,
        options,
        concurrency=args.concurrency,
        on_item_progress=reporter.item_progress,
        **to_files,
    ) as run:
        async for item in run:
            if args.base64 and item.result is not None:
                print(f"{item.input}\t{await _as_data_url(item)}", flush=True)
            yield item
        if run.stopped is not None:
            left = sum([1 async for _ in run.remaining])
            print(
                f"rembg-async remove: stopped, {run.stopped.message} "
                f"({left} input(s) not started; re-run with --skip-existing to go on)",
                file=sys.stderr,
            )


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
