"""The FastAPI twin of ``web_service.py``: the same page and ``POST /remove``, streaming both ways,
and ``POST /cut-out`` for a form upload (``UploadFile``, field ``image``).

Run: ``python examples/web_service_fastapi.py`` (``--port``, ``--base-url``, ``--api-key`` as
there); it needs ``pip install 'rembg-async[examples]'`` (FastAPI, uvicorn, python-multipart).

The cut-out is sent with a ``StreamingResponse``, which is read after the handler has returned:
so the ``async with client.stream(...)`` block is entered in a dependency with ``yield``, which
FastAPI (0.118 and later) ends once the response is sent. A block inside the handler would end
before the response is read, and reading it then raises ``RuntimeError`` saying so.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from web_service import PAGE, arguments, status_for

from rembg_async import AsyncRembg, RembgError, RemoveOptions, StreamedImage

PNG = RemoveOptions(format="png")


async def cut_out_of_body(request: Request) -> AsyncIterator[StreamedImage]:
    """The cut-out of the request's body, streamed into the API as it arrives."""
    client: AsyncRembg = request.state.client
    length = request.headers.get("content-length")
    size = int(length) if length else None
    async with client.stream(request.stream(), PNG, size=size) as result:
        yield result  # the block lasts until the response is sent


async def cut_out_of_upload(request: Request, image: UploadFile) -> AsyncIterator[StreamedImage]:
    """The cut-out of a form's ``image`` file (FastAPI has spooled it to a temporary file)."""
    client: AsyncRembg = request.state.client
    async with client.stream(image, PNG, size=image.size) as result:
        yield result


def streamed(result: StreamedImage) -> StreamingResponse:
    """The cut-out as it arrives, with its real type and, when the API gives it, its length."""
    headers = {"Content-Length": str(result.size)} if result.size is not None else {}
    return StreamingResponse(result.iter_chunks(), media_type=result.content_type, headers=headers)


def create_app(*, api_key: str | None, base_url: str | None) -> FastAPI:
    """The service, talking to the RemBG API at ``base_url`` (None: the hosted one)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncRembg(api_key, base_url=base_url, max_concurrency=8) as client:
            yield {"client": client}  # request.state.client

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(RembgError)
    async def refused(request: Request, error: RembgError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=status_for(error))

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/remove")
    async def remove(
        result: Annotated[StreamedImage, Depends(cut_out_of_body)],
    ) -> StreamingResponse:
        return streamed(result)

    @app.post("/cut-out")
    async def cut_out(
        result: Annotated[StreamedImage, Depends(cut_out_of_upload)],
    ) -> StreamingResponse:
        return streamed(result)

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
