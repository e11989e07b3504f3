"""The ``rembg_server`` pytest fixture: a real local RemBG server on an ephemeral port.

Registered as a pytest plugin by the package, so any project that installs
``rembg-async[server]`` can write:

    def test_my_upload(rembg_server):
        response = requests.post(f"{rembg_server.url}/rmbg",
                                 headers={"x-api-key": rembg_server.api_key}, files=...)

Each test gets a fresh server (accounts, credits and limits start anew). For other settings,
use ``rembg_server_factory(ServerConfig(...))``.

The fixtures are defined in the top-level module ``pytest_rembg_async``, which pytest loads
without importing this package (so merely having rembg-async installed costs a pytest run
nothing); this module is their documented home and re-exports them.
"""

from __future__ import annotations

from pytest_rembg_async import TEST_API_KEY, ServerFactory, rembg_server, rembg_server_factory

__all__ = ["TEST_API_KEY", "ServerFactory", "rembg_server", "rembg_server_factory"]
