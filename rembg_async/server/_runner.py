"""The aiohttp application (routes, the image-work pool, middlewares that answer errors in the
API's shape and deliver injected faults), and running it: in the foreground or on a thread."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, Final, TypeVar

from aiohttp import web

from .._contract import MSG_RATE_DAILY, MSG_RATE_MONTHLY, MSG_RATE_SHORT_TERM, error_body
from ._accounts import Account
from ._faults import FAULT_HEADER, Fault, FaultInjector, FaultSyntaxError
from ._membership import handle_membership_usage
from ._openapi import handle_openapi
from ._rmbg import handle_rmbg
from ._state import STATE, APIError, ServerConfig, ServerState, json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

#: How long an unread upload is drained after the answer before the connection is dropped.
LINGERING_SECONDS: Final = 2.0
#: How much nicer than the event loop the image workers are (Linux: threads have priorities).
WORKER_NICENESS: Final = 5
_RATE_MESSAGES: Final = {
    "short_term": MSG_RATE_SHORT_TERM,
    "daily": MSG_RATE_DAILY,
    "monthly": MSG_RATE_MONTHLY,
}
_HTML_PAGE: Final = (
    "<html><head><title>{status} {reason}</title></head>"
    "<body><center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>"
)
_DRAIN_CHUNK: Final = 256 * 1024


def create_app(config: ServerConfig | None = None) -> web.Application:
    """A local RemBG-compatible server as an `aiohttp.web.Application`."""
    app = web.Application(middlewares=[fault_middleware, error_middleware])
    app[STATE] = ServerState.from_config(config or ServerConfig())
    app.cleanup_ctx.append(_thread_pool)
    app.router.add_post("/rmbg", handle_rmbg)
    app.router.add_get("/api/membership-usage", handle_membership_usage)
    app.router.add_get("/api/openapi", handle_openapi)
    return app


async def _thread_pool(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    state.executor = ThreadPoolExecutor(
        max_workers=state.config.pool_size(),
        thread_name_prefix="rembg-server",
        initializer=_lower_priority,
    )
    yield
    state.executor.shutdown(wait=True, cancel_futures=True)


def _lower_priority() -> None:
    """Run in each worker, so that on a busy machine the event loop gets the CPU first: short
    requests (usage, errors) must not wait behind every core's image work."""
    with contextlib.suppress(AttributeError, OSError):  # no per-thread priority off Linux
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread) + WORKER_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, niceness)


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


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the fault chosen for this request, if any; see `Fault`."""
    try:
        fault = request.app[STATE].faults.choose(request.headers.get(FAULT_HEADER))
    except FaultSyntaxError as error:
        return json_response(error_body(400, f"Bad {FAULT_HEADER} header: {error}"), status=400)
    if fault is None:
        return await handler(request)
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.drop == "upload":  # read part of the upload, then cut the connection
        await request.content.read(max(1, (request.content_length or 2) // 2))
        return _abort(request)
    if fault.status is not None:
        while await request.content.read(_DRAIN_CHUNK):
            pass
        return status_response(fault)
    response = await handler(request)
    if fault.shapes_response and isinstance(response, web.Response) and response.status == 200:
        return await _deliver(request, response, fault)
    return response


def _abort(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.abort()
    # Nothing more can reach the client: aiohttp quietly drops what is returned on a dead link.
    response = web.Response(status=499)
    response.force_close()
    return response


def status_response(fault: Fault) -> web.Response:
    """The answer for a ``status`` fault: the API's JSON error, or a proxy's HTML page."""
    assert fault.status is not None
    status = fault.status
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    if fault.html or status == 502:
        page = _HTML_PAGE.format(status=status, reason=reason)
        return web.Response(status=status, text=page, content_type="text/html", headers=headers)
    message = _RATE_MESSAGES[fault.scope] if status == 429 else f"{reason} (injected fault)"
    return json_response(error_body(status, message), status=status, headers=headers)


async def _deliver(request: web.Request, result: web.Response, fault: Fault) -> web.StreamResponse:
    """Send a successful result the broken way ``fault`` asks for."""
    body = result.body
    assert isinstance(body, bytes)
    body = os.urandom(len(body)) if fault.garbage else body
    response = web.StreamResponse(status=200)
    response.content_type = fault.content_type or result.content_type
    if fault.gzip:
        body = gzip.compress(body, compresslevel=1)
        response.headers["Content-Encoding"] = "gzip"
    if fault.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(body)
    await response.prepare(request)
    cut = len(body) // 2 if fault.truncate or fault.drop == "download" else len(body)
    sent = body[:cut]
    step = fault.chunk if fault.trickle is not None or fault.chunked else len(sent) or 1
    for offset in range(0, len(sent), step):
        await response.write(sent[offset : offset + step])
        if fault.trickle:
            await asyncio.sleep(fault.trickle)
    if cut == len(body):
        await response.write_eof()
    elif fault.drop == "download":
        _abort(request)
    elif request.transport is not None:
        request.transport.close()  # a clean close, short of the promised length
    return response


def make_runner(
    app: web.Application,
    *,
    shutdown_timeout: float = 10.0,
    access_log: logging.Logger | None = None,
) -> web.AppRunner:
    """An ``aiohttp.web.AppRunner`` with the settings the local server wants (requests are
    logged to ``access_log`` when one is given)."""
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=access_log,
        lingering_time=LINGERING_SECONDS,
        shutdown_timeout=shutdown_timeout,
    )


def url_of(runner: web.AppRunner) -> str:
    """The ``http://host:port`` the runner's first site listens on."""
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


