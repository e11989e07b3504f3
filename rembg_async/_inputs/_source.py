"""What every input becomes: a checked `Source`, which opens its bytes afresh for each attempt,
refused before sending when the server would refuse it, and named after its bytes' real type;
and the local inputs: a path, bytes, ``{"base64": ...}``, a seekable binary file object."""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import io
import operator
import os
import stat
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from typing import IO, Any, Final

import attrs

from .._contract import MAX_UPLOAD_BYTES
from .._exceptions import InvalidInputError
from .._files import run_to_completion
from .._imageinfo import ImageInfo, file_problem, read_image_info
from .._paths import check_output_place
from .._storage._stores import is_remote

Chunks = Callable[[int], AsyncGenerator[bytes, None]]

#: Files (and remote objects) up to this size are read whole when first inspected, and sent
#: from memory.
SMALL_FILE_BYTES: Final = 256 * 1024
#: Read at a time to digest an input for the result cache.
DIGEST_CHUNK_BYTES: Final = 1024 * 1024
#: Read of a stream (or a large remote object) before sending, to check the image: enough for
#: every header's dimensions in practice.
STREAM_HEAD_BYTES: Final = 64 * 1024
_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_CLOSE: Final = operator.methodcaller("close")  # undoes an open cancelled meanwhile


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


async def open_bytes(image: bytes | bytearray | memoryview, where: Opening) -> Source:
    """The bytes' `Source`."""
    await where.check_place()
    return memory_source(memoryview(image).cast("B"), name=None)


async def open_base64(image: Mapping[str, str], where: Opening) -> Source:
    """The decoded image's `Source` (a ``data:`` URL's prefix is dropped)."""
    await where.check_place()
    text = image.get("base64")
    if not isinstance(text, str):
        raise TypeError("a dict input_image needs a 'base64' string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise input_error("The 'base64' input is not valid base64.") from None
    return memory_source(memoryview(data), name=None)


async def open_file_object(file: IO[bytes], where: Opening) -> Source:
    """The file's `Source`, from its position now to its end."""
    await where.check_place()
    name = os.path.basename(str(getattr(file, "name", ""))) or None

    def inspect() -> tuple[int, int, ImageInfo | None]:
        start = file.tell()
        size = file.seek(0, io.SEEK_END) - start
        file.seek(start)
        info = read_image_info(file)
        file.seek(start)
        return start, size, info

    start, size, info = await run_to_completion(inspect)

    async def chunks(chunk_size: int) -> AsyncGenerator[bytes, None]:
        await run_to_completion(file.seek, start)
        try:
            async for chunk in read_exactly(
                name or "the input file object", file.read, size, chunk_size
            ):
                yield chunk
        finally:
            file.seek(start)  # leave the caller's file where it was (a seek is instant)

    return checked_source(name, size, info, chunks)


@attrs.frozen(kw_only=True)
class LocalRead:
    """What one thread hop learnt of a local file: its status, and its bytes when it is small
    (else its header's image facts)."""

    status: os.stat_result
    data: bytes | None
    info: ImageInfo | None


async def open_path(image: str | os.PathLike[str], where: Opening) -> Source:
    """The file's `Source`; its output's place checked in the same thread call."""
    path = Path(image)
    return local_source(path, await run_to_completion(read_local, path, where.target))


def read_local(path: Path, target: Path | None = None) -> LocalRead:
    """Check the output's place (``target``), then open, ``fstat`` and (when small) read ``path``:
    blocking, so in a thread, and only system calls (a buffered file adds an fstat and an
    ioctl), as each is one more wait for the GIL the event loop holds."""
    if target is not None:
        check_output_place(target)
    handle = os.open(path, _READ_FLAGS)
    try:
        status = os.fstat(handle)
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if status.st_size <= SMALL_FILE_BYTES:  # read whole in this same hop: no more I/O
            return LocalRead(status=status, data=_read_small(handle, status), info=None)
        with open(handle, "rb", closefd=False) as file:
            return LocalRead(status=status, data=None, info=read_image_info(file))
    finally:
        os.close(handle)


def read_local_or_none(value: Any) -> LocalRead | None:
    """`read_local` of a path (blocking), or None when ``value`` is no path or its file cannot
    be read: opening it again (`open_path`) says what is wrong, as usual."""
    if not isinstance(value, (str, os.PathLike)) or is_remote(value):
        return None
    try:
        return read_local(Path(value))
    except OSError:
        return None


def local_source(path: Path, read: LocalRead) -> Source:
    """The `Source` for the file at ``path``, from what `read_local` learnt of it."""
    if read.data is not None:
        return memory_source(memoryview(read.data), name=path.name)
    size = read.status.st_size

    async def chunks(chunk_size: int) -> AsyncGenerator[bytes, None]:
        try:
            file = await run_to_completion(path.open, "rb", 0, undo=_CLOSE)  # 0: unbuffered
        except OSError as error:  # deleted or made unreadable since it was checked
            raise input_error(f"{path} can no longer be read: {error.strerror}") from error
        with file:
            async for chunk in read_exactly(str(path), file.read, size, chunk_size):
                yield chunk

    return checked_source(path.name, size, read.info, chunks)


def _read_small(handle: int, status: os.stat_result) -> bytes:
    """As many bytes as a regular file's size says (one read, unless it shrank); else up to its
    end, or one byte more than an upload may have (a pipe or a device: its size says nothing)."""
    if not stat.S_ISREG(status.st_mode):
        with open(handle, "rb", closefd=False) as file:
            return file.read(MAX_UPLOAD_BYTES + 1)
    pieces = []
    left = status.st_size
    while left > 0 and (piece := os.read(handle, left)):
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)
