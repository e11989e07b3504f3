"""The ``rembg-async`` command line: ``serve`` runs the local RemBG-compatible server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import ServerConfig

SERVER_EXTRA_HINT = "this needs the server extra: pip install 'rembg-async[server]'"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="rembg-async", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rembg-async`` command."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
