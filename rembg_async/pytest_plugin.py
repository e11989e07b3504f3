"""The ``rembg_server`` pytest fixture: a real local RemBG server on an ephemeral port.

Registered as a pytest plugin by the package, so any project that installs
``rembg-async[server]`` can write::

    def test_my_upload(rembg_server):
        response = requests.post(f"{rembg_server.url}/rmbg",
                                 headers={"x-api-key": rembg_server.api_key}, files=...)

Each test gets a fresh server (accounts, credits and limits start anew). For other settings,
use ``rembg_server_factory(ServerConfig(...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import attrs
import pytest

if TYPE_CHECKING:
    from .server import LocalServer, ServerConfig

#: The API key of the account every ``rembg_server`` has.
TEST_API_KEY = "test-key-rembg-async"

ServerFactory = Callable[..., "LocalServer"]


@pytest.fixture
def rembg_server_factory() -> Iterator[ServerFactory]:
    """Start local servers with any :class:`ServerConfig`; all are stopped after the test.

    A verified account with :data:`TEST_API_KEY` comes first, so it is the server's ``api_key``.
    """
    from .server import Account, LocalServer, ServerConfig

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
    """A running local server with default settings and the :data:`TEST_API_KEY` account."""
    return rembg_server_factory()
