"""Every kind of input opened in one place: `open_input` finds its kind in `_KINDS`, whose opener
makes it a checked `Source` (`_source`): an async stream (`_stream`), a path (`_path`), bytes,
base64 or a file object (`_memory`); a URL goes to `_remote`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Final, Union

from .._storage._stores import is_remote
from ._memory import open_base64, open_bytes, open_file_object
from ._path import LocalRead, local_source, open_path, read_local_or_none
from ._remote import RemoteInputs, RemoteObject
from ._source import Opening, Source, content_digest
from ._stream import AsyncReadable, is_stream, open_stream

__all__ = [
    "ImageInput",
    "LocalRead",
    "RemoteInputs",
    "RemoteObject",
    "Source",
    "async_iterator",
    "content_digest",
    "local_source",
    "open_input",
    "read_local_or_none",
]

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

#: Each local kind: whether an input is of it, and how to open it; the first that claims it wins.
_KINDS: Final[
    tuple[tuple[Callable[[Any], bool], Callable[[Any, Opening], Awaitable[Source]]], ...]
] = (
    (is_stream, open_stream),
    (lambda image: isinstance(image, (str, os.PathLike)), open_path),
    (lambda image: isinstance(image, (bytes, bytearray, memoryview)), open_bytes),
    (lambda image: isinstance(image, Mapping), open_base64),  # {"base64": ...}
    (lambda image: hasattr(image, "read") and hasattr(image, "seek"), open_file_object),
)


async def open_input(
    image: Any,
    *,
    size: int | None = None,
    target: Path | None = None,
    remote: RemoteInputs | None = None,
) -> Source:
    """The checked `Source` of any accepted input; `InvalidInputError` if it is bad.

    ``size``: the exact length of a stream input (it is sent chunked without it). ``target``:
    the output's local path, whose place is checked first (for a path, in the same thread
    call). ``remote``: the stores (and storage options) a remote URL is read through.
    """
    if size is not None and not is_stream(image):
        raise TypeError("size= is only for stream inputs (an async iterable or async read(n))")
    where = Opening(size=size, target=target)
    if is_remote(image):  # a string, so before paths
        if remote is None:
            raise TypeError(f"{image} is a remote URL: open it with the client's stores")
        await where.check_place()
        return await remote.open(image)
    for claims, opener in _KINDS:
        if claims(image):
            return await opener(image, where)
    raise TypeError(
        "input_image must be a path, bytes, {'base64': ...}, a seekable binary file, "
        "an async iterable of bytes or an object with an async read(n), "
        f"not {type(image).__name__}"
    )


async def async_iterator(inputs: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    """A batch's inputs, given as an iterable or an async one, taken one at a time."""
    if isinstance(inputs, AsyncIterable):
        async for value in inputs:
            yield value
    else:
        for value in inputs:
            yield value
