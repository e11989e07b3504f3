"""The aiohttp application: middlewares and routes."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from aiohttp import web

from .._contract import error_body
from ._delivery import fault_middleware
from ._membership import handle_membership_usage
from ._openapi import handle_openapi
from ._rmbg import handle_rmbg
from ._state import STATE, APIError, ServerConfig, ServerState, json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answered in the API's error shape, aiohttp's own 404/405 included."""
    try:
        return await handler(request)
    except APIError as error:
        return await error.respond(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        allow = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return json_response(
            error_body(error.status, error.reason), status=error.status, headers=allow
        )


#: How much nicer than the event loop the image workers are (Linux: threads have priorities).
WORKER_NICENESS: Final = 5


def _lower_priority() -> None:
    """Run in each worker: on a busy machine the event loop gets the CPU first.

    With every core doing image work, the loop thread would otherwise wait its turn behind
    them, and short requests (the usage endpoint, errors) would wait with it.
    """
    with contextlib.suppress(AttributeError, OSError):  # no per-thread priority off Linux
        thread = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + WORKER_NICENESS
        )


async def _thread_pool(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    state.executor = ThreadPoolExecutor(
        max_workers=state.config.pool_size(),
        thread_name_prefix="rembg-server",
        initializer=_lower_priority,
    )
    yield
    state.executor.shutdown(wait=True, cancel_futures=True)


def create_app(config: ServerConfig | None = None) -> web.Application:
    """A local RemBG-compatible server as an `aiohttp.web.Application`."""
    app = web.Application(middlewares=[fault_middleware, error_middleware])
    app[STATE] = ServerState.from_config(config or ServerConfig())
    app.cleanup_ctx.append(_thread_pool)
    app.router.add_post("/rmbg", handle_rmbg)
    app.router.add_get("/api/membership-usage", handle_membership_usage)
    app.router.add_get("/api/openapi", handle_openapi)
    return app
