"""``rembg-async remove``: many files with live progress bars, or plain lines when piped."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from .._batch import BatchItem, BatchRun
from .._budget import BudgetExhaustedError
from .._client import AsyncRembg
from .._exceptions import InvalidInputError
from .._files import run_to_completion
from .._limits import RateLimitState
from .._loops import run as run_loop
from .._loops import signals_handled
from .._options import RemoveOptions
from .._results import ImageFile
from .._storage._listing import parse_storage_options
from ._args import Parser, fail, place, positive, whole
from ._connect import add_connection_arguments, cache_from, check_cache, client_for, server_for
from ._counting import GRACE, Counting
from ._dask import run_on_dask
from ._plan import Failed, Job, check_manifest, inputs_of
from ._report import (
    Outcomes,
    PlainReporter,
    Reporter,
    RichReporter,
    Summary,
    print_summary,
    wants_bars,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``remove``."""
    add = parser.add_argument
    add("inputs", nargs="*", metavar="INPUT", help="image files, folders or globs")
    add(
        "--retry-failed",
        type=place,
        metavar="MANIFEST",
        help="run again only the inputs whose latest line in this manifest failed (placed "
        "as the INPUTs given place them; outcomes are appended to it)",
    )
    add(
        "-o",
        "--output-dir",
        type=place,
        default=Path("rembg-output"),
        help="where results go: a folder, or a URL such as s3://bucket/out/ (default: %(default)s)",
    )
    add("--format", default="webp", help="png, jpeg, webp or bmp (default: webp)")
    add("--w", type=int, help="target width in px (keeps the aspect ratio)")
    add("--h", type=int, help="target height in px (keeps the aspect ratio)")
    add("--exact-resize", action="store_true", help="force exactly w × h")
    add("--mask", action="store_true", help="return only the alpha mask")
    add("--bg-color", help="solid background: #RGB, #RRGGBB(AA) or a CSS name")
    add("--angle", type=float, default=0.0, help="rotate by this many degrees")
    add("--no-expand", action="store_true", help="do not grow the canvas when rotating")
    add("--concurrency", type=whole(1), default=8, help="images at once (default: %(default)s)")
    add("--retries", type=whole(0), default=2, help="retries per image (default: %(default)s)")
    add(
        "--rps",
        type=positive("number of requests per second"),
        help="requests per second, fixed (default: learn the API's rate limit as it goes)",
    )
    add(
        "--redis",
        metavar="URL",
        help="share the rate limit, hold-offs and stops with every process using this Redis "
        "(redis://host:6379/0; default: $REMBG_REDIS_URL; needs the 'redis' extra)",
    )
    add(
        "--dask",
        metavar="ADDRESS",
        help="run on a Dask cluster: its scheduler (tcp://host:8786), or local:N for N local "
        "worker processes (needs the 'dask' extra)",
    )
    add("--base64", action="store_true", help="print data URLs instead of writing files")
    add(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose output this tool made from them (the default; kept for scripts)",
    )
    add("--redo", action="store_true", help="make again outputs already made from their inputs")
    add(
        "--overwrite",
        action="store_true",
        help="replace output files that were not made from their input by rembg-async",
    )
    add(
        "--root",
        type=Path,
        help="mirror inputs relative to this folder (default: each folder or glob given; "
        "a plain file goes straight into -o)",
    )
    add(
        "--manifest",
        type=place,
        help="append one JSON line per outcome to this file (or URL: put whole at the end)",
    )
    add(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="storage_option",
        help="an fsspec option for s3:// (or other) URLs, repeatable: key=…, secret=…, "
        "client_kwargs.endpoint_url=http://… (needs the 'fsspec' extra and the store's "
        "package, s3fs for s3://; AWS_ENDPOINT_URL and FSSPEC_S3_* are honoured too)",
    )
    add(
        "--max-credits",
        type=whole(0),
        metavar="N",
        help="never start an image that could take this run's spend past N credits",
    )
    add(
        "--cache",
        metavar="DIR|URL",
        help="keep results in this folder or URL (s3://bucket/rembg-cache/), shared by runs, "
        "processes and machines: the same image with the same options is paid once "
        "(default: $REMBG_CACHE)",
    )
    add("--no-cache", action="store_true", help="use no cache, even if $REMBG_CACHE names one")
    add("-q", "--quiet", action="store_true", help="print only failures and the data URLs")
    add(
        "--dry-run",
        action="store_true",
        help="say what would be sent, what is done, and the credits left; send nothing",
    )
    add_connection_arguments(parser)


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


def run(args: argparse.Namespace) -> int:
    """``rembg-async remove``: 0 when every image was made (or was done already), 1 otherwise;
    2 for bad options, inputs matching nothing or whose outputs would clash, or a manifest
    that cannot be written or read; 130 or 143 when interrupted."""
    if not args.inputs and args.retry_failed is None:
        Parser(prog="rembg-async remove").error("give an INPUT, or --retry-failed MANIFEST")
    try:
        options = options_from(args)
        args.storage_options = parse_storage_options(args.storage_option)
        check_cache(args)
        if args.retry_failed is not None and args.manifest is None:
            args.manifest = args.retry_failed  # so that the next --retry-failed sees this run
        inputs = inputs_of(args)
        if not args.dry_run:
            check_manifest(args.manifest)
    except KeyboardInterrupt:  # Ctrl-C while listing: nothing was sent, nothing to say
        return 130
    except InvalidInputError as error:
        return _refuse(error, *(error.details if len(error.details) > 1 else ()))
    # A bad --storage-option, a folder or glob matching nothing, a bad --retry-failed; a URL
    # without fsspec, or without its store's package.
    except (ValueError, ImportError) as error:
        return _refuse(error)
    except OSError as error:
        return _refuse(f"cannot write the manifest: {error}")
    if isinstance(inputs, Failed) and not len(inputs):  # nothing failed
        return fail("remove", f"nothing failed in {args.retry_failed}", 0)
    ended = _Ended()
    with server_for(args) as (base_url, api_key):
        job = Job(args=args, options=options, inputs=inputs, base_url=base_url, api_key=api_key)
        started = time.monotonic()  # the batch's time, not the embedded server's start
        try:
            code = _run_until_signalled(job, ended)
        except ValueError as error:  # a bad key or connection option: refused before sending
            return _refuse(error)
    if args.dry_run:
        return code or 0
    outcomes = ended.outcomes
    if not args.quiet and (outcomes.made or outcomes.failed or ended.clash is None):
        summary = Summary(
            counts=outcomes,
            elapsed=time.monotonic() - started,
            outputs="standard output" if args.base64 else str(args.output_dir),
            rate_limit=ended.rate_limit,
            cache=cache_from(args) is not None,
        )
        print_summary(summary)
    if ended.clash is not None:  # refused before any input of its folder was sent
        return _refuse(ended.clash)
    return code or (0 if outcomes.all_ok else 1)


