"""Observability: extra headers per client and per call, and a DEBUG line per request."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from rembg_async import APIConnectionError, AsyncRembg, BadRequestError, RetryPolicy
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer
from tests.conftest import CaptureServer, make_image

PNG = make_image((64, 48), "PNG")
KEY = "secret-key-1234"


async def test_extra_headers_per_client_and_per_call(capture_server: CaptureServer) -> None:
    """The client's extra headers go on every request, a call's on its own, the key stays."""
    client = AsyncRembg(
        KEY, base_url=capture_server.url, extra_headers={"X-Team": "a", "X-Trace": "client"}
    )
    async with client:
        await client.remove(PNG, return_base64=True)
        await client.remove(
            PNG, return_base64=True, extra_headers={"X-Trace": "call", "x-api-key": "other"}
        )
        async with client.stream(PNG, extra_headers={"X-Trace": "stream"}) as result:
            await result.read()
    first, second, third = (received.headers for received in capture_server.received)
    assert (first["X-Team"], first["X-Trace"]) == ("a", "client")
    assert (second["X-Team"], second["X-Trace"]) == ("a", "call")
    assert third["X-Trace"] == "stream"
    assert {first["x-api-key"], second["x-api-key"], third["x-api-key"]} == {KEY}


async def test_debug_line_per_request_without_the_key(
    rembg_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A remove call, a stream and a usage call each log one DEBUG line with the method, host,
    path, status, duration and attempt; the key appears in none."""
    caplog.set_level(logging.DEBUG, logger="rembg_async")
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        await client.remove(PNG, return_base64=True)
        async with client.stream(PNG) as result:
            await result.read()
        await client.membership_usage()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("rembg_async")]
    host = rembg_server.url.removeprefix("http://")
    line = re.compile(
        rf"^(?P<method>POST|GET) http://{re.escape(host)}(?P<path>/\S*) (?P<status>\d{{3}}) "
        r"in (?P<seconds>\d+\.\d{3}) s \(attempt (?P<attempt>\d+)"
    )
    found = [match.groupdict() for text in lines if (match := line.match(text))]
    assert [(f["method"], f["path"], f["status"], f["attempt"]) for f in found] == [
        ("POST", "/rmbg", "200", "1"),
        ("POST", "/rmbg", "200", "1"),
        ("GET", "/api/membership-usage", "200", "1"),
    ]
    assert all(float(f["seconds"]) < 60 for f in found)
    posts = [text for text in lines if text.startswith("POST")]
    assert all(re.search(r"attempt 1, a body of \d+ bytes, request id ", text) for text in posts)
    assert not [text for text in lines if TEST_API_KEY in text]


async def test_a_request_without_an_answer_is_logged_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request that gets no answer logs how it failed, per attempt, without the key."""
    caplog.set_level(logging.DEBUG, logger="rembg_async")
    retry = RetryPolicy(max_retries=1, wait=False)
    async with AsyncRembg(KEY, base_url="http://127.0.0.1:9", retry=retry) as client:
        with pytest.raises(APIConnectionError):
            await client.membership_usage()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert [text.split(" in ")[0] for text in lines] == [
        "GET http://127.0.0.1:9/api/membership-usage failed (APIConnectionError)"
    ] * 2
    assert ["attempt 1" in lines[0], "attempt 2" in lines[1]] == [True, True]
    assert not [text for text in lines if KEY in text]


@pytest.fixture
async def id_server() -> AsyncIterator[str]:
    """A server that sends x-request-id: 400 to the first request, the image to the next."""
    seen: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append(1)
        headers = {"X-Request-Id": f"req-{len(seen)}"}
        if len(seen) == 1:
            return web.json_response({"error": "busy"}, status=400, headers=headers)
        return web.Response(body=PNG, content_type="image/png", headers=headers)

    app = web.Application()
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_request_id_on_errors_and_streamed_results(id_server: str) -> None:
    """The server's x-request-id is on the error it answered and on a streamed result."""
    async with AsyncRembg(KEY, base_url=id_server) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.remove(PNG)
        async with client.stream(PNG) as result:
            await result.read()
    assert caught.value.request_id == "req-1"
    assert result.request_id == "req-2"


async def test_request_id_on_every_kind_of_result(id_server: str) -> None:
    """A file, a data URL and bytes in memory each carry the id of the request that made them."""
    async with AsyncRembg(KEY, base_url=id_server) as client:
        with pytest.raises(BadRequestError):
            await client.remove(PNG)
        async with await client.remove(PNG) as image:
            assert image.request_id == "req-2"
        encoded = await client.remove(PNG, return_base64=True)
        in_memory = await client.remove(PNG, return_bytes=True)
    assert (encoded.request_id, in_memory.request_id) == ("req-3", "req-4")


async def test_retries_and_give_ups_are_logged(
    id_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry logs INFO, giving up after retries WARNING; a 400 (no retry) says nothing."""
    caplog.set_level(logging.INFO, logger="rembg_async")
    url = id_server
    async with AsyncRembg(KEY, base_url=url, retry=RetryPolicy(wait=False)) as client:
        with pytest.raises(BadRequestError):
            await client.remove(PNG)  # a 400: not retried, so nothing is said
        assert not [r for r in caplog.records if "attempt" in r.getMessage()]
    async with AsyncRembg(KEY, base_url="http://127.0.0.1:9", retry=RetryPolicy(wait=False)) as c:
        with pytest.raises(APIConnectionError):
            await c.remove(PNG)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels].count("INFO") == 2
    assert any(level == "WARNING" and "giving up after 3 attempts" in m for level, m in levels)
