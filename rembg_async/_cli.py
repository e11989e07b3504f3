"""The ``rembg-async`` command line: ``remove`` images, show ``usage``, ``serve`` locally."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._client import AsyncRembg

if TYPE_CHECKING:
    from .server import ServerConfig

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from ._cli_remove import add_remove_arguments

    parser = argparse.ArgumentParser(prog="rembg-async", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    remove = commands.add_parser("remove", help="remove the background of images")
    add_remove_arguments(remove)
    _add_connection_arguments(remove)
    usage = commands.add_parser("usage", help="show the membership, credits and billing cycles")
    usage.add_argument("--cycles", action="store_true", help="also list the billing cycles")
    _add_connection_arguments(usage)
    serve = commands.add_parser("serve", help="run the local RemBG-compatible server")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    serve.add_argument(
        "--port", type=int, default=7000, help="port; 0 picks a free one (default %(default)s)"
    )
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
        "--fault-rate", type=float, default=0.0, help="fail this share of requests at random"
    )
    serve.add_argument("--fault-seed", type=int, default=None, help="seed of the random faults")
    serve.add_argument(
        "--rate-limit",
        type=int,
        default=100,
        help="requests per window per key or address (0: off)",
    )
    serve.add_argument(
        "--rate-window", type=float, default=1.0, help="seconds of the short-term window"
    )
    serve.add_argument(
        "--daily-limit",
        type=int,
        default=100,
        help="anonymous requests per address per UTC day (0: off)",
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
    )


async def _serve_until_signalled(config: ServerConfig, host: str, port: int) -> None:
    from .server import serve

    task = asyncio.ensure_future(serve(config, host=host, port=port, on_ready=_announce))
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signalled(config, args.host, args.port))
    return 0


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
        yield args.base_url, api_key_from(args)
        return
    try:
        from .server import Account, LocalServer, ServerConfig
    except ImportError as error:
        raise SystemExit(f"rembg-async --local: {SERVER_EXTRA_HINT}") from error
    with LocalServer(ServerConfig(accounts=[Account(api_key=LOCAL_KEY)])) as server:
        yield server.url, LOCAL_KEY


def run_remove_command(args: argparse.Namespace) -> int:
    """``rembg-async remove``: 0 when every image was made (or skipped), 1 otherwise."""
    from ._cli_remove import options_from, retry_policy, run_remove
    from ._exceptions import InvalidInputError

    try:
        options = options_from(args)
    except InvalidInputError as error:
        print(f"rembg-async remove: {error}", file=sys.stderr)
        for field, message in error.details if len(error.details) > 1 else ():
            print(f"  {field}: {message}", file=sys.stderr)
        return 2
    with _server_for(args) as (base_url, api_key):

        async def run() -> tuple[list[Any], Any]:
            async with AsyncRembg(
                api_key, base_url=base_url, retry=retry_policy(args), requests_per_second=args.rps
            ) as client:
                return await run_remove(client, args, options), client.rate_limit

        items, rate_limit = asyncio.run(run())
    print_summary(items, rate_limit)
    return 0 if all(item.ok for item in items) else 1


def print_summary(items: list[Any], rate_limit: Any = None) -> None:
    """A table of how the batch went (to stderr, so stdout stays for results); with the
    limiter's state, the rate it ended at and the 429s it met."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rembg-async remove")
    for column in ("made", "skipped", "failed"):
        table.add_column(column, justify="right")
    made = sum(1 for item in items if item.ok and not item.skipped)
    skipped = sum(1 for item in items if item.skipped)
    row = [str(made), str(skipped), str(len(items) - made - skipped)]
    if rate_limit is not None:
        table.add_column("rate", justify="right")
        table.add_column("429s", justify="right")
        rate = "unpaced" if rate_limit.rate is None else f"{rate_limit.rate:.3g}/s"
        row += [f"{rate} ({rate_limit.source})", str(rate_limit.throttled)]
    table.add_row(*row)
    Console(stderr=True).print(table)


def run_usage_command(args: argparse.Namespace) -> int:
    """``rembg-async usage``: the plan, credits, usage and (with --cycles) billing cycles."""
    from rich.console import Console
    from rich.table import Table

    from ._exceptions import RembgError

    with _server_for(args) as (base_url, api_key):

        async def fetch() -> tuple[Any, list[Any]]:
            async with AsyncRembg(api_key, base_url=base_url) as client:
                usage = await client.membership_usage(billing_cycle=True)
                cycles = await client.billing_cycles() if args.cycles else []
                return usage, cycles

        try:
            usage, cycles = asyncio.run(fetch())
        except RembgError as error:
            print(f"rembg-async usage: {error}", file=sys.stderr)
            return 1
    console = Console()
    console.print(f"membership: [bold]{usage.membership}[/bold]")
    console.print(f"credits: {usage.credits} included, {usage.prepaid_credits} prepaid")
    console.print(f"this month: {usage.api_usage} by API, {usage.app_usage} in the web app")
    if usage.billing_cycle is not None:
        cycle = usage.billing_cycle
        console.print(
            f"this cycle ({cycle.period_start:%Y-%m-%d} to {cycle.period_end:%Y-%m-%d}): "
            f"{cycle.used_included_credits} used, {cycle.remaining_included_credits} left"
        )
    if cycles:
        table = Table(title="billing cycles")
        for column in ("start", "end", "api", "app"):
            table.add_column(column)
        for entry in cycles:
            table.add_row(
                f"{entry.period_start:%Y-%m-%d}", f"{entry.period_end:%Y-%m-%d}",
                str(entry.api_usage), str(entry.app_usage),
            )  # fmt: skip
        console.print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rembg-async`` command."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "usage":
        return run_usage_command(args)
    if args.command == "remove":
        return run_remove_command(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
