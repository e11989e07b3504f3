"""Stream outputs: ``client.stream()`` hands the cut-out over as it arrives, retried until then."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from rembg_async import (
    APIConnectionError,
    AsyncRembg,
    ImageBytes,
    ProgressEvent,
    RetryPolicy,
    StreamedImage,
)
from tests.conftest import LocalServer, make_image

PNG = make_image((64, 48), "PNG")
ANSWER = make_image((300, 200), "PNG")


async def test_stream_gives_type_size_and_the_same_bytes_as_remove(
    unlimited_server: LocalServer,
) -> None:
    """stream() hands over the real type, the size, and the bytes remove() would have saved."""
    events: list[ProgressEvent] = []
    async with AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        saved = await client.remove(PNG, {"format": "webp"})
        expected = saved.output_image_path.read_bytes()
        await saved.cleanup()
        async with client.stream(PNG, {"format": "webp"}, on_download_progress=events.append) as r:
            assert isinstance(r, StreamedImage)
            assert r.content_type == "image/webp"
            chunks = [chunk async for chunk in r.iter_chunks(100)]
    assert r.size == len(expected)
    assert b"".join(chunks) == expected
    assert max(len(chunk) for chunk in chunks) <= 100
    assert events[-1].loaded == events[-1].total == len(expected)


async def test_stream_reads_only_once(unlimited_server: LocalServer) -> None:
    """A streamed image read a second time is an error, not an empty image."""
    client = AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url)
    async with client, client.stream(PNG) as result:
        assert (await result.read()).startswith(b"RIFF")
        with pytest.raises(RuntimeError, match="once"):
            await result.read()


async def test_reading_after_the_block_says_why_and_what_to_do(
    unlimited_server: LocalServer,
) -> None:
    """Iterating a streamed image after its block ended (a StreamingResponse made inside it)
    raises a RuntimeError naming the cause and the fix, not 32 bytes and "Connection closed";
    so does going on with an iteration begun inside the block."""
    client = AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url)
    async with client:
        async with client.stream(ANSWER) as result:
            chunks = result.iter_chunks()  # what StreamingResponse(result.iter_chunks()) holds
        with pytest.raises(RuntimeError, match=r"block ended.*dependency with 'yield'") as caught:
            await anext(chunks)
        assert "services guide" in str(caught.value)
        with pytest.raises(RuntimeError, match="block ended"):
            await result.read()
        async with client.stream(ANSWER) as begun:
            partial = begun.iter_chunks(16)
            assert len(await anext(partial)) == 16
        with pytest.raises(RuntimeError, match="block ended"):
            async for _ in partial:
                pass


class Flaky:
    """A server whose first answers fail in a chosen way, the next ones succeed."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.requests = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer 503, or cut after the headers or after some bytes, then the image."""
        await request.read()
        self.requests += 1
        failure = self.failures.pop(0) if self.failures else None
        if failure == "503":
            return web.Response(status=503, headers={"Retry-After": "0"})
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(ANSWER)
        await response.prepare(request)
        if failure == "cut-before-body":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(ANSWER[: len(ANSWER) // 2])
        if failure == "cut-in-body":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(ANSWER[len(ANSWER) // 2 :])
        await response.write_eof()
        return response


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, Flaky]]:
    """A `Flaky` server on loopback."""
    server_state = Flaky([])
    app = web.Application()
    app.router.add_post("/rmbg", server_state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), server_state
    finally:
        await server.close()


@pytest.mark.parametrize("failure", ["503", "cut-before-body"])
async def test_stream_is_retried_before_its_first_byte(
    flaky: tuple[str, Flaky], failure: str
) -> None:
    """A 503, or a connection cut before any body byte, is retried: the caller sees one image."""
    url, state = flaky
    state.failures = [failure]
    client = AsyncRembg("k", base_url=url, retry=RetryPolicy(wait=False))
    async with client, client.stream(PNG) as result:
        assert await result.read() == ANSWER
    assert state.requests == 2


async def test_stream_failure_after_bytes_is_raised(flaky: tuple[str, Flaky]) -> None:
    """Once bytes were handed over, a cut connection is raised as our error, not retried."""
    url, state = flaky
    state.failures = ["cut-in-body"]

    async def read_all() -> None:
        async with client.stream(PNG) as result:
            async for _ in result.iter_chunks(1024):
                pass

    client = AsyncRembg("k", base_url=url, retry=RetryPolicy(wait=False))
    async with client:
        with pytest.raises(APIConnectionError):
            await read_all()
    assert state.requests == 1


async def test_stream_forwards_through_an_aiohttp_service(unlimited_server: LocalServer) -> None:
    """A service streams the upload in and the cut-out out (StreamResponse), with no file."""
    client = AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url)

    async def cut_out(request: web.Request) -> web.StreamResponse:
        async with client.stream(request.content, size=request.content_length) as result:
            response = web.StreamResponse(headers={"Content-Type": result.content_type})
            await response.prepare(request)
            async for chunk in result.iter_chunks():
                await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=1024)
    app.router.add_post("/cut", cut_out)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with (
            client,
            aiohttp.ClientSession() as session,
            session.post(server.make_url("/cut"), data=PNG) as response,
        ):
            assert response.status == 200
            assert response.content_type == "image/webp"
            body = await response.read()
    finally:
        await server.close()
    assert body.startswith(b"RIFF")
    assert len(body) > 100


async def test_return_bytes_gives_the_image_in_memory(unlimited_server: LocalServer) -> None:
    """return_bytes=True: the bytes remove() would have saved, with their real type and size,
    and progress as usual; it cannot be combined with base64 or an output path."""
    events: list[ProgressEvent] = []
    async with AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        async with await client.remove(PNG, {"format": "webp"}) as saved:
            expected = saved.output_image_path.read_bytes()
        image = await client.remove(
            PNG, {"format": "webp"}, return_bytes=True, on_download_progress=events.append
        )
        with pytest.raises(ValueError, match="return_bytes"):
            await client.remove(PNG, return_bytes=True, return_base64=True)  # type: ignore[call-overload]
    assert isinstance(image, ImageBytes)
    assert (image.data, image.content_type, image.size) == (expected, "image/webp", len(expected))
    assert events[-1].loaded == len(expected)
    assert "data=" not in repr(image)  # megabytes never end up in a log line
