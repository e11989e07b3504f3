"""A remote object as a `Source`, checked as a local file is and with the same messages; a small
one is read whole in one request, a larger one streamed with an exact size, opened afresh for
every attempt (a retry resends it from its start)."""

from __future__ import annotations

import io
import posixpath
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import attrs

from .._contract import MAX_UPLOAD_BYTES
from .._imageinfo import read_image_info
from .._storage._stores import READ_BYTES, Store, Stores
from ._source import (
    SMALL_FILE_BYTES,
    STREAM_HEAD_BYTES,
    Source,
    check_whole,
    checked_source,
    input_error,
    memory_source,
)

#: Details that change when an object is replaced, most telling first.
_VERSION_KEYS: Final = ("ETag", "etag", "VersionId", "generation", "md5Hash", "LastModified",
                        "mtime", "last_modified", "updated", "created")  # fmt: skip


@attrs.frozen(kw_only=True)
class RemoteObject:
    """What an object's details say: its size, and the stamp that tells whether it changed."""

    url: str
    path: str
    size: int
    stamp: str


@attrs.frozen(kw_only=True)
class RemoteInputs:
    """How a client reaches remote inputs: its stores, and the storage options of the call."""

    stores: Stores
    options: Mapping[str, Any] | None = None

    def _store(self, url: str) -> Store:
        return self.stores.store(url, self.options)

    async def stat(self, url: str) -> RemoteObject:
        """The object's details (``FileNotFoundError`` if it is not there)."""
        store = self._store(url)
        path = store.path(url)
        info = await store.info(path)
        if info.get("type") == "directory":
            raise IsADirectoryError(f"{url} is a folder, not an image")
        if info.get("size") is None:
            raise input_error(f"{url} does not say its size, so it cannot be sent")
        size = int(info["size"])
        versions = (str(info[key]).strip('"') for key in _VERSION_KEYS if info.get(key) is not None)
        return RemoteObject(url=url, path=path, size=size, stamp=f"{size}:{next(versions, '')}")

    async def source(self, found: RemoteObject) -> Source:
        """The object as a checked `Source`; `InvalidInputError` if the API would refuse it."""
        store, url, path, size = self._store(found.url), found.url, found.path, found.size
        name = posixpath.basename(path.rstrip("/")) or None
        if size == 0 or size > MAX_UPLOAD_BYTES:  # refused on its details alone, nothing read
            return checked_source(name, size, None, _no_chunks)
        if size <= SMALL_FILE_BYTES:
            data = await store.cat(path, 0, size)
            check_whole(url, size, len(data))
            return memory_source(memoryview(data), name)
        info = read_image_info(io.BytesIO(await store.cat(path, 0, STREAM_HEAD_BYTES)))

        async def chunks(chunk_size: int) -> AsyncGenerator[bytes, None]:
            sent = 0
            async for chunk in store.chunks(path, size, max(chunk_size, READ_BYTES)):
                sent += len(chunk)
                yield chunk
            check_whole(url, size, sent)

        return checked_source(name, size, info, chunks)

    async def open(self, url: str) -> Source:
        """The object at ``url``, checked, as a `Source`."""
        return await self.source(await self.stat(url))


async def _no_chunks(chunk_size: int) -> AsyncGenerator[bytes, None]:
    return
    yield b""  # pragma: no cover  # an async generator that yields nothing
