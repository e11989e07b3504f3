"""Odd answers are handled: forgiven when the image is fine, a clear error when it is not."""

from __future__ import annotations

import tempfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_image

from rembg_async import APIResponseError, AsyncRembg, ProgressEvent, RemoveOptions
from rembg_async.server import FAULT_HEADER, LocalServer, ServerConfig


@pytest.fixture
def server(rembg_server_factory) -> LocalServer:
    """A server with fault injection."""
    return rembg_server_factory(ServerConfig(faults=True))


async def remove_with(
    server: LocalServer, fault: str, **kwargs: object
) -> tuple[object, list[ProgressEvent]]:
    """One removal asking for ``fault``; the result and the download events."""
    events: list[ProgressEvent] = []
    async with (
        aiohttp.ClientSession(headers={FAULT_HEADER: fault}) as session,
        AsyncRembg(server.api_key, base_url=server.url, session=session, max_retries=0) as client,
    ):
        result = await client.remove(
            make_image(),
            RemoveOptions(format="png"),
            on_download_progress=events.append,
            **kwargs,  # type: ignore[arg-type]
        )
    return result, events


async def test_wrong_content_type_over_a_real_image_is_forgiven(
    server: LocalServer, tmp_path: Path
) -> None:
    """The bytes decide: a PNG labelled text/plain is saved as a PNG."""
    result, _ = await remove_with(server, "content_type=text/plain", output_path=tmp_path / "x.png")
    assert result.content_type == "image/png"  # type: ignore[attr-defined]


async def test_gzip_body_is_decoded(server: LocalServer) -> None:
    """A gzip-encoded answer is inflated; its progress has no total (encoded ≠ decoded length)."""
    result, events = await remove_with(server, "gzip", return_base64=True)
    assert result.base64_image.startswith("data:image/png;base64,iVBORw0KGgo")  # type: ignore[attr-defined]
    assert events[-1].total is None
    assert events[-1].loaded == result.size  # type: ignore[attr-defined]


async def test_non_image_answer_is_an_error_and_leaves_no_file(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 200 whose body is no image raises APIResponseError; no file remains."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(APIResponseError, match="no image"):
        await remove_with(server, "garbage")
    assert list(tmp_path.iterdir()) == []


async def test_empty_answer_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200 with an empty body raises APIResponseError, and leaves no file."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    async def empty(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="image/png")

    app = web.Application()
    app.router.add_post("/rmbg", empty)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        url = str(test_server.make_url("")).rstrip("/")
        async with AsyncRembg("k", base_url=url, max_retries=0) as client:
            with pytest.raises(APIResponseError, match="empty"):
                await client.remove(make_image())
    finally:
        await test_server.close()
    assert list(tmp_path.iterdir()) == []