async def serve(
    config: ServerConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7000,
    on_ready: Callable[[str], None] = print,
    access_log: logging.Logger | None = None,
) -> None:
    """Serve until cancelled; ``on_ready`` is given the URL once the port is open; each
    request is logged to ``access_log`` (aiohttp's format) when one is given."""
    runner = make_runner(create_app(config), access_log=access_log)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        on_ready(url_of(runner))
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class LocalServer:
    """A local server on its own thread and event loop, for tests and for code of any kind.

    ``with LocalServer(config) as server: ...`` serves on an ephemeral port of 127.0.0.1 at
    ``server.url``. State (accounts, faults) can be reached from any thread through
    `call`, which runs a function on the server's loop.
    """

    def __init__(
        self, config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or ServerConfig()
        self._host = host
        self._port = port
        # First: a model that cannot load (ModelError) leaves no loop or thread behind.
        self._app = create_app(self.config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="rembg-local-server", daemon=True
        )
        self._runner = make_runner(self._app, shutdown_timeout=2.0)
        self.url = ""

    @property
    def api_key(self) -> str | None:
        """The key of the first configured account, if there is one."""
        return self.config.accounts[0].api_key if self.config.accounts else None

    @property
    def state(self) -> ServerState:
        """The server's state; change it only through `call`."""
        return self._app[STATE]

    @property
    def faults(self) -> FaultInjector:
        """The fault injector (thread-safe), when the config enabled faults."""
        return self.state.faults

    def start(self) -> LocalServer:
        """Start serving; returns once the port is open."""
        self._thread.start()
        self._run(self._runner.setup())
        self._run(web.TCPSite(self._runner, self._host, self._port).start())
        self.url = url_of(self._runner)
        return self

    def stop(self) -> None:
        """Stop serving and release the thread and its loop. Safe to call twice."""
        if not self._thread.is_alive():
            return
        try:
            self._run(self._shut_down())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the server's loop and return its result."""

        async def run() -> T:
            return function()

        return self._run(run())

    def add_account(self, account: Account) -> None:
        """Add (or replace) an account while the server runs."""
        self.call(lambda: self.state.add_account(account))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _shut_down(self) -> None:
        await self._runner.cleanup()
        # End what the cleanup left running: handlers of connections a client dropped.
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._loop.shutdown_asyncgens()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
