"""Running the local server: in the foreground (``rembg-async serve``) or on a thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Final, TypeVar

from aiohttp import web

from ._accounts import Account
from ._app import create_app
from ._faults import FaultInjector
from ._state import STATE, ServerConfig, ServerState

T = TypeVar("T")

#: How long an unread upload is drained after the answer before the connection is dropped.
LINGERING_SECONDS: Final = 2.0


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


async def _cancel_leftover_tasks() -> None:
    """End what the runner's cleanup left running (handlers of connections a client dropped)."""
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


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
            self._run(self._runner.cleanup())
            self._run(_cancel_leftover_tasks())
            self._run(self._loop.shutdown_asyncgens())
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
        self.call(lambda: self.state.accounts.add(account, now=self.state.now()))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
