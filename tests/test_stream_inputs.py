"""Stream inputs: async iterables and async ``read(n)`` sent as read, checked first, retried."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from rembg_async import AsyncRembg, InvalidInputError, RetryPolicy
from tests.conftest import CaptureServer, make_image

PNG = make_image((64, 48), "PNG")


async def chunked(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    """``data`` as an async iterable of small chunks."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class Readable:
    """An object with only an async ``read(n)``, like Starlette's ``UploadFile``."""

    def __init__(self, data: bytes, filename: str = "upload.bin") -> None:
        self._file = io.BytesIO(data)
        self.filename = filename
        self.reads = 0

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes."""
        self.reads += 1
        return self._file.read(n)


async def test_async_iterable_is_sent_chunked_and_whole(capture_server: CaptureServer) -> None:
    """A long async iterable without size= is sent chunked, whole, under its real type."""
    big = PNG + b"\2" * 300_000
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        result = await client.remove(chunked(big))
        await result.cleanup()
    (received,) = capture_server.received
    assert received.headers.get("Transfer-Encoding") == "chunked"
    assert received.parts["image"] == ("image.png", "image/png", big)


async def test_short_stream_gets_content_length(capture_server: CaptureServer) -> None:
    """A stream that ends within its first bytes read has a known size: Content-Length."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        result = await client.remove(chunked(PNG))
        await result.cleanup()
    (received,) = capture_server.received
    assert "Transfer-Encoding" not in received.headers
    assert received.parts["image"][2] == PNG


async def test_size_gives_content_length(capture_server: CaptureServer) -> None:
    """With size= the request has an exact Content-Length and no chunked encoding."""
    big = PNG + b"\0" * 200_000  # longer than the head read, so size= is what announces it
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        result = await client.remove(Readable(big), size=len(big))
        await result.cleanup()
    (received,) = capture_server.received
    assert "Transfer-Encoding" not in received.headers
    assert int(received.headers["Content-Length"]) > len(big)
    assert received.parts["image"] == ("upload.png", "image/png", big)


async def test_async_read_object_is_read_in_chunks(capture_server: CaptureServer) -> None:
    """An object with an async read(n) is read piece by piece, not whole."""
    big = PNG + b"\0" * 1_000_000
    readable = Readable(big)
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        result = await client.remove(readable)
        await result.cleanup()
    assert readable.reads > 3
    assert capture_server.received[0].parts["image"][2] == big


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not an image at all" * 10, "signature"),
    ],
)
async def test_first_bytes_are_checked_before_sending(
    capture_server: CaptureServer, data: bytes, message: str
) -> None:
    """An empty stream or one that is no image is refused before anything is sent."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.remove(chunked(data))
    assert message in str(caught.value).lower()
    assert capture_server.received == []


async def test_stream_shorter_than_size_fails(capture_server: CaptureServer) -> None:
    """A stream that ends before its size= fails with InvalidInputError, not a server timeout."""
    big = PNG + b"\0" * 100_000
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(InvalidInputError, match="ended after"):
            await client.remove(chunked(big), size=len(big) + 10)


async def test_size_only_for_streams() -> None:
    """size= with a non-stream input is a TypeError."""
    async with AsyncRembg("k", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(TypeError, match="size="):
            await client.remove(PNG, size=len(PNG))


@pytest.fixture
async def flaky_once() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads each upload whole, answers the first with 503, then the image."""
    bodies: list[bytes] = []
    answer = make_image((8, 8), "PNG")

    async def handler(request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()
        assert isinstance(part, aiohttp.BodyPartReader)
        bodies.append(bytes(await part.read()))
        if len(bodies) == 1:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(body=answer, content_type="image/png")

    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), bodies
    finally:
        await server.close()


def _open_temporary_files() -> int:
    """How many open file descriptors of this process point into the temporary folder."""
    folder = tempfile.gettempdir()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(folder) and "(deleted)" in target
    return count


async def test_stream_is_resent_whole_after_503(
    flaky_once: tuple[str, list[bytes]], private_tmp: Path
) -> None:
    """A stream input retried after a 503 sends the same bytes again; no spool file is left."""
    url, bodies = flaky_once
    big = PNG + os.urandom(2_000_000)
    before = _open_temporary_files()
    async with AsyncRembg("k", base_url=url, retry=RetryPolicy(wait=False)) as client:
        result = await client.remove(chunked(big, 65536))
        await result.cleanup()
    assert bodies == [big, big]
    assert _open_temporary_files() == before
    assert list(private_tmp.iterdir()) == []


async def test_aiohttp_request_body_is_proxied(capture_server: CaptureServer) -> None:
    """A service passes an aiohttp request's StreamReader and multipart part straight on."""
    big = PNG + b"\1" * 300_000

    async def proxy(request: web.Request) -> web.Response:
        async with AsyncRembg("k", base_url=capture_server.url) as client:
            if request.path == "/raw":
                result = await client.remove(request.content, size=request.content_length)
            else:
                part = await (await request.multipart()).next()
                assert isinstance(part, aiohttp.BodyPartReader)
                result = await client.remove(part)
            await result.cleanup()
        return web.Response(body=b"ok")

    app = web.Application(client_max_size=1024)  # the service never reads a body whole
    app.router.add_post("/raw", proxy)
    app.router.add_post("/form", proxy)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(server.make_url("/raw"), data=big) as response:
                assert response.status == 200
            form = aiohttp.FormData()
            form.add_field("file", big, filename="photo.png", content_type="image/png")
            async with session.post(server.make_url("/form"), data=form) as response:
                assert response.status == 200
    finally:
        await server.close()
    assert [r.parts["image"][2] for r in capture_server.received] == [big, big]
    assert capture_server.received[1].parts["image"][0] == "photo.png"


async def test_memory_stays_flat_for_a_large_stream(private_tmp: Path) -> None:
    """A 40 MB stream goes through with a few MB of Python memory at most, spool deleted."""
    import tracemalloc

    answer = make_image((8, 8), "PNG")
    received = 0

    async def sink(request: web.Request) -> web.Response:
        nonlocal received
        async for chunk in request.content.iter_chunked(1 << 20):
            received += len(chunk)
        return web.Response(body=answer, content_type="image/png")

    app = web.Application()
    app.router.add_post("/rmbg", sink)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    block = b"\0" * (1 << 20)

    async def forty_megabytes() -> AsyncIterator[bytes]:
        yield PNG
        for _ in range(40):
            yield block

    try:
        url = str(server.make_url("")).rstrip("/")
        async with AsyncRembg("k", base_url=url) as client:
            tracemalloc.start()
            try:
                result = await client.remove(forty_megabytes(), return_base64=True)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        await server.close()
    assert result.size > 0
    assert received > 40 << 20
    assert peak < 12 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert list(private_tmp.iterdir()) == []


async def test_a_starlette_upload_file_is_a_stream_input(capture_server: CaptureServer) -> None:
    """Starlette's (and so FastAPI's) UploadFile, as a service receives it, is sent as it is."""
    from starlette.datastructures import UploadFile

    with tempfile.SpooledTemporaryFile() as spooled:  # what Starlette's form parser makes
        spooled.write(PNG)
        spooled.seek(0)
        upload = UploadFile(spooled, size=len(PNG), filename="cat.png")
        async with AsyncRembg("k", base_url=capture_server.url) as client:
            result = await client.remove(upload, size=upload.size)
            await result.cleanup()
    (received,) = capture_server.received
    assert received.headers.get("Content-Length") is not None
    assert received.parts["image"] == ("cat.png", "image/png", PNG)
