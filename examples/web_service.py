"""An aiohttp web service that removes backgrounds, streaming both ways.

Run: ``python examples/web_service.py`` and open http://127.0.0.1:8080 (``--port`` to change it).
Without ``--base-url`` it starts the embedded local server; with ``--base-url`` and an API key
(``--api-key`` or ``REMBG_API_KEY``) it talks to that API instead.

- ``GET /``: the page (``web_page.html``): choose or drop an image, watch it go up, the API
  work, and the cut-out come down; a second image starts afresh.
- ``POST /remove`` with the image as the request body: the body is streamed into the API as it
  arrives (never held whole), and the cut-out is streamed back as the API sends it, with its
  type and, when the API gives it, its length. A failure is a JSON ``{"error"}`` with the API's
  status (or 502 when the API cannot be reached).
- ``POST /cut-out`` with a form whose ``image`` field is the file: the same, for a form upload.

The FastAPI twin is ``web_service_fastapi.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from rembg_async import APIConnectionError, APIStatusError, AsyncRembg, RembgError, RemoveOptions

PAGE = (Path(__file__).parent / "web_page.html").read_text(encoding="utf-8")
CLIENT = web.AppKey("client", AsyncRembg)


async def remove(request: web.Request) -> web.StreamResponse:
    """Stream the request's body into the API and the cut-out back."""
    return await forward(request, request.content, request.content_length)


async def cut_out(request: web.Request) -> web.StreamResponse:
    """The same for a form upload: its ``image`` field, streamed as it arrives."""
    form = await request.multipart()
    part = await form.next()
    if not isinstance(part, BodyPartReader) or part.name != "image":
        return web.json_response({"error": "send the image as the form's 'image'"}, status=400)
    return await forward(request, part, None)


async def forward(request: web.Request, body: Any, size: int | None) -> web.StreamResponse:
    """Stream ``body`` into the API and the cut-out back, as it arrives."""
    client = request.app[CLIENT]
    response = web.StreamResponse()
    try:
        async with client.stream(body, RemoveOptions(format="png"), size=size) as result:
            response.content_type = result.content_type
            if result.size is not None:
                response.content_length = result.size
            await response.prepare(request)
            async for chunk in result.iter_chunks():
                await response.write(chunk)
    except RembgError as error:
        if response.prepared:  # half sent: only cutting the connection can tell the browser
            raise
        return web.json_response({"error": str(error)}, status=status_for(error))
    await response.write_eof()
    return response


def status_for(error: RembgError) -> int:
    """The status to answer with: the API's own, else 502 (it could not be reached) or 400."""
    if isinstance(error, APIStatusError):
        return error.status_code
    return 502 if isinstance(error, APIConnectionError) else 400


async def page(request: web.Request) -> web.Response:
    """The page that drives it all."""
    return web.Response(text=PAGE, content_type="text/html")


def create_app(*, api_key: str | None, base_url: str | None) -> web.Application:
    """The service, talking to the RemBG API at ``base_url`` (None: the hosted one)."""

    async def client(app: web.Application) -> AsyncIterator[None]:
        async with AsyncRembg(api_key, base_url=base_url, max_concurrency=8) as rembg:
            app[CLIENT] = rembg
            yield

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/", page)
    app.router.add_post("/remove", remove)
    app.router.add_post("/cut-out", cut_out)
    return app


def arguments() -> argparse.Namespace:
    """``--port``, ``--host``, ``--base-url``, ``--api-key``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--base-url", help="the RemBG API (default: an embedded local server)")
    parser.add_argument("--api-key", help="the API key (default: $REMBG_API_KEY)")
    return parser.parse_args()


def main() -> None:
    """Serve until interrupted."""
    args = arguments()
    if args.base_url is not None:
        app = create_app(api_key=args.api_key, base_url=args.base_url)
        web.run_app(app, host=args.host, port=args.port)
        return
    from rembg_async.server import Account, LocalServer, ServerConfig

    with LocalServer(ServerConfig(accounts=[Account(api_key="demo")])) as server:
        app = create_app(api_key="demo", base_url=server.url)
        web.run_app(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
