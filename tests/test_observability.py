"""Observability: extra headers per client and per call, and a DEBUG line per request."""

from __future__ import annotations

import logging

import pytest

from rembg_async import AsyncRembg
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
    capture_server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request logs method, host, size, status, duration and attempt at DEBUG; no key."""
    caplog.set_level(logging.DEBUG, logger="rembg_async")
    async with AsyncRembg(KEY, base_url=capture_server.url) as client:
        await client.remove(PNG, return_base64=True)
        async with client.stream(PNG) as result:
            await result.read()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("rembg_async")]
    requests = [line for line in lines if line.startswith("POST 127.0.0.1")]
    assert len(requests) == 2
    assert all(" 200 in " in line and "(attempt 1" in line for line in requests)
    assert all("bytes sent" in line for line in requests)
    assert not any(KEY in line for line in lines)
