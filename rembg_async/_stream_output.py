"""A cut-out handed over as it arrives (``client.stream()``). Its first bytes are read before
(a failure until then is retried); its connection lives as long as the caller's block, and
reading after it raises `MSG_BLOCK_ENDED`, which says what to do."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from ._download import SNIFF_BYTES, body_length, real_content_type
from ._exceptions import APIResponseError, request_id
from ._progress import ProgressTracker

#: Read at most this much at a time when the caller does not say.
STREAM_CHUNK_BYTES = 64 * 1024

ErrorMapper = Callable[[], contextlib.AbstractContextManager[None]]
#: Given the whole body once the caller has read all of it (the result cache stores it).
Keeper = Callable[[bytes], Awaitable[object]]

MSG_BLOCK_ENDED = (
    "this streamed image was read after its 'async with client.stream(...)' block ended, which "
    "closed its connection: read it inside the block. To send it as a web response that is "
    "streamed after the handler returns (Starlette's or FastAPI's StreamingResponse), keep the "
    "block open as long as the response: enter client.stream() in a FastAPI dependency with "
    "'yield', or in the response's own async generator (see the services guide)"
)


class StreamedImage:
    """The cut-out of ``client.stream()``, received as it is read.

    ``content_type`` is the real type (from the bytes), ``size`` the body's length when the
    server says it (else None), ``request_id`` the server's id of the request (``x-request-id``)
    if it sent one; ``iter_chunks()`` gives the bytes once, ``read()`` all of them, inside the
    ``async with`` block (after it, they raise `RuntimeError`: the connection is gone).
    ``cached`` is True when the client's result cache served it (nothing was sent).
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse | None,
        head: bytes,
        tracker: ProgressTracker,
        errors: ErrorMapper,
        keep: Keeper | None = None,
    ) -> None:
        # No response: ``head`` is the whole image, from the cache.
        declared = response.content_type if response is not None else ""
        self.content_type: str = real_content_type(head, declared)
        self.size: int | None = body_length(response) if response is not None else len(head)
        self.request_id: str | None = None if response is None else request_id(response.headers)
        self.cached = response is None
        self._response = response
        self._head = head
        self._tracker = tracker
        self._errors = errors
        self._keep = keep
        self._started = False
        self._ended = False  # its block has ended, and its connection with it

    def __repr__(self) -> str:
        return f"<StreamedImage content_type={self.content_type!r} size={self.size!r}>"

    async def iter_chunks(self, chunk_size: int = STREAM_CHUNK_BYTES) -> AsyncIterator[bytes]:
        """The image's bytes as they arrive, in chunks of at most ``chunk_size`` (once only)."""
        if self._ended:
            raise RuntimeError(MSG_BLOCK_ENDED)
        if self._started:
            raise RuntimeError("a streamed image can be read only once")
        self._started = True
        for start in range(0, len(self._head), chunk_size):
            yield self._head[start : start + chunk_size]
        if self._response is None:
            return
        kept = [self._head]  # what the cache stores, if there is one to keep it
        try:
            with self._errors():
                async for chunk in self._response.content.iter_chunked(chunk_size):
                    await self._tracker.advance(len(chunk))
                    if self._keep is not None:
                        kept.append(chunk)
                    yield chunk
        except Exception as error:
            if self._ended:  # the block ended while the caller was between two chunks
                raise RuntimeError(MSG_BLOCK_ENDED) from error
            raise
        await self._tracker.finish()
        if self._keep is not None:
            await self._keep(b"".join(kept))  # the body ended whole: cache it

    async def read(self) -> bytes:
        """All the image's bytes (for small results: they are held in memory)."""
        return b"".join([chunk async for chunk in self.iter_chunks()])


def end_of_block(image: StreamedImage) -> None:
    """The caller's block has ended: its connection is being released, reading must stop."""
    image._ended = True


async def open_streamed(
    response: aiohttp.ClientResponse,
    tracker: ProgressTracker,
    errors: ErrorMapper,
    keep: Keeper | None = None,
) -> StreamedImage:
    """The answer, its first bytes (its type) read; ``keep`` gets the whole body once read."""
    head = bytearray()
    while len(head) < SNIFF_BYTES and (piece := await response.content.read(SNIFF_BYTES)):
        head += piece
        await tracker.advance(len(piece))
    if not head:
        raise APIResponseError("the server answered 200 with an empty body")
    return StreamedImage(response, bytes(head), tracker, errors, keep)