def _refuse(error: object, *details: tuple[str, str]) -> int:
    """Say why the command does not run (and each field's reason, if given): exit code 2."""
    fail("remove", error)
    for field, message in details:
        print(f"  {field}: {message}", file=sys.stderr)
    return 2


@attrs.define
class _Ended:
    """What a run leaves for its summary: the items' outcomes, the limiter's last state (the
    learned rate, the 429s), and the clash that stopped the batch."""

    outcomes: Outcomes = attrs.Factory(Outcomes)
    rate_limit: RateLimitState | None = None
    clash: BaseException | None = None


def _run_until_signalled(job: Job, ended: _Ended) -> int | None:
    """Run the batch (or the dry run) into ``ended``; the exit code a signal asks for, if any."""
    args = job.args

    async def run() -> int | None:
        if args.dask and not args.dry_run:
            return await run_on_dask(job, ended.outcomes)
        interrupts = Interrupts(asyncio.current_task())  # type: ignore[arg-type]
        with signals_handled(interrupts.on_signal):
            try:
                async with client_for(args, job.base_url, job.api_key) as client:
                    if args.dry_run:
                        return await job.dry_run(client)
                    counting = Counting(job.inputs, job.folder_check())
                    try:
                        await _run_batch(job, client, counting, ended.outcomes, interrupts)
                    finally:
                        counting.close()
                        ended.rate_limit = client.rate_limit
                        ended.clash = counting.error
            except asyncio.CancelledError:
                if interrupts.signal is None:
                    raise
        if interrupts.signal is not None:  # as shells report it
            return 128 + interrupts.signal
        return 1 if interrupts.run is not None and interrupts.run.stopped is not None else None

    try:
        return run_loop(run())
    except KeyboardInterrupt:  # a loop with no signal handlers (Windows): no traceback either
        return 130


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


async def _run_batch(
    job: Job, client: AsyncRembg, counting: Counting, outcomes: Outcomes, interrupts: Interrupts
) -> None:
    """Run the batch over the inputs as they are walked and counted, counting each item's
    outcome into ``outcomes``. Sending waits for the count a moment (`GRACE`), then goes on
    beside it: the bar says "counting…" until the total is known. With ``--base64`` each
    result is printed as ``INPUT<TAB>data:…`` instead of being kept."""
    args = job.args
    counting.start()
    await counting.wait(GRACE)
    stream = sys.stderr if args.base64 else sys.stdout
    known = counting.total is not None or counting.error is not None
    reporter: Reporter = PlainReporter(
        stream, quiet=args.quiet, paths=not args.base64, counting=not known
    )
    live: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    progress = None  # plain lines show no transfer: no callback, a coroutine per event fewer
    if wants_bars(args):
        bars = RichReporter(counting.total, lambda: client.rate_limit)
        reporter, live, progress = bars, bars.live(), bars.item_progress
    if counting.error is not None:  # a clash, found before anything was sent
        return
    counting.then(reporter.counted)
    try:
        with live:
            async with client.remove_many(
                counting.stream(),
                job.options,
                concurrency=args.concurrency,
                on_item_progress=progress,
                max_credits=args.max_credits,
                **job.batch_arguments(),
            ) as run:
                interrupts.attach(run, reporter)
                counting.attach(run)
                async for item in run:
                    if args.base64 and item.result is not None:
                        print(f"{item.input}\t{await _as_data_url(item)}", flush=True)
                    reporter.item_done(item)
                    outcomes.add(item)
                if counting.error is None:
                    await _say_why_stopped(run)
    finally:  # cancelled (a second Ctrl-C): those ended unseen or cancelled on the wire are
        # said and counted
        ran = interrupts.run
        for item in [*ran.leftovers, *ran.cancelled] if ran is not None else ():
            reporter.item_done(item)
            outcomes.add(item)


async def _say_why_stopped(run: BatchRun) -> None:
    if run.stopped is None and not run.interrupted:
        return
    left = 0
    async for _ in run.remaining:  # counted, not listed: they may be a million
        left += 1
    reason = str(getattr(run.stopped, "message", None) or run.stopped)
    if run.stopped is None:
        why, then = "interrupted", "run the same command again to go on"
    elif isinstance(run.stopped, BudgetExhaustedError):
        why = f"stopped, {reason}"
        then = "to go on, raise --max-credits or run the same command again"
    else:
        why, then = f"stopped, {reason}", "once that is fixed, run it again"
    print(
        f"rembg-async remove: {why} ({left} input(s) not started; {then}: "
        "what is done is not redone)",
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
