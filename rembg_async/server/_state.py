"""The server's configuration and shared state, who is calling, and the API's error answer."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import attrs
from aiohttp import web

from .._contract import (
    API_KEY_HEADER,
    MAX_UPLOAD_BYTES,
    MSG_EMAIL_NOT_VERIFIED,
    MSG_INVALID_API_KEY,
    MSG_KEY_AND_TOKEN,
    FieldProblem,
    error_body,
    validation_error_body,
)
from ._accounts import Account, AccountState
from ._faults import FaultInjector
from ._matting import ENGINES, EngineName, Matting, U2Net, load_matting
from ._ratelimit import DailyLimiter, RateLimits, SlidingWindowLimiter

#: The environment variable that sets the default ``engine`` (``auto``, ``u2netp``, ``classic``).
ENGINE_VARIABLE: Final = "REMBG_ASYNC_ENGINE"
#: How long a client still sending an upload we refused has to read our answer.
HANG_UP_GRACE_SECONDS: Final = 1.0


def _accounts(value: Iterable[Account]) -> tuple[Account, ...]:
    return tuple(value)


def _optional_path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen(kw_only=True)
class ServerConfig:
    """Everything that shapes a local server.

    ``faults`` enables fault injection (the ``x-rembg-fault`` header, `FaultInjector.push`
    and ``fault_rate``, the share of requests failed at random with ``fault_seed``).
    ``drain_limit`` is how many bytes of an oversized upload are read (and dropped) to report
    its real size before the client is cut off. ``clock`` gives Unix seconds, for tests that
    need billing windows at a chosen moment. ``engine`` removes backgrounds: ``u2netp`` (the
    U²-Net model, needs the ``model`` extra), ``classic`` (a colour threshold), or ``auto``
    (the model when installed); unset, it is ``u2netp`` if ``model`` is given, else
    ``$REMBG_ASYNC_ENGINE`` (so a test suite can pick the fast threshold without code), else
    ``auto``. ``model`` is another U²-Net-compatible ONNX file to run.
    ``workers`` is the size of the image-work pool (default: the cores, at most 8).
    """

    accounts: tuple[Account, ...] = attrs.field(default=(), converter=_accounts)
    rate_limits: RateLimits = attrs.field(factory=RateLimits)
    faults: bool = False
    fault_rate: float = 0.0
    fault_seed: int | None = None
    drain_limit: int = 2 * MAX_UPLOAD_BYTES
    workers: int | None = None
    clock: Callable[[], float] = time.time
    engine: EngineName | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(ENGINES))
    )
    model: Path | None = attrs.field(default=None, converter=_optional_path)

    def chosen_engine(self) -> str:
        """``engine`` if set; else ``u2netp`` for a ``model``; else $REMBG_ASYNC_ENGINE or auto."""
        if self.engine is not None:
            return self.engine
        if self.model is not None:
            return "u2netp"
        return os.environ.get(ENGINE_VARIABLE) or "auto"

    def pool_size(self) -> int:
        """How many images are worked on at once."""
        return self.workers or min(8, available_cores())


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on macOS or Windows
        return os.cpu_count() or 1


@attrs.define
class ServerState:
    """The mutable state of one running server."""

    config: ServerConfig
    short_term: SlidingWindowLimiter
    daily: DailyLimiter
    faults: FaultInjector
    matting: Matting
    #: The accounts by API key; `add_account` adds one.
    accounts: dict[str, AccountState] = attrs.field(factory=dict)
    executor: ThreadPoolExecutor | None = None
    #: Requests in the image pool, queued or in work (changed on the event loop only).
    rendering: int = 0

    @classmethod
    def from_config(cls, config: ServerConfig) -> ServerState:
        """Fresh state for ``config``; the matting engine is loaded (``ModelError`` if it can't)."""
        limits = config.rate_limits
        # Each worker runs one inference at a time, so together they use the cores, never more;
        # a request alone in the pool has them all (`matting_for_next`).
        cores = available_cores()
        threads = max(1, cores // config.pool_size())
        state = cls(
            config=config,
            matting=load_matting(
                config.chosen_engine(), config.model, threads=threads, lone_threads=cores
            ),
            short_term=SlidingWindowLimiter(limits.short_term_requests, limits.short_term_window),
            daily=DailyLimiter(limits.daily_anonymous),
            faults=FaultInjector(
                enabled=config.faults, rate=config.fault_rate, seed=config.fault_seed
            ),
        )
        for account in config.accounts:
            state.add_account(account)
        return state

    def add_account(self, account: Account) -> None:
        """Add (or replace) an account, its seeded web-editor usage counted now."""
        self.accounts[account.api_key] = AccountState.new(account, self.now())

    def matting_for_next(self) -> Matting:
        """The engine for a request entering the pool: the model on all cores if none is in it."""
        if self.rendering == 0 and isinstance(self.matting, U2Net):
            return self.matting.alone()
        return self.matting

    def now(self) -> int:
        """The current Unix time in whole seconds, from the configured clock."""
        return int(self.config.clock())


STATE = web.AppKey("rembg_state", ServerState)


def authenticate(
    request: web.Request, state: ServerState, *, required: bool
) -> AccountState | None:
    """The caller's account, or None for an anonymous call where that is allowed.

    **[decision]** a user token is an ``Authorization: Bearer …`` header. The local server has
    no web sessions, so a token alone is anonymous; with an API key it is the API's 400.
    An empty ``x-api-key`` counts as none.
    """
    api_key = request.headers.get(API_KEY_HEADER, "")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if api_key and scheme.lower() == "bearer" and token.strip():
        raise APIError(400, MSG_KEY_AND_TOKEN)
    if not api_key:
        if required:
            raise APIError(401, MSG_INVALID_API_KEY)
        return None
    account = state.accounts.get(api_key)
    if account is None:
        raise APIError(401, MSG_INVALID_API_KEY)
    if not account.account.email_verified:
        raise APIError(403, MSG_EMAIL_NOT_VERIFIED)
    return account


class APIError(Exception):
    """An error answer in the API's JSON shape; ``problems`` lists every refused field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        problems: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problems = problems or []
        self.body = (
            validation_error_body(problems, status) if problems else error_body(status, message)
        )
        self.headers = headers or {}
        self.close = close  # drop the connection: the client is still sending what we won't read

    async def respond(self, request: web.Request) -> web.StreamResponse:
        """Send the JSON response for this error (and hang up, if ``close`` was asked)."""
        response = json_response(self.body, status=self.status, headers=self.headers)
        if not self.close:
            return response
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        # We read no more, so TCP flow control stalls the sender; closing on its unread data
        # sends a reset that can destroy our answer in flight, so the client gets a moment to
        # read it. aiohttp's "lingering close" would read (and drop) gigabytes from a liar.
        await asyncio.sleep(HANG_UP_GRACE_SECONDS)
        request.protocol.force_close()
        return response


def json_response(
    body: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A compact JSON response."""
    return web.json_response(
        body,
        status=status,
        headers=headers,
        dumps=functools.partial(json.dumps, ensure_ascii=False),
    )
