"""A stream input (an async iterable of bytes, or an async ``read(n)``) as a replayable `Source`:
read once, it is spooled as it passes to an anonymous temporary file, so a retry sends the spool
then reads on where the last attempt stopped. Memory stays flat: one chunk at a time."""

from __future__ import annotations

import inspect
import io
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import IO, Any, Final, Protocol

import aiohttp

from .._contract import MAX_UPLOAD_BYTES, file_too_large_message
from .._files import run_to_completion
from .._imageinfo import read_image_info
from ._source import STREAM_HEAD_BYTES, Opening, Source, checked_source, input_error

_READ_BYTES: Final = 256 * 1024


class AsyncReadable(Protocol):
    """Anything with an async ``read(n)``: aiohttp's ``StreamReader``, ``UploadFile``..."""

    def read(self, n: int = ..., /) -> Awaitable[bytes]:
        """Up to ``n`` bytes; ``b""`` at the end."""
        ...


def is_stream(image: Any) -> bool:
    """Whether ``image`` is an async stream: an async iterable, or an async ``read``."""
    if hasattr(image, "__aiter__") or hasattr(image, "read_chunk"):
        return True
    read = getattr(image, "read", None)
    return read is not None and inspect.iscoroutinefunction(read)


def _reader(stream: Any) -> AsyncIterator[bytes]:
    """The stream's bytes in chunks, whichever front door it has."""
    if hasattr(stream, "read_chunk"):  # aiohttp's multipart BodyPartReader: read() is whole
        return _pull(lambda: stream.read_chunk(_READ_BYTES))
    # aiohttp's StreamReader is async iterable too, but iterating it gives lines.
    if isinstance(stream, aiohttp.StreamReader) or not hasattr(stream, "__aiter__"):
        return _pull(lambda: stream.read(_READ_BYTES))
    return aiter(stream)


async def _pull(read: Any) -> AsyncIterator[bytes]:
    while chunk := await read():
        yield bytes(chunk) if not isinstance(chunk, bytes) else chunk


class _Spool:
    """The stream, and what was read of it in an anonymous file (gone even if the process dies)."""

    def __init__(self, stream: Any, size: int | None, name: str) -> None:
        self._chunks = _reader(stream)
        self._size = size
        self._name = name
        self._file: IO[bytes] | None = None
        self._spooled = 0
        self._ended = False

    async def head(self) -> bytes:
        """The first bytes (up to `STREAM_HEAD_BYTES`), read and spooled."""
        pieces: list[bytes] = []
        while self._spooled < STREAM_HEAD_BYTES and (chunk := await self._next()) is not None:
            pieces.append(chunk)
        return b"".join(pieces)

    async def _next(self) -> bytes | None:
        """The stream's next chunk, spooled; None at its end (checked against ``size``)."""
        if self._ended:
            return None
        chunk = await anext(self._chunks, None)
        if chunk is None:
            self._ended = True
            if self._size is not None and self._spooled < self._size:
                raise input_error(
                    f"{self._name} ended after {self._spooled} of the {self._size} bytes "
                    "given as its size="
                )
            return None
        spooled = self._spooled + len(chunk)
        if self._size is None and spooled > MAX_UPLOAD_BYTES:
            raise input_error(file_too_large_message(spooled))
        if self._size is not None and spooled > self._size:
            raise input_error(
                f"{self._name} is longer than the {self._size} bytes given as its size="
            )
        await run_to_completion(self._write, chunk)
        return chunk

    def _write(self, chunk: bytes) -> None:
        if self._file is None:  # here, in the thread: creating a file can wait for the disk
            self._file = tempfile.TemporaryFile()  # noqa: SIM115  # kept open across attempts; close()
        self._file.seek(0, io.SEEK_END)
        self._file.write(chunk)
        self._spooled += len(chunk)

    async def chunks(self, chunk_size: int) -> AsyncGenerator[bytes, None]:
        """All the stream's bytes from its start: the spooled ones, then the rest."""
        sent = 0
        while sent < self._spooled:
            count = min(chunk_size, self._spooled - sent)
            chunk = await run_to_completion(self._read_at, sent, count)
            sent += len(chunk)
            yield chunk
        while (more := await self._next()) is not None:
            yield more

    def _read_at(self, offset: int, count: int) -> bytes:
        assert self._file is not None
        self._file.seek(offset)
        return self._file.read(count)

    def close(self) -> None:
        """Delete the spool (closing an anonymous file deletes it)."""
        if self._file is not None:
            self._file.close()


async def open_stream(stream: Any, where: Opening) -> Source:
    """The checked `Source` of a stream input, with ``where.size`` its exact length if known."""
    await where.check_place()
    size = where.size
    if size is not None and size < 0:
        raise ValueError(f"size must be 0 or more, not {size}")
    name = str(getattr(stream, "filename", None) or getattr(stream, "name", None) or "") or None
    spool = _Spool(stream, size, name or "the input stream")
    try:
        head = await spool.head()
        if size is None and len(head) < STREAM_HEAD_BYTES:
            size = len(head)  # the whole stream is in: its size is known after all
        info = read_image_info(io.BytesIO(head)) if head else None
        return checked_source(name, size if head else 0, info, spool.chunks, close=spool.close)
    except BaseException:
        spool.close()
        raise
