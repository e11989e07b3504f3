"""The client's states, its configuration from the environment, and where the key may go."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from conftest import make_image

from rembg_async import AsyncRembg
from rembg_async.server import LocalServer


async def test_closed_client_refuses_work(rembg_server: LocalServer) -> None:
    """After aclose() (safe twice) the client cannot be used again."""
    client = AsyncRembg("k", base_url=rembg_server.url)
    async with client:
        pass
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.remove(make_image())


async def test_client_opens_on_first_use(rembg_server: LocalServer) -> None:
    """Without async with, the first call opens the client; aclose() closes it."""
    client = AsyncRembg(rembg_server.api_key, base_url=rembg_server.url)
    await (await client.remove(make_image())).cleanup()
    await client.aclose()


async def test_external_session_is_left_open(rembg_server: LocalServer) -> None:
    """A session the user passes is used, and still open after the client closes."""
    async with aiohttp.ClientSession() as session:
        async with AsyncRembg(
            rembg_server.api_key, base_url=rembg_server.url, session=session
        ) as client:
            await (await client.remove(make_image())).cleanup()
        assert not session.closed


async def test_unclosed_client_warns(rembg_server: LocalServer) -> None:
    """A client that opened its own session and was never closed gives a ResourceWarning."""
    client = AsyncRembg(rembg_server.api_key, base_url=rembg_server.url)
    await (await client.remove(make_image())).cleanup()
    session = client._exchange.session
    with pytest.warns(ResourceWarning, match="never closed"):
        del client  # the last reference: CPython collects it here
    assert session is not None
    await session.close()


async def test_environment_configuration(
    rembg_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REMBG_API_KEY and REMBG_BASE_URL configure a client made with no arguments."""
    monkeypatch.setenv("REMBG_API_KEY", rembg_server.api_key or "")
    monkeypatch.setenv("REMBG_BASE_URL", rembg_server.url)
    async with AsyncRembg() as client:
        await (await client.remove(make_image())).cleanup()
        assert (await client.membership_usage()).api_usage == 1  # the key was used


async def test_anonymous_client_logs_a_warning(
    rembg_server: LocalServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no key anywhere, the client says calls are anonymous, and they work."""
    monkeypatch.delenv("REMBG_API_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="rembg_async"):
        async with AsyncRembg(base_url=rembg_server.url) as client:
            await (await client.remove(make_image())).cleanup()
    assert "anonymous" in caplog.text


@pytest.mark.parametrize(
    "url", ["http://api.example.com", "http://10.0.0.1:8000", "ftp://api.rembg.com", "not a url"]
)
def test_insecure_or_bad_urls_are_refused(url: str) -> None:
    """Plain http to a host that is not loopback (or a non-http URL) is refused outright."""
    with pytest.raises(ValueError, match="http"):
        AsyncRembg("k", base_url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1", "https://x.test"]
)
def test_loopback_and_https_are_allowed(url: str) -> None:
    """Loopback over http, and any https host, are fine (nothing is sent here)."""
    AsyncRembg("k", base_url=url)


def test_insecure_http_can_be_allowed_explicitly() -> None:
    """allow_insecure_http opts in for a trusted network."""
    AsyncRembg("k", base_url="http://api.internal", allow_insecure_http=True)


async def test_redirects_are_not_followed(rembg_server_factory) -> None:
    """A redirect is never followed with the key: it is an error the caller sees."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/steal")

    app = web.Application()
    app.router.add_post("/rmbg", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with AsyncRembg("k", base_url=str(server.make_url("")).rstrip("/")) as client:
            from rembg_async import APIStatusError

            with pytest.raises(APIStatusError) as caught:
                await client.remove(make_image())
        assert caught.value.status == 302
    finally:
        await server.close()
