"""What every input becomes: a checked `Source`, which opens its bytes afresh for each attempt,
refused before sending when the server would refuse it, and named after its bytes' real type;
and what the kinds share (bytes in memory, a blocking read in chunks, the check of its end)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, Final

import attrs

from .._exceptions import InvalidInputError
from .._files import run_to_completion
from .._imageinfo import ImageInfo, file_problem, read_image_info
from .._paths import check_output_place

Chunks = Callable[[int], AsyncGenerator[bytes, None]]

#: Files (and remote objects) up to this size are read whole when first inspected, and sent
#: from memory.
SMALL_FILE_BYTES: Final = 256 * 1024
#: Read at a time to digest an input for the result cache.
DIGEST_CHUNK_BYTES: Final = 1024 * 1024
#: Read of a stream (or a large remote object) before sending, to check the image: enough for
#: every header's dimensions in practice.
STREAM_HEAD_BYTES: Final = 64 * 1024


@attrs.frozen(kw_only=True)
class Source:
    """An input image ready to send: its name and type (from its content), size, and bytes."""

    filename: str
    content_type: str
    size: int | None  # None: a stream of unknown length, sent chunked
    chunks: Chunks = attrs.field(repr=False)
    #: Frees what the source holds (a stream's spool file); called once the call is over.
    close: Callable[[], None] = attrs.field(default=lambda: None, repr=False)


@attrs.frozen(kw_only=True)
class Opening:
    """What opening an input may need: a stream's exact ``size``, the output's ``target`` (its
    place is checked before the input is read)."""

    size: int | None = None
    target: Path | None = None

    async def check_place(self) -> None:
        """Refuse an output place that cannot be written, before the input is read."""
        if self.target is not None:
            await run_to_completion(check_output_place, self.target)


def input_error(message: str) -> InvalidInputError:
    """An `InvalidInputError` about the image field."""
    return InvalidInputError(message, [("image", message)])


def checked_source(
    name: str | None, size: int | None, info: ImageInfo | None, chunks: Chunks, **more: Any
) -> Source:
    """Check the file as the server would, in its order; name it after its real type."""
    problem = file_problem(size, info)
    if problem is not None:
        raise input_error(problem)
    assert info is not None
    stem = Path(name).stem if name else ""
    return Source(
        filename=f"{stem or 'image'}.{info.extension}",
        content_type=info.mime_type,
        size=size,
        chunks=chunks,
        **more,
    )


def memory_source(data: memoryview, name: str | None) -> Source:
    """Bytes already in memory, sent in zero-copy slices."""
    info = read_image_info(io.BytesIO(data)) if len(data) else None

    async def chunks(chunk_size: int) -> AsyncGenerator[bytes, None]:
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]  # type: ignore[misc]  # a zero-copy slice

    return checked_source(name, len(data), info, chunks)


async def read_exactly(
    name: str, read: Callable[[int], bytes], size: int, chunk_size: int
) -> AsyncGenerator[bytes, None]:
    """``size`` bytes from a blocking ``read(n)``, in chunks read in a thread; stops at the size
    announced in Content-Length (no extra read to find the end)."""
    left = size
    while left > 0 and (chunk := await run_to_completion(read, min(chunk_size, left))):
        left -= len(chunk)
        yield chunk
    check_whole(name, size, size - left)


def check_whole(name: str, size: int, got: int) -> None:
    """Refuse an input that ended early: the request announced ``size`` bytes, and a server
    waiting for the rest would only time out, blaming itself."""
    if got != size:
        raise input_error(
            f"{name} changed while it was being sent: it ended after {got} of the "
            f"{size} bytes it had when it was checked"
        )


async def content_digest(source: Source) -> str:
    """The sha256 of the source's bytes (hex), for the result cache's key: a stream is read to
    its end into its spool, so a miss then sends from the spool and nothing is read twice."""
    digest = hashlib.sha256()
    async for chunk in source.chunks(DIGEST_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()
