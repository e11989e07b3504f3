"""The ``rembg-async`` command line: ``remove`` images, show ``usage``, ``serve`` locally."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli_args import DefaultsFormatter, Parser, port, seconds, share, whole
from ._client import AsyncRembg
from ._loops import run as run_loop
from ._version import __version__

if TYPE_CHECKING:
    from ._limits import Limiter
    from .server import ServerConfig

DESCRIPTION = (
    "Remove the background of images with the RemBG API (remove), show the account's "
    "credits (usage), or run a local RemBG-compatible server (serve)."
)
SERVER_EXTRA_HINT = "this needs the server extra: pip install 'rembg-async[server]'"


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key", help="API key (default: $REMBG_API_KEY, or REMBG_API_KEY in ./.env)"
    )
    parser.add_argument(
        "--base-url", help="API server (default: $REMBG_BASE_URL, or the hosted API)"
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="start the embedded local server and use it (no key, no network)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// --base-url on another machine (the key travels in clear)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="longest silence allowed while sending or receiving (default: the library's)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from ._cli_remove import add_remove_arguments

    parser = Parser(prog="rembg-async", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    remove = commands.add_parser("remove", help="remove the background of images")
    add_remove_arguments(remove)
    _add_connection_arguments(remove)
    usage = commands.add_parser("usage", help="show the membership, credits and billing cycles")
    usage.add_argument("--cycles", action="store_true", help="also list the billing cycles")
    _add_connection_arguments(usage)
    serve = commands.add_parser(
        "serve",
        help="run the local RemBG-compatible server",
        formatter_class=DefaultsFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=port, default=7000, help="port; 0 picks a free one")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="add a verified account with the default plan (repeatable)",
    )
    serve.add_argument(
        "--accounts",
        type=Path,
        metavar="FILE",
        help="JSON list of accounts: api_key, membership, credits, prepaid_credits, email_verified",
    )
    serve.add_argument("--faults", action="store_true", help="honour the x-rembg-fault header")
    serve.add_argument(
        "--fault-rate", type=share, default=0.0, help="fail this share of requests at random"
    )
    serve.add_argument("--fault-seed", type=int, default=None, help="seed of the random faults")
    serve.add_argument(
        "--rate-limit",
        type=whole(0),
        default=100,
        help="requests per window per key or address (0: off)",
    )
    serve.add_argument(
        "--rate-window", type=seconds, default=1.0, help="seconds of the short-term window"
    )
    serve.add_argument(
        "--daily-limit",
        type=whole(0),
        default=100,
        help="anonymous requests per address per UTC day (0: off)",
    )
    serve.add_argument(
        "--engine",
        choices=("auto", "u2netp", "classic"),
        help="background removal: the U²-Net model (needs the model extra), a colour threshold,"
        " or auto: the model when installed (default: $REMBG_ASYNC_ENGINE, or auto)",
    )
    serve.add_argument(
        "--model", type=Path, metavar="PATH", help="a U²-Net-compatible ONNX file to run"
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log each request to stderr, one line each"
    )
    return parser


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The server configuration the ``serve`` arguments describe."""
    from .server import Account, RateLimits, ServerConfig

    accounts = [Account(api_key=key) for key in args.api_key]
    if args.accounts is not None:
        accounts += [Account.from_json(entry) for entry in json.loads(args.accounts.read_text())]
    return ServerConfig(
        accounts=accounts,
        rate_limits=RateLimits(
            short_term_requests=args.rate_limit,
            short_term_window=args.rate_window,
            daily_anonymous=args.daily_limit,
        ),
        faults=args.faults or args.fault_rate > 0,
        fault_rate=args.fault_rate,
        fault_seed=args.fault_seed,
        engine=args.engine,
        model=args.model,
    )


