"""``rembg-async remove``: many files with live progress bars, or plain lines when piped."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import glob
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path, PurePath
from typing import Any, Protocol, TextIO

from ._adapters import rich_progress
from ._batch import BatchRun
from ._batch_items import BatchItem
from ._client import AsyncRembg
from ._contract import ALLOWED_EXTENSIONS
from ._exceptions import RembgError
from ._imageinfo import HEAD_BYTES, sniff_kind
from ._options import RemoveOptions
from ._outputs import OutputClashError, OutputTree, Verdict, identify, options_key
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
        "--manifest", type=Path, help="append one JSON line per outcome to this file"
    )
    parser.add_argument(
        "--max-credits",
        type=int,
        metavar="N",
        help="never start an image that could take this run's spend past N credits",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be sent, what is done, and the credits left; send nothing",
    )


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


def expand_inputs(
    patterns: list[str], *, root: Path | None = None, exclude: Path | None = None
) -> dict[str, PurePath]:
    """Every input, with the path its output takes under ``-o``: files as given (their name,
    or their path under ``root``); folders as every image inside them (recursively), relative
    to the folder; globs expanded, relative to the folder before the first wildcard. Nothing
    under ``exclude`` (the output folder) is taken. Listed up front: clashes are refused, and
    a dry run can count, before anything is sent.
    """
    found: dict[str, PurePath] = {}
    for pattern in patterns:
        for path, base in _expand(pattern):
            if exclude is not None and _is_under(path, exclude):
                continue
            relative = _relative(path, root if root is not None else base)
            found.setdefault(str(path), relative)
    return found


def _expand(pattern: str) -> Iterator[tuple[Path, Path]]:
    """(path, the folder it is relative to) for each input ``pattern`` names."""
    if os.path.isdir(pattern):
        for path in sorted(Path(pattern).rglob("*")):
            if _is_image_file(path):
                yield path, Path(pattern)
    elif glob.has_magic(pattern):
        static = Path(pattern.split("*")[0].split("?")[0].split("[")[0] or ".")
        base = static if pattern.endswith(os.sep) or static.is_dir() else static.parent
        for name in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isfile(name):
                yield Path(name), base
    else:
        yield Path(pattern), Path(pattern).parent


def _relative(path: Path, base: Path) -> PurePath:
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(base))
    except ValueError:
        return PurePath(path.name)


def _is_under(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def _is_image_file(path: Path) -> bool:
    """An image by its extension, or (whatever its name) by its first bytes."""
    if path.name.startswith(".") or not path.is_file():
        return False
    if path.suffix.lower().lstrip(".") in ALLOWED_EXTENSIONS:
        return True
    try:
        with path.open("rb") as file:
            return sniff_kind(file.read(HEAD_BYTES)) is not None
    except OSError:
        return False


class Reporter(Protocol):
    """What the remove command tells the user as the batch goes."""

    def item_progress(self, index: int, value: Any, event: ProgressEvent) -> None: ...
    def item_done(self, item: BatchItem) -> None: ...
    def interrupted(self, in_flight: int) -> None: ...


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
            line = f"skipped {item.input} (done: {item.output_path})"
        else:
            line = f"ok      {item.input}" + (
                "" if item.result is None else f" -> {item.output_path}"
            )
        print(line, file=self._stream, flush=True)

    def interrupted(self, in_flight: int) -> None:
        """Say that no new image starts, and what is being finished."""
        print(INTERRUPTED.format(in_flight=in_flight), file=sys.stderr, flush=True)


INTERRUPTED = (
    "rembg-async remove: interrupted: starting no new image, finishing the {in_flight} in "
    "flight (press Ctrl-C again to cancel them)"
)


class RichReporter:
    """Live bars: the whole batch, and each image in flight with its bytes and speed."""

    def __init__(self, total: int | None) -> None:
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
        if item.error is not None:
            self.progress.console.print(f"[red]failed[/red] {item.input}: {item.error}")

    def interrupted(self, in_flight: int) -> None:
        """The batch bar says it is finishing, and how to cancel."""
        self.progress.update(
            self.overall, description=f"finishing {in_flight} (Ctrl-C again cancels)"
        )


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
    plain = PlainReporter(sys.stderr if args.base64 else sys.stdout)
    reporter: Any = RichReporter(len(inputs)) if sys.stdout.isatty() else plain
    live = reporter.live() if isinstance(reporter, RichReporter) else contextlib.nullcontext()
    with live:
        async for item in _batch(client, inputs, args, options, reporter, interrupts):
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
        on_item_progress=reporter.item_progress,
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
    else:
        why, then = f"stopped, {_reason(run.stopped)}", "once that is fixed, run it again"
    print(
        f"rembg-async remove: {why} ({left} input(s) not started; {then}: "
        "what is done is not redone)",
        file=sys.stderr,
    )


def _reason(error: BaseException) -> str:
    return str(getattr(error, "message", None) or error)


async def dry_run(
    client: AsyncRembg, args: argparse.Namespace, options: RemoveOptions, inputs: dict[str, Any]
) -> int:
    """``--dry-run``: what would be sent, what is done, what is refused; the credits left."""
    counts = await asyncio.to_thread(_plan_counts, args, options, inputs)
    print(f"inputs: {len(inputs)}")
    print(f"would send: {counts['send']} image(s), costing at most {counts['send']} credit(s)")
    print(f"already done: {counts['done']}")
    if counts["refused"]:
        print(f"refused: {counts['refused']} ({counts['why']})")
    print(f"credits left: {await _credits_left(client)}")
    if args.max_credits is not None and counts["send"] > args.max_credits:
        print(f"--max-credits {args.max_credits}: the run would stop after {args.max_credits}")
    return 0


def _plan_counts(
    args: argparse.Namespace, options: RemoveOptions, inputs: dict[str, Any]
) -> dict[str, Any]:
    counts: dict[str, Any] = {"send": 0, "done": 0, "refused": 0, "why": ""}
    if args.base64:
        counts["send"] = len(inputs)
        return counts
    extension = "jpg" if options.output_format == "jpeg" else options.output_format
    tree = OutputTree(args.output_dir, batch_arguments(args, inputs)["root"], extension,
                      overwrite=args.overwrite)  # fmt: skip
    key = options_key(options.form_fields())
    for index, value in enumerate(inputs):
        target = tree.target(value, index)
        try:
            if not tree.claim(target, value):
                continue
        except OutputClashError as error:
            counts["refused"] += 1
            counts["why"] = str(error)
            continue
        verdict = tree.verdict(target, identify(value, key))
        if verdict is Verdict.FOREIGN:
            counts["refused"] += 1
            counts["why"] = str(tree.foreign(target))
        elif verdict is Verdict.DONE and not args.redo:
            counts["done"] += 1
        else:
            counts["send"] += 1
    return counts


async def _credits_left(client: AsyncRembg) -> str:
    try:
        usage = await client.membership_usage(billing_cycle=True)
    except RembgError as error:
        return f"unknown ({error})"
    cycle = usage.billing_cycle
    included = (
        cycle.remaining_included_credits
        if cycle is not None
        else max(0, usage.credits - usage.api_usage - usage.app_usage)
    )
    return (
        f"{included + usage.prepaid_credits} ({included} included in this cycle, "
        f"{usage.prepaid_credits} prepaid; plan {usage.membership})"
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


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
    """The retry policy the arguments ask for."""
    return RetryPolicy(max_retries=args.retries)
