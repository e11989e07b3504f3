"""The FastAPI twin of ``web_service.py``: the same page and ``POST /remove``, streaming both ways.

Run: ``python examples/web_service_fastapi.py`` (``--port``, ``--base-url``, ``--api-key`` as
there); it needs ``pip install fastapi uvicorn``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from web_service import PAGE, arguments, status_for

from rembg_async import AsyncRembg, RembgError, RemoveOptions


def create_app(*, api_key: str | None, base_url: str | None) -> FastAPI:
    """The service, talking to the RemBG API at ``base_url`` (None: the hosted one)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncRembg(api_key, base_url=base_url, max_concurrency=8) as client:
            yield {"client": client}

    app = FastAPI(lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/remove")
    async def remove(request: Request) -> Response:
        client: AsyncRembg = request.state.client
        length = request.headers.get("content-length")
        held = contextlib.AsyncExitStack()  # the API's answer stays open while it is forwarded
        try:
            result = await held.enter_async_context(
                client.stream(
                    request.stream(),
                    RemoveOptions(format="png"),
                    size=int(length) if length else None,
                )
            )
        except RembgError as error:
            await held.aclose()
            return JSONResponse({"error": str(error)}, status_code=status_for(error))

        async def body() -> AsyncIterator[bytes]:
            async with held:
                async for chunk in result.iter_chunks():
                    yield chunk

        headers = {"Content-Length": str(result.size)} if result.size is not None else {}
        return StreamingResponse(body(), media_type=result.content_type, headers=headers)

    return app


def main() -> None:
    """Serve until interrupted."""
    import uvicorn

    args = arguments()
    if args.base_url is not None:
        app = create_app(api_key=args.api_key, base_url=args.base_url)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return
    from rembg_async.server import Account, LocalServer, ServerConfig

    with LocalServer(ServerConfig(accounts=[Account(api_key="demo")])) as server:
        app = create_app(api_key="demo", base_url=server.url)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
