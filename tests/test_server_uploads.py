"""Oversized and lying uploads: answered with the real size, never read past a bound."""

from __future__ import annotations

import asyncio

import pytest

from rembg_async.server import LocalServer, ServerConfig

MIB = 1024 * 1024
PNG_START = b"\x89PNG\r\n\x1a\n"
PART_HEAD = b'--B\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'


async def send_endless_upload(server: LocalServer, *, chunked: bool) -> tuple[bytes, int]:
    """Stream up to 3 GiB of image from a raw socket; return the answer and the bytes sent."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    length = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: 3221225472"
    writer.write(
        b"POST /rmbg HTTP/1.1\r\nHost: local\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\n" + length + b"\r\n\r\n"
    )
    sent = 0

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    async def write_forever() -> None:
        nonlocal sent
        writer.write(frame(PART_HEAD + PNG_START))
        block = bytes(MIB)
        while sent < 3 * 1024 * MIB:
            writer.write(frame(block))
            sent += len(block)
            await writer.drain()

    writing = asyncio.create_task(write_forever())
    answer = b""
    try:
        while chunk := await reader.read(65536):
            answer += chunk
    except ConnectionResetError:
        pass  # the server hangs up once it has answered
    writing.cancel()
    await asyncio.gather(writing, return_exceptions=True)
    writer.close()
    return answer, sent


@pytest.fixture
def small_drain_server(rembg_server_factory) -> LocalServer:
    """A server that stops reading an oversized image at 60 MiB."""
    return rembg_server_factory(ServerConfig(drain_limit=60 * MIB))


async def test_declared_huge_body_is_refused_before_reading(
    small_drain_server: LocalServer,
) -> None:
    """A 3 GiB Content-Length is answered at once with its size, having read almost nothing."""
    answer, sent = await send_endless_upload(small_drain_server, chunked=False)
    assert answer.startswith(b"HTTP/1.1 400")
    message = b"File size (3072.0 MB) exceeds the maximum allowed size of 50 MB."
    assert answer.endswith(b'{"error": "' + message + b'", "status": 400}')
    assert sent < 60 * MIB  # only what socket buffers hold before flow control stops the sender


async def test_endless_chunked_body_is_cut_off_at_the_drain_limit(
    small_drain_server: LocalServer,
) -> None:
    """With no length to go by, the server reads up to its drain limit, answers and hangs up."""
    answer, sent = await send_endless_upload(small_drain_server, chunked=True)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"exceeds the maximum allowed size of 50 MB." in answer
    assert b"Connection: close" in answer
    assert sent < 120 * MIB
