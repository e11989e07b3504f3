"""``rembg-async serve``: the local RemBG-compatible server, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .._loops import run as run_loop
from .._loops import signals_handled
from ._args import fail, port, seconds, share, whole
from ._connect import SERVER_EXTRA_HINT, say_engine

if TYPE_CHECKING:
    from ..server import ServerConfig


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of ``serve``."""
    add = serve.add_argument
    add("--host", default="127.0.0.1", help="address to listen on")
    add("--port", type=port, default=7000, help="port; 0 picks a free one")
    add(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="add a verified account with the default plan (repeatable)",
    )
    add(
        "--accounts",
        type=Path,
        metavar="FILE",
        help="JSON list of accounts: api_key, membership, credits, prepaid_credits, email_verified",
    )
    add("--faults", action="store_true", help="honour the x-rembg-fault header")
    add("--fault-rate", type=share, default=0.0, help="fail this share of requests at random")
    add("--fault-seed", type=int, default=None, help="seed of the random faults")
    add(
        "--rate-limit",
        type=whole(0),
        default=100,
        help="requests per window per key or address (0: off)",
    )
    add("--rate-window", type=seconds, default=1.0, help="seconds of the short-term window")
    add(
        "--daily-limit",
        type=whole(0),
        default=100,
        help="anonymous requests per address per UTC day (0: off)",
    )
    add(
        "--engine",
        choices=("auto", "u2netp", "classic"),
        help="background removal: the U²-Net model (needs the model extra), a colour threshold,"
        " or auto: the model when installed (default: $REMBG_ASYNC_ENGINE, or auto)",
    )
    add("--model", type=Path, metavar="PATH", help="a U²-Net-compatible ONNX file to run")
    add("--access-log", action="store_true", help="log each request to stderr, one line each")


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The server configuration the ``serve`` arguments describe."""
    from ..server import Account, RateLimits, ServerConfig

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


async def _serve_until_signalled(config: ServerConfig, args: argparse.Namespace) -> None:
    from ..server import serve

    access_log = _access_log(args)
    task = asyncio.ensure_future(
        serve(config, host=args.host, port=args.port, on_ready=_announce, access_log=access_log)
    )
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
    with signals_handled(stop), contextlib.suppress(asyncio.CancelledError):
        await task


def _announce(url: str) -> None:
    print(url, flush=True)
    print(f"RemBG-compatible server on {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """``rembg-async serve``: run until Ctrl-C or SIGTERM."""
    try:
        config = server_config(args)
    except ImportError:
        return fail("serve", SERVER_EXTRA_HINT)
    except (OSError, ValueError, TypeError) as error:
        return fail("serve", f"bad --accounts file: {error}")
    from ..server import ModelError

    say_engine("rembg-async serve", config)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_loop(_serve_until_signalled(config, args))
    except ModelError as error:
        return fail("serve", error)
    except OSError as error:  # the port is taken, the address is not ours, ...
        reason = error.strerror or str(error)
        return fail("serve", f"cannot listen on {args.host}:{args.port}: {reason}", 1)
    return 0


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
