"""A server that only drains the upload and answers fixed bytes, so that clients are measured.

Run: ``python benchmarks/fast_server.py --answer-bytes 209715`` (prints its URL).
The answer is a PNG signature followed by zeros, with a Content-Length; with ``--valid-png``
a real 1×1 PNG, so that outputs can be checked. ``GET /count`` says how many uploads it
answered (requests paid, as the API would charge them).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import zlib

from aiohttp import web

from rembg_async.server._runner import make_runner, url_of

DRAIN_CHUNK = 256 * 1024


def tiny_png() -> bytes:
    """A valid 1×1 RGBA PNG (transparent), 70 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00\x00\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def create_app(answer_bytes: int, *, valid_png: bool = False) -> web.Application:
    """The app: POST /rmbg drains the body and answers ``answer_bytes`` bytes (or a tiny
    valid PNG); GET /count says how many it answered."""
    answer = tiny_png() if valid_png else b"\x89PNG\r\n\x1a\n" + bytes(max(0, answer_bytes - 8))
    answered = [0]

    async def rmbg(request: web.Request) -> web.Response:
        while await request.content.read(DRAIN_CHUNK):
            pass
        answered[0] += 1
        return web.Response(body=answer, content_type="image/png")

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(answered[0]))

    app = web.Application()
    app.router.add_post("/rmbg", rmbg)
    app.router.add_get("/count", count)
    return app


async def serve(answer_bytes: int, *, valid_png: bool = False) -> None:
    """Serve on a free port of 127.0.0.1 until killed."""
    runner = make_runner(create_app(answer_bytes, valid_png=valid_png))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(url_of(runner), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answer-bytes", type=int, default=200 * 1024)
    parser.add_argument("--valid-png", action="store_true", help="answer a real 1×1 PNG")
    given = parser.parse_args()
    asyncio.run(serve(given.answer_bytes, valid_png=given.valid_png))
