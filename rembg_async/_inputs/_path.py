"""A local path: its output's place checked, then opened, ``fstat``-ed and (when small) read in
one thread hop; a large file is sent unbuffered from disk."""

from __future__ import annotations

import errno
import operator
import os
import stat
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Final

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
_CLOSE: Final = operator.methodcaller("close")  # undoes an open cancelled meanwhile


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
