"""The pytest plugin of rembg-async: ``rembg_server`` and ``rembg_server_factory`` fixtures.

Installing the package registers this module with pytest (entry point ``pytest11``). It lives
outside the ``rembg_async`` package on purpose: importing it imports nothing but pytest, so every
pytest run of a project that merely has rembg-async installed pays nothing for it. The local
server (aiohttp, Pillow, NumPy) is imported when a test first asks for a fixture. The documented
import path is ``rembg_async.pytest_plugin``, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from rembg_async.server import LocalServer, ServerConfig

#: The API key of the account every ``rembg_server`` has.
TEST_API_KEY = "test-key-rembg-async"

#: ``rembg_server_factory``'s type: ``start(config=None) -> LocalServer`` (already running).
ServerFactory = Callable[..., "LocalServer"]


@pytest.fixture
def rembg_server_factory() -> Iterator[ServerFactory]:
    """Start local servers with any ``ServerConfig``; all are stopped after the test.

    A verified account with ``TEST_API_KEY`` comes first, so it is the server's ``api_key``.
    """
    import attrs

    from rembg_async.server import Account, LocalServer, ServerConfig

    started: list[LocalServer] = []

    def start(config: ServerConfig | None = None) -> LocalServer:
        config = config or ServerConfig()
        accounts = (Account(api_key=TEST_API_KEY), *config.accounts)
        server = LocalServer(attrs.evolve(config, accounts=accounts))
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def rembg_server(rembg_server_factory: ServerFactory) -> LocalServer:
    """A running local server with default settings and the ``TEST_API_KEY`` account."""
    return rembg_server_factory()
