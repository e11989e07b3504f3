"""Where the commands send: the key, the base URL, an embedded server (``--local``), and the
client they make from those (its limits shared through Redis with ``--redis``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._client import API_BASE_URL, AsyncRembg
from .._storage._stores import import_fsspec, is_remote, protocol_of
from .._urls import checked_url
from ._args import fail, seconds

if TYPE_CHECKING:
    from ..server import ServerConfig

SERVER_EXTRA_HINT = "this needs the server extra: pip install 'rembg-async[server]'"
LOCAL_KEY = "local-cli-key"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every command that talks to the API."""
    add = parser.add_argument
    add("--api-key", help="API key (default: $REMBG_API_KEY, or REMBG_API_KEY in ./.env)")
    add("--base-url", help="API server (default: $REMBG_BASE_URL, or the hosted API)")
    add(
        "--local",
        action="store_true",
        help="start the embedded local server and use it (no key, no network)",
    )
    add(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// --base-url on another machine (the key travels in clear)",
    )
    add(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="longest silence allowed while sending or receiving (default: the library's)",
    )


def api_key_from(args: argparse.Namespace) -> str | None:
    """--api-key, else $REMBG_API_KEY, else REMBG_API_KEY in ./.env, else None (anonymous)."""
    return args.api_key or os.environ.get("REMBG_API_KEY") or _dotenv_key()


def _dotenv_key() -> str | None:
    """``REMBG_API_KEY=value`` from ./.env (quotes stripped, comments and blanks skipped)."""
    with contextlib.suppress(OSError):
        for line in Path(".env").read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and key.strip() == "REMBG_API_KEY":
                return value.strip().strip("'\"") or None
    return None


@contextlib.contextmanager
def server_for(args: argparse.Namespace) -> Iterator[tuple[str | None, str | None]]:
    """(base URL, API key) to use: an embedded local server's with --local."""
    if not args.local:
        _check_base_url(args)
        yield args.base_url, api_key_from(args)
        return
    try:
        from ..server import Account, LocalServer, ModelError, ServerConfig
    except ImportError:  # an option this installation cannot honour: a usage error
        raise SystemExit(fail(f"{args.command} --local", SERVER_EXTRA_HINT)) from None
    config = ServerConfig(accounts=[Account(api_key=LOCAL_KEY)])
    say_engine("rembg-async --local", config)
    try:
        server = LocalServer(config)
    except ModelError as error:
        raise SystemExit(f"rembg-async --local: {error}") from None
    with server:
        yield server.url, LOCAL_KEY


def say_engine(command: str, config: ServerConfig) -> None:
    """Say first, when the server cuts with the threshold instead of the model, and why."""
    from ..server._matting import fallback_notice

    notice = fallback_notice(config.chosen_engine(), config.model)
    if notice is not None:
        print(f"{command}: {notice}", file=sys.stderr, flush=True)


def _check_base_url(args: argparse.Namespace) -> None:
    """Refuse up front a base URL the client would refuse, naming the flag that allows it."""
    url = args.base_url or os.environ.get("REMBG_BASE_URL") or API_BASE_URL
    try:
        checked_url(url, args.allow_insecure_http)
    except ValueError as error:
        message = str(error).replace("allow_insecure_http=True", "--allow-insecure-http")
        raise SystemExit(fail(args.command, message)) from None


def redis_url(args: argparse.Namespace) -> str | None:
    """``--redis``, else $REMBG_REDIS_URL (if the command has ``--redis``), else None."""
    if not hasattr(args, "redis"):
        return None
    return args.redis or os.environ.get("REMBG_REDIS_URL") or None


def cache_from(args: argparse.Namespace) -> str | None:
    """``--cache``, else $REMBG_CACHE (``--no-cache``: neither): where results are kept, a
    folder (made absolute: Dask workers may start elsewhere) or a URL; None: no cache. The
    library itself never reads $REMBG_CACHE: a service does not start caching by surprise."""
    if getattr(args, "no_cache", False):
        return None
    place = getattr(args, "cache", None) or os.environ.get("REMBG_CACHE") or None
    if place is None or is_remote(place) or place.startswith("file://"):
        return place
    return os.path.abspath(os.path.expanduser(place))


def check_cache(args: argparse.Namespace) -> None:
    """Refuse, before anything runs, a cache URL this installation cannot reach (fsspec, or
    its store's package, missing): ImportError saying what to install. Otherwise every image
    would warn that the cache failed, and pay."""
    place = cache_from(args)
    if place is not None and is_remote(place):
        try:
            import_fsspec(place).get_filesystem_class(protocol_of(place))
        except ImportError as error:
            raise ImportError(f"--cache {place}: {error}") from None


def client_options(
    args: argparse.Namespace, base_url: str | None, api_key: str | None
) -> dict[str, Any]:
    """`AsyncRembg`'s arguments from the command's (a Dask worker's client gets them too)."""
    return {
        "api_key": api_key,
        "base_url": base_url,
        "timeout": args.timeout,
        "max_retries": getattr(args, "retries", 2),
        "allow_insecure_http": args.allow_insecure_http,
        # A Redis limiter brings the rate: a client refuses both.
        "requests_per_second": None if redis_url(args) else getattr(args, "rps", None),
        "storage_options": getattr(args, "storage_options", None),
        "cache": cache_from(args),  # with the storage options: an s3:// cache's credentials
    }


@contextlib.asynccontextmanager
async def client_for(
    args: argparse.Namespace, base_url: str | None, api_key: str | None
) -> AsyncIterator[AsyncRembg]:
    """The client the arguments ask for (its limits the fleet's, in Redis, with ``--redis``)."""
    url = redis_url(args)
    if not url:
        async with AsyncRembg(**client_options(args, base_url, api_key)) as client:
            yield client
        return
    try:
        from ..redis import RedisLimiter
    except ModuleNotFoundError as error:
        raise SystemExit(fail(args.command, f"--redis: {error}")) from None
    async with (
        RedisLimiter.from_url(url, requests_per_second=args.rps) as limiter,
        AsyncRembg(**client_options(args, base_url, api_key), limiter=limiter) as client,
    ):
        yield client
