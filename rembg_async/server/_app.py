"""The aiohttp application: middlewares and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

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


async def _thread_pool(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    state.executor = ThreadPoolExecutor(
        max_workers=state.config.pool_size(), thread_name_prefix="rembg-server"
    )
    yield
    state.executor.shutdown(wait=True, cancel_futures=True)


def create_app(config: ServerConfig | None = None) -> web.Application:
    """A local RemBG-compatible server as an :class:`aiohttp.web.Application`."""
    app = web.Application(middlewares=[fault_middleware, error_middleware])
    app[STATE] = ServerState.from_config(config or ServerConfig())
    app.cleanup_ctx.append(_thread_pool)
    app.router.add_post("/rmbg", handle_rmbg)
    app.router.add_get("/api/membership-usage", handle_membership_usage)
    app.router.add_get("/api/openapi", handle_openapi)
    return app
