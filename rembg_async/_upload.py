"""The streaming multipart body of ``POST /rmbg``: exact size, read in chunks, progress per chunk.

Its ``size`` is known before a byte is sent, so aiohttp sends ``Content-Length`` (no chunked
encoding) and upload progress has a ``total``: the bytes of the whole body on the wire.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from ._inputs import Source
from ._progress import ProgressTracker

#: Large reads keep the per-chunk overhead (a thread hop each, and the progress callbacks)
#: small; 1 MiB in flight per upload is nothing next to the 50 MB it may be.
CHUNK_BYTES: Final = 1024 * 1024

#: Writes are gathered up to this size before they are sent (see :class:`_GatheringWriter`).
GATHER_BYTES: Final = 64 * 1024


class _SourcePayload(Payload):
    """The image part: the source's bytes, read afresh from its start."""

    _autoclose = True  # holds nothing open between writes

    def __init__(self, source: Source, chunk_size: int) -> None:
        super().__init__(source, content_type=source.content_type, filename=source.filename)
        self._size = source.size
        self._chunk_size = chunk_size

    async def write(self, writer: AbstractStreamWriter) -> None:
        source: Source = self._value
        # aclosing: if the connection dies mid-upload, the file is closed now, not by the GC.
        async with contextlib.aclosing(source.chunks(self._chunk_size)) as chunks:
            async for chunk in chunks:
                await writer.write(chunk)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an image upload is binary")


class _GatheringWriter:
    """Passes writes on to aiohttp's writer, gathering small ones, and counts them for progress.

    A multipart form is written as many small pieces (boundary, part headers, CRLFs): each
    would be a ``send()`` of its own. Gathered, a small upload leaves in one ``send()`` with the
    request's headers, and a large one adds no more than two to its chunks.
    """

    def __init__(self, inner: AbstractStreamWriter, tracker: ProgressTracker) -> None:
        self._inner = inner
        self._tracker = tracker
        self._gathered: list[bytes | bytearray | memoryview] = []
        self._gathered_size = 0

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._gathered_size + len(chunk) > GATHER_BYTES:
            await self.flush()
            if len(chunk) > GATHER_BYTES:  # a large chunk goes as it is, without a copy
                await self._send(chunk)
                return
        self._gathered.append(chunk)
        self._gathered_size += len(chunk)

    async def flush(self) -> None:
        """Send what has been gathered."""
        if self._gathered:
            gathered = b"".join(self._gathered)
            self._gathered.clear()
            self._gathered_size = 0
            await self._send(gathered)

    async def _send(self, chunk: bytes | bytearray | memoryview) -> None:
        await self._inner.write(chunk)
        await self._tracker.advance(len(chunk))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def build_form(
    source: Source, fields: Mapping[str, str], chunk_size: int
) -> aiohttp.MultipartWriter:
    """The multipart form: the image first, then the option fields."""
    form = aiohttp.MultipartWriter("form-data")
    image = form.append_payload(_SourcePayload(source, chunk_size))
    image.set_content_disposition("form-data", name="image", filename=source.filename)
    for name, value in fields.items():
        form.append(value).set_content_disposition("form-data", name=name)
    return form


class UploadBody(Payload):
    """The whole form as one payload, reporting each chunk written to the tracker."""

    _autoclose = True

    def __init__(self, form: aiohttp.MultipartWriter, tracker: ProgressTracker) -> None:
        super().__init__(form, content_type=form.content_type)
        self._size = form.size
        self._tracker = tracker

    async def write(self, writer: AbstractStreamWriter) -> None:
        form: aiohttp.MultipartWriter = self._value
        gathering = _GatheringWriter(writer, self._tracker)
        await form.write(gathering)  # type: ignore[arg-type]
        await gathering.flush()
        await self._tracker.finish()

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an image upload is binary")
