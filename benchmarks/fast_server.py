"""A server that only drains the upload and answers fixed bytes, so that clients are measured.

Run: ``python benchmarks/fast_server.py --answer-bytes 209715`` (prints its URL).
The answer is a PNG signature followed by zeros, with a Content-Length.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from rembg_async.server._runner import make_runner, url_of

DRAIN_CHUNK = 256 * 1024


def create_app(answer_bytes: int) -> web.Application:
    """The app: POST /rmbg drains the body and answers ``answer_bytes`` bytes."""
    answer = b"\x89PNG\r\n\x1a\n" + bytes(max(0, answer_bytes - 8))

    async def rmbg(request: web.Request) -> web.Response:
        while await request.content.read(DRAIN_CHUNK):
            pass
        return web.Response(body=answer, content_type="image/png")

    app = web.Application()
    app.router.add_post("/rmbg", rmbg)
    return app


async def serve(answer_bytes: int) -> None:
    """Serve on a free port of 127.0.0.1 until killed."""
    runner = make_runner(create_app(answer_bytes))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(url_of(runner), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answer-bytes", type=int, default=200 * 1024)
    asyncio.run(serve(parser.parse_args().answer_bytes))
