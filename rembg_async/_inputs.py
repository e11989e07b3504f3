"""Every kind of input image becomes one `Source`, which can be read again and again.

A retry must send the image afresh, so a source never holds an exhausted stream: it knows how
to open its bytes from the start. Each source is checked as the server checks an upload (type,
empty, size, signature, dimensions from the header), so bad input is refused before sending.
The bytes decide what an image is, never its name: it is sent under a name of its real type.
"""

from __future__ import annotations

import base64
import binascii
import errno
import inspect
import io
import os
import stat
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO, Any, Final, Protocol, Union

import attrs

from ._contract import (
    MAX_UPLOAD_BYTES,
    MSG_EMPTY_FILE,
    MSG_INVALID_SIGNATURE,
    dimension_messages,
    file_too_large_message,
)
from ._exceptions import InvalidInputError
from ._imageinfo import ImageInfo, read_image_info
from ._paths import check_output_place
from ._threads import run_to_completion


class AsyncReadable(Protocol):
    """Anything with an async ``read(n)``: aiohttp's ``StreamReader``, ``UploadFile``..."""

    def read(self, n: int = ..., /) -> Awaitable[bytes]:
        """Up to ``n`` bytes; ``b""`` at the end."""
        ...


#: Everything ``remove()`` accepts as an image.
ImageInput = Union[
    str,
    "os.PathLike[str]",
    bytes,
    bytearray,
    memoryview,
    Mapping[str, str],
    IO[bytes],
    AsyncIterable[bytes],
    AsyncReadable,
]

Chunks = Callable[[int], AsyncGenerator[bytes, None]]

#: Files up to this size are read whole when first inspected, and sent from memory.
SMALL_FILE_BYTES: Final = 256 * 1024

_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


@attrs.frozen(kw_only=True)
class Source:
    """An input image ready to send: its name and type (from its content), size, and bytes."""

    filename: str
    content_type: str
    size: int | None  # None: a stream of unknown length, sent chunked
    info: ImageInfo
    chunks: Chunks = attrs.field(repr=False)
    #: Frees what the source holds (a stream's spool file); called once the call is over.
    close: Callable[[], None] = attrs.field(default=lambda: None, repr=False)


