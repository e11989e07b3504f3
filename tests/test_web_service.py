"""The example web services proxy uploads to the API and the cut-outs back, streaming both ways."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator

import aiohttp
import pytest
from _web_services import EXAMPLES, SERVICES, Service, running
from PIL import Image

from rembg_async import AsyncRembg
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer

UPLOADS = 20


@pytest.fixture(scope="module", params=SERVICES, ids=["aiohttp", "fastapi"])
def service(
    request: pytest.FixtureRequest,
    unlimited_server: LocalServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """One example service per module, talking to the local server."""
    temp = tmp_path_factory.mktemp("service-tmp")
    with running(request.param, unlimited_server.url, TEST_API_KEY, temp) as started:
        yield started


def four_megabytes() -> bytes:
    """A 4 MB BMP image (uncompressed: cheap for the server to decode)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1160, 1160), (250, 250, 250)).save(buffer, "BMP")
    assert buffer.tell() > 4_000_000
    return buffer.getvalue()


async def test_twenty_concurrent_4_mb_uploads_stay_flat_and_leave_nothing(
    service: Service,
) -> None:
    """20 uploads of 4 MB at once: each answered with a PNG, the service's peak memory grows far
    less than what was sent (80 MB), and no temporary file is left, on disk or open."""
    image = four_megabytes()
    before, held_before = service.peak_rss_mib(), service.deleted_open_files()
    async with aiohttp.ClientSession() as session:

        async def one() -> bytes:
            body = io.BytesIO(image)  # a file-like body: aiohttp sends it in pieces
            async with session.post(f"{service.url}remove", data=body) as response:
                assert response.status == 200, await response.text()
                assert response.content_type == "image/png"
                return await response.read()

        answers = await asyncio.gather(*(one() for _ in range(UPLOADS)))
    assert all(answer.startswith(b"\x89PNG") for answer in answers)
    growth = service.peak_rss_mib() - before
    assert growth < 40, f"the service grew by {growth:.0f} MiB for {UPLOADS} × 4 MB"
    # A service may close its side of a call just after the client has read the last byte it
    # announced (Content-Length): wait for that, up to a generous bound, then compare.
    deadline = time.monotonic() + 30
    while service.deleted_open_files() != held_before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert service.deleted_open_files() == held_before  # (the runtime's own, if any)
    assert list(service.temp.iterdir()) == []


async def test_a_refused_image_is_answered_with_the_api_message(service: Service) -> None:
    """Not an image: the API's status and message come back as JSON, nothing is streamed."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{service.url}remove", data=b"not an image") as response,
    ):
        assert response.status == 400
        assert "valid image" in (await response.json())["error"]


async def test_a_form_upload_gets_the_whole_cut_out(
    service: Service, unlimited_server: LocalServer
) -> None:
    """POST /cut-out with a form's file (FastAPI: UploadFile in, StreamingResponse out, under
    uvicorn) answers the whole image the API makes of it, not its first bytes."""
    image = (EXAMPLES / "images" / "mug.jpg").read_bytes()
    async with AsyncRembg(TEST_API_KEY, base_url=unlimited_server.url) as client:
        expected = (await client.remove(image, {"format": "png"}, return_bytes=True)).data
    form = aiohttp.FormData()
    form.add_field("image", image, filename="mug.jpg", content_type="image/jpeg")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{service.url}cut-out", data=form) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.content_type == "image/png"
        received = await response.read()
    assert len(received) == len(expected) > 1000
    assert received == expected
    assert Image.open(io.BytesIO(received)).size == Image.open(io.BytesIO(image)).size


def test_the_page_is_served(service: Service) -> None:
    """GET / is the demo page, which posts to remove."""
    import urllib.request

    with urllib.request.urlopen(service.url, timeout=10) as page:  # loopback
        text = page.read().decode()
    assert 'request.open("POST", "remove")' in text
