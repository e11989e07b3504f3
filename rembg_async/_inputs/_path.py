"""A path: its file read and checked in one thread hop (with the output's place, when there is
one); a small file is sent from memory, a larger one streamed from the disk in chunks."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import IO, Any, Final

import attrs

from .._contract import MAX_UPLOAD_BYTES
from .._files import run_to_completion
from .._imageinfo import ImageInfo, read_image_info
from .._paths import check_output_place
from .._storage._stores import is_remote
from ._source import (
    SMALL_FILE_BYTES,
    Opening,
    Source,
    checked_source,
    input_error,
    memory_source,
    read_exactly,
)

_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


async def open_path(image: str | os.PathLike[str], where: Opening) -> Source:
    """The file's `Source`; its output's place checked in the same thread call."""
    path = Path(image)
    if where.target is None:
        return local_source(path, await run_to_completion(read_local, path))
    return local_source(path, await run_to_completion(_check_place_and_read, where.target, path))


def _check_place_and_read(target: Path, path: Path) -> LocalRead:
    check_output_place(target)
    return read_local(path)


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
            file = await run_to_completion(_open_unbuffered, path, undo=_close)
        except OSError as error:  # deleted or made unreadable since it was checked
            raise input_error(f"{path} can no longer be read: {error.strerror}") from error
        with file:
            async for chunk in read_exactly(str(path), file.read, size, chunk_size):
                yield chunk

    return checked_source(path.name, size, read.info, chunks)


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