async def _serve_until_signalled(
    config: ServerConfig, host: str, port: int, access_log: logging.Logger | None
) -> None:
    from .server import serve

    task = asyncio.ensure_future(
        serve(config, host=host, port=port, on_ready=_announce, access_log=access_log)
    )
    loop = asyncio.get_running_loop()
    signalled: list[int] = []

    def stop(number: int) -> None:
        # The first signal shuts down gracefully: a response still being sent gets a few
        # seconds. A second one ends the process at once (on 3.10 a second cancel does not
        # reach aiohttp's wait for those responses); the server keeps nothing worth saving.
        if signalled:
            print("rembg-async serve: stopped at once", file=sys.stderr, flush=True)
            os._exit(128 + number)
        signalled.append(number)
        task.cancel()

    # Ctrl-C cancels the server too: left to Python 3.10's default handler, the
    # KeyboardInterrupt may land in a transport's callback, which the loop logs and survives.
    for number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
            loop.add_signal_handler(number, stop, number)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _announce(url: str) -> None:
    print(url, flush=True)
    print(f"RemBG-compatible server on {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)


def run_serve(args: argparse.Namespace) -> int:
    """``rembg-async serve``: run until Ctrl-C or SIGTERM."""
    try:
        config = server_config(args)
    except ImportError:
        print(f"rembg-async serve: {SERVER_EXTRA_HINT}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError) as error:
        print(f"rembg-async serve: bad --accounts file: {error}", file=sys.stderr)
        return 2
    from .server import ModelError

    _say_engine("rembg-async serve", config)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_loop(_serve_until_signalled(config, args.host, args.port, _access_log(args)))
    except ModelError as error:
        print(f"rembg-async serve: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the port is taken, the address is not ours, ...
        reason = error.strerror or str(error)
        print(f"rembg-async serve: cannot listen on {args.host}:{args.port}: {reason}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _say_engine(command: str, config: ServerConfig) -> None:
    """Say first, before any other line, when the server cuts with the threshold instead of
    the model it would run if it could, and why."""
    from .server._matting import fallback_notice

    notice = fallback_notice(config.chosen_engine(), config.model)
    if notice is not None:
        print(f"{command}: {notice}", file=sys.stderr, flush=True)


def _access_log(args: argparse.Namespace) -> logging.Logger | None:
    """With --access-log, a logger that writes aiohttp's one line per request to stderr."""
    if not args.access_log:
        return None
    logger = logging.getLogger("rembg_async.server.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))  # aiohttp's line has the time
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


LOCAL_KEY = "local-cli-key"


def api_key_from(args: argparse.Namespace) -> str | None:
    """--api-key, else $REMBG_API_KEY, else REMBG_API_KEY in ./.env, else None (anonymous)."""
    if args.api_key:
        return str(args.api_key)
    if os.environ.get("REMBG_API_KEY"):
        return os.environ["REMBG_API_KEY"]
    return _dotenv_value(Path(".env"), "REMBG_API_KEY")


def _dotenv_value(path: Path, name: str) -> str | None:
    """``NAME=value`` from a .env file (quotes stripped, comments and blanks skipped)."""
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and key.strip() == name:
                return value.strip().strip("'\"") or None
    return None


@contextlib.contextmanager
def _server_for(args: argparse.Namespace) -> Iterator[tuple[str | None, str | None]]:
    """(base URL, API key) to use: an embedded local server's with --local."""
    if not args.local:
        _check_base_url(args)
        yield args.base_url, api_key_from(args)
        return
    try:
        from .server import Account, LocalServer, ModelError, ServerConfig
    except ImportError:  # an option this installation cannot honour: a usage error
        print(f"rembg-async {args.command} --local: {SERVER_EXTRA_HINT}", file=sys.stderr)
        raise SystemExit(2) from None
    config = ServerConfig(accounts=[Account(api_key=LOCAL_KEY)])
    _say_engine("rembg-async --local", config)
    try:
        server = LocalServer(config)
    except ModelError as error:
        raise SystemExit(f"rembg-async --local: {error}") from None
    with server:
        yield server.url, LOCAL_KEY


def _check_base_url(args: argparse.Namespace) -> None:
    """Refuse, before anything runs, a base URL the client would refuse (plain http to
    another machine without --allow-insecure-http), saying which flag allows it."""
    from ._client import API_BASE_URL
    from ._urls import checked_url

    url = args.base_url or os.environ.get("REMBG_BASE_URL") or API_BASE_URL
    try:
        checked_url(url, args.allow_insecure_http)
    except ValueError as error:
        message = str(error).replace("allow_insecure_http=True", "--allow-insecure-http")
        print(f"rembg-async {args.command}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def client_for(
    args: argparse.Namespace,
    base_url: str | None,
    api_key: str | None,
    limiter: Limiter | None = None,
) -> AsyncRembg:
    """The client the connection arguments ask for."""
    from ._cli_remove import retry_policy

    return AsyncRembg(
        api_key,
        base_url=base_url,
        timeout=args.timeout,
        allow_insecure_http=args.allow_insecure_http,
        retry=retry_policy(args) if hasattr(args, "retries") else None,
        requests_per_second=None if limiter else getattr(args, "rps", None),
        limiter=limiter,
        storage_options=getattr(args, "storage_options", None),
    )


@contextlib.asynccontextmanager
async def remove_client(
    args: argparse.Namespace, base_url: str | None, api_key: str | None
) -> AsyncIterator[AsyncRembg]:
    """The client for ``remove``: with ``--redis`` (or $REMBG_REDIS_URL), its limits are the
    fleet's, shared through Redis."""
    url = args.redis or os.environ.get("REMBG_REDIS_URL")
    if not url:
        async with client_for(args, base_url, api_key) as client:
            yield client
        return
    try:
        from .redis import RedisLimiter
    except ModuleNotFoundError as error:
        print(f"rembg-async remove: --redis: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    async with (
        RedisLimiter.from_url(url, requests_per_second=args.rps) as limiter,
        client_for(args, base_url, api_key, limiter) as client,
    ):
        yield client


def run_remove_command(args: argparse.Namespace) -> int:
    """``rembg-async remove``: 0 when every image was made (or was done already), 1 otherwise;
    2 for bad options, inputs matching nothing or whose outputs would clash, or a manifest
    that cannot be written or read; 130 or 143 when interrupted."""
    if not args.inputs and args.retry_failed is None:
        Parser(prog="rembg-async remove").error("give an INPUT, or --retry-failed MANIFEST")
    from ._cli_plan import check_manifest, inputs_of
    from ._cli_remove import options_from
    from ._exceptions import InvalidInputError

    try:
        options = options_from(args)
    except InvalidInputError as error:
        print(f"rembg-async remove: {error}", file=sys.stderr)
        for field, message in error.details if len(error.details) > 1 else ():
            print(f"  {field}: {message}", file=sys.stderr)
        return 2
    from ._storage._listing import parse_storage_options

    try:
        args.storage_options = parse_storage_options(args.storage_option)
    except ValueError as error:
        print(f"rembg-async remove: {error}", file=sys.stderr)
        return 2
    if args.retry_failed is not None and args.manifest is None:
        args.manifest = args.retry_failed  # so that the next --retry-failed sees this run
    try:
        inputs = inputs_of(args)
        if not args.dry_run:
            check_manifest(args.manifest)
    except KeyboardInterrupt:  # Ctrl-C while listing: nothing was sent, nothing to say
        return 130
    except ValueError as error:  # a folder or glob matching nothing, a bad --retry-failed
        print(f"rembg-async remove: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # a URL without fsspec, or without its store's package
        print(f"rembg-async remove: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"rembg-async remove: cannot write the manifest: {error}", file=sys.stderr)
        return 2
    if not inputs:  # only with --retry-failed: nothing failed
        print(f"rembg-async remove: nothing failed in {args.retry_failed}", file=sys.stderr)
        return 0
    with _server_for(args) as (base_url, api_key):
        started = time.monotonic()  # the batch's time, not the embedded server's start
        items: list[Any] = []
        limits: list[Any] = []  # the limiter's state at the end: the learned rate, the 429s
        try:
            code = _run_until_signalled(args, base_url, api_key, options, inputs, items, limits)
        except ValueError as error:  # two inputs, one output: refused before anything is sent
            print(f"rembg-async remove: {error}", file=sys.stderr)
            return 2
    if args.dry_run:
        return code or 0
    if not args.quiet:
        from ._cli_summary import print_summary

        where = "standard output" if args.base64 else str(args.output_dir)
        elapsed = time.monotonic() - started
        print_summary(
            items, elapsed=elapsed, outputs=where, rate_limit=limits[0] if limits else None
        )
    return code or (0 if all(item.ok for item in items) else 1)


def _run_until_signalled(
    args: argparse.Namespace,
    base_url: str | None,
    api_key: str | None,
    options: Any,
    inputs: Any,
    items: list[Any],
    limits: list[Any],
) -> int | None:
    """Run the batch (or the dry run); the exit code a signal asks for, if one came."""
    from ._cli_plan import dry_run
    from ._cli_remove import Interrupts, run_remove

    async def run() -> int | None:
        if getattr(args, "dask", None) and not args.dry_run:
            from ._cli_dask import run_on_dask

            return await run_on_dask(args, base_url, api_key, options, inputs, items)
        interrupts = Interrupts(asyncio.current_task())  # type: ignore[arg-type]
        with _signals_to(interrupts):
            try:
                async with remove_client(args, base_url, api_key) as client:
                    if args.dry_run:
                        return await dry_run(client, args, options, inputs)
                    try:
                        await run_remove(client, args, options, inputs, items, interrupts)
                    finally:
                        limits.append(client.rate_limit)
            except asyncio.CancelledError:
                if interrupts.signal is None:
                    raise
        stopped = interrupts.run is not None and interrupts.run.stopped is not None
        return interrupts.exit_code or (1 if stopped else None)

    try:
        return run_loop(run())
    except KeyboardInterrupt:  # a loop with no signal handlers (Windows): no traceback either
        return 130


@contextlib.contextmanager
def _signals_to(interrupts: Any) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``interrupts`` while the batch runs."""
    loop = asyncio.get_running_loop()
    installed = []
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
            loop.add_signal_handler(number, interrupts.on_signal, int(number))
            installed.append(number)
    try:
        yield
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rembg-async`` command: 130 on a Ctrl-C that nothing else took,
    141 when the reader of the output went away (``| head``), and never a traceback for either."""
    args = build_parser().parse_args(argv)
    _show_library_warnings()
    try:
        return _run(args)
    except KeyboardInterrupt:  # while starting up or importing: nothing was sent
        return 130
    except BrokenPipeError:
        # As ``find | head`` does: stop quietly; stdout goes to /dev/null so that the
        # interpreter's final flush does not complain about the pipe a second time.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE if hasattr(signal, "SIGPIPE") else 1


class _ToStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (rich's live display replaces
    it while the bars are shown, and prints what it gets above them)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always sys.stderr


def _show_library_warnings() -> None:
    """The library's warnings (an anonymous call, Redis unreachable) as lines of ours: without
    a handler, logging's last resort would print them bare. A retry's give-up is left out: the
    line of the image that failed already says it, with the attempts."""
    logger = logging.getLogger("rembg_async")
    if any(isinstance(handler, _ToStderr) for handler in logger.handlers):
        return
    handler = _ToStderr()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("rembg-async: %(message)s"))
    handler.addFilter(lambda record: record.name != "rembg_async.retry")
    logger.addHandler(handler)


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return run_serve(args)
    if args.command == "usage":
        from ._cli_usage import run_usage_command

        return run_usage_command(args)
    if args.command == "remove":
        return run_remove_command(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