async def open_source(image: Any, size: int | None = None) -> Source:
    """The `Source` for any accepted input, checked; `InvalidInputError` if bad.

    ``size``: the exact length of a stream input (it is sent chunked without it).
    """
    if isinstance(image, Source):  # read and checked already (by a batch)
        return image
    if size is not None and not is_stream(image):
        raise TypeError("size= is only for stream inputs (an async iterable or async read(n))")
    if is_stream(image):
        from ._streams import stream_source  # a sibling module: the stream's spool

        return await stream_source(image, size)
    if isinstance(image, (str, os.PathLike)):
        return await _path_source(Path(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _memory_source(memoryview(image).cast("B"), name=None)
    if isinstance(image, Mapping):
        return _memory_source(memoryview(_decode_base64(image)), name=None)
    if hasattr(image, "read") and hasattr(image, "seek"):
        return await _file_object_source(image)
    raise TypeError(
        "input_image must be a path, bytes, {'base64': ...}, a seekable binary file, "
        "an async iterable of bytes or an object with an async read(n), "
        f"not {type(image).__name__}"
    )


@attrs.frozen(kw_only=True)
class LocalRead:
    """What one thread hop learnt of a local file: its status, and its bytes when it is small
    (else its header's image facts)."""

    status: os.stat_result
    data: bytes | None
    info: ImageInfo | None


def read_local(path: Path) -> LocalRead:
    """Open, ``fstat`` and (when small) read ``path``: blocking, so in a thread, and only
    system calls, so that the thread seldom needs the GIL the event loop holds."""
    # os.open/os.read: a buffered file() adds an fstat and an ioctl, and every system call
    # in this thread hop is one more wait for the GIL (see _download).
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


async def _path_source(path: Path) -> Source:
    return local_source(path, await run_to_completion(read_local, path))


def local_source(path: Path, read: LocalRead) -> Source:
    """The `Source` for the file at ``path``, from what `read_local` learnt of it."""
    if read.data is not None:
        return _memory_source(memoryview(read.data), name=path.name)
    size = read.status.st_size

    async def chunks(chunk_size: int) -> AsyncGenerator[bytes, None]:
        # Reads go to a thread, and stop at the size announced in Content-Length (no extra
        # read to find the end).
        try:
            file = await run_to_completion(_open_unbuffered, path, undo=_close)
        except OSError as error:  # deleted or made unreadable since it was checked
            raise _input_error(f"{path} can no longer be read: {error.strerror}") from error
        with file:
            left = size
            while left > 0 and (chunk := await run_to_completion(file.read, min(chunk_size, left))):
                left -= len(chunk)
                yield chunk
        _check_whole(str(path), size, left)

    return _source(path.name, size, read.info, chunks)


def _open_unbuffered(path: Path) -> IO[bytes]:
    return path.open("rb", buffering=0)


def _close(file: IO[bytes]) -> None:
    file.close()


def _read_small(handle: int, status: os.stat_result) -> bytes:
    """A small file's bytes: as many as its size says (a regular file), else up to its end
    or to one byte more than an upload may have."""
    if not stat.S_ISREG(status.st_mode):  # a pipe or a device: its size says nothing
        with open(handle, "rb", closefd=False) as file:
            return file.read(MAX_UPLOAD_BYTES + 1)  # enough to refuse an endless one
    pieces = []
    left = status.st_size
    while left > 0 and (piece := os.read(handle, left)):  # one read, unless the file shrank
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


def _memory_source(data: memoryview, name: str | None) -> Source:
    """Bytes already in memory; a caller with a file name has checked it already."""
    info = read_image_info(io.BytesIO(data)) if len(data) else None

    async def chunks(chunk_size: int) -> AsyncGenerator[bytes, None]:
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]  # type: ignore[misc]  # a zero-copy slice

    return _source(name, len(data), info, chunks)


async def _file_object_source(file: IO[bytes]) -> Source:
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
        left = size
        try:
            while left > 0 and (chunk := await run_to_completion(file.read, min(chunk_size, left))):
                left -= len(chunk)
                yield chunk
        finally:
            file.seek(start)  # leave the caller's file where it was (a seek is instant)
        _check_whole(name or "the input file object", size, left)

    return _source(name, size, info, chunks)


def is_stream(image: Any) -> bool:
    """Whether ``image`` is an async stream: an async iterable, or an async ``read``."""
    if hasattr(image, "__aiter__") or hasattr(image, "read_chunk"):
        return True
    read = getattr(image, "read", None)
    return read is not None and inspect.iscoroutinefunction(read)


def input_error(message: str) -> InvalidInputError:
    """An `InvalidInputError` about the image field."""
    return _input_error(message)


def _input_error(message: str) -> InvalidInputError:
    return InvalidInputError(message, [("image", message)])


def _check_whole(name: str, size: int, left: int) -> None:
    """Refuse an input that ended early: the request announced ``size`` bytes, and a server
    waiting for the rest would only time out, blaming itself."""
    if left > 0:
        raise _input_error(
            f"{name} changed while it was being sent: it ended after {size - left} of the "
            f"{size} bytes it had when it was checked"
        )


def _decode_base64(image: Mapping[str, str]) -> bytes:
    text = image.get("base64")
    if not isinstance(text, str):
        raise TypeError("a dict input_image needs a 'base64' string")
    if text.startswith("data:"):
        text = text.partition(",")[2]  # a data URL: keep what follows the comma
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        message = "The 'base64' input is not valid base64."
        raise InvalidInputError(message, [("image", message)]) from None


def checked_source(
    name: str | None, size: int | None, info: ImageInfo | None, chunks: Chunks
) -> Source:
    """`_source` for a sibling module (a stream source)."""
    return _source(name, size, info, chunks)


def _source(name: str | None, size: int | None, info: ImageInfo | None, chunks: Chunks) -> Source:
    """Check the file as the server would, in its order; name it after its real type."""
    problem = _file_problem(size, info)
    if problem is not None:
        raise InvalidInputError(problem, [("image", problem)])
    assert info is not None
    stem = Path(name).stem if name else "image"
    return Source(
        filename=f"{stem or 'image'}.{info.extension}",
        content_type=info.mime_type,
        size=size,
        info=info,
        chunks=chunks,
    )


def _file_problem(size: int | None, info: ImageInfo | None) -> str | None:
    if size == 0:
        return MSG_EMPTY_FILE
    if size is not None and size > MAX_UPLOAD_BYTES:
        return file_too_large_message(size)
    if info is None:
        return MSG_INVALID_SIGNATURE
    if info.width is not None and info.height is not None:
        messages = dimension_messages(info.width, info.height)
        if messages:
            return messages[0]
    return None


async def prepare_source(input_image: Any, target: Path | None, size: int | None) -> Source:
    """The input's `Source`, once the output's place (``target``) is known to be usable: for a
    local file, both in one thread call."""
    if isinstance(input_image, Source):  # a batch's: read, and its output's place checked
        return input_image
    if target is None:
        return await open_source(input_image, size)
    if size is None and isinstance(input_image, (str, os.PathLike)):  # both in one thread call
        path = Path(input_image)
        return local_source(path, await run_to_completion(_check_place_and_read, target, path))
    await run_to_completion(check_output_place, target)
    return await open_source(input_image, size)


def _check_place_and_read(target: Path, path: Path) -> LocalRead:
    check_output_place(target)
    return read_local(path)
