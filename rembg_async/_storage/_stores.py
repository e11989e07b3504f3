"""Which inputs and outputs are remote, and the fsspec filesystems that serve them.

A string is remote when it starts with a protocol (``s3://``, ``gs://``, ``memory://``,
``https://``…); plain paths and ``file://`` keep the local path. Filesystems are made once per
protocol and storage options, owned by one client, and closed with it: an async one (s3fs,
gcsfs, http) is used through its coroutines, a blocking one (memory, most others) through
`run_to_completion`, so that no call ever waits on the event loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import PurePosixPath
from typing import Any, Final

from .._extras import import_optional
from .._files import run_to_completion

_URL: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
#: Protocols that name local files: those keep today's path (and its checks).
_LOCAL: Final = frozenset({"file", "local"})
#: Streamed reads go in pieces this large (a read may return less).
READ_BYTES: Final = 1024 * 1024


def protocol_of(value: Any) -> str | None:
    """The protocol of a remote URL (``"s3"``), or None for anything else."""
    if not isinstance(value, str):
        return None
    match = _URL.match(value)
    if match is None or match.group(1).lower() in _LOCAL:
        return None
    return match.group(1).lower()


def is_remote(value: Any) -> bool:
    """Whether ``value`` is a URL to read or write through fsspec."""
    return protocol_of(value) is not None


def remote_relative(url: str, root: Any) -> PurePosixPath:
    """Where a remote input's output goes under the output folder: its path below ``root``
    (a callable, or a URL above it), else its whole path without the protocol."""
    if callable(root):
        return PurePosixPath(root(url))
    base = url.split("://", 1)[1]
    if isinstance(root, str) and is_remote(root):
        prefix = root.split("://", 1)[1].rstrip("/") + "/"
        if base.startswith(prefix):
            return PurePosixPath(base[len(prefix) :])
    return PurePosixPath(base.lstrip("/"))


def import_fsspec(url: str) -> Any:
    """fsspec, or the message naming the ``fsspec`` extra."""
    return import_optional("fsspec", extra="fsspec", feature=f"the remote URL {url!r}")


class Store:
    """One filesystem, async or not, behind the few calls the library makes."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self._async = bool(getattr(fs, "async_impl", False))

    def path(self, url: str) -> str:
        """The filesystem's own path for ``url`` (``bucket/key`` for s3)."""
        return str(self.fs._strip_protocol(url))

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._async:
            return await getattr(self.fs, f"_{name}")(*args, **kwargs)
        return await run_to_completion(lambda: getattr(self.fs, name)(*args, **kwargs))

    async def info(self, path: str) -> dict[str, Any]:
        """The object's details (``size``, ``type``, an ETag or a time)."""
        return dict(await self._call("info", path))

    async def read(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` of the object."""
        return bytes(await self._call("cat_file", path, start=start, end=end))

    async def cat(self, path: str) -> bytes:
        """The whole object (a small one: an index segment)."""
        return bytes(await self._call("cat_file", path))

    async def exists(self, path: str) -> bool:
        """Whether the object is there."""
        return bool(await self._call("exists", path))

    async def find(self, path: str) -> dict[str, dict[str, Any]]:
        """Every object under ``path``, with its details."""
        found = await self._call("find", path, detail=True)
        return dict(found)

    async def ls(self, path: str) -> list[str]:
        """The paths directly in the folder ``path`` (none when it is not there). Not kept in
        the filesystem's listings cache: its caller keeps what it needs, for as long."""
        try:
            found = await self._call("ls", path, detail=False)
        except FileNotFoundError:
            return []
        finally:
            self.fs.invalidate_cache(path)
        return [str(name) for name in found]

    async def put(self, local: str, path: str, size: int) -> None:
        """Put the local file ``local`` at ``path``: it appears only whole."""
        if self._async:
            await _put_async(self.fs, local, path, size)
        else:
            await run_to_completion(self.fs.put_file, local, path)

    async def pipe(self, path: str, data: bytes) -> None:
        """Write ``data`` whole at ``path``."""
        await self._call("pipe_file", path, data)

    async def chunks(self, path: str, size: int, chunk_size: int) -> AsyncIterator[bytes]:
        """The object's bytes, streamed, up to ``size`` (a file opened here is closed here)."""
        if not self._async:
            async for chunk in _blocking_chunks(self.fs, path, size, chunk_size):
                yield chunk
            return
        file = await self.fs.open_async(path, "rb")
        try:
            left = size
            while left > 0 and (chunk := await file.read(min(chunk_size, left))):
                left -= len(chunk)
                yield chunk
        finally:
            await _close_async_file(file)

    async def aclose(self) -> None:
        """Close the filesystem's connections (an async one keeps a session)."""
        if not self._async:
            return
        creator = getattr(self.fs, "_s3creator", None)  # s3fs
        if creator is not None:
            await creator.__aexit__(None, None, None)
            self.fs._s3creator = self.fs._s3 = None
        session = getattr(self.fs, "_session", None)  # http, gcsfs: an aiohttp session
        if session is not None and hasattr(session, "close"):
            await session.close()
            self.fs._session = None


#: Up to this size, an async store's result is read in a thread and written in one call; a
#: larger one goes through the store's own ``_put_file`` (s3fs: a multipart upload that reads
#: its parts itself, and appears only when complete).
PUT_WHOLE_BYTES: Final = 64 * 1024 * 1024


async def _put_async(fs: Any, local: str, path: str, size: int) -> None:
    # s3fs's _put_file reads the file on the event loop (whole, below 100 MB): reading it in
    # a thread keeps the loop free, and costs no more memory.
    if size <= PUT_WHOLE_BYTES:
        data = await run_to_completion(_read_file, local)
        await fs._pipe_file(path, data)
    else:
        await fs._put_file(local, path)


def _read_file(local: str) -> bytes:
    with open(local, "rb") as file:
        return file.read()


async def _blocking_chunks(fs: Any, path: str, size: int, chunk_size: int) -> AsyncIterator[bytes]:
    file = await run_to_completion(fs.open, path, "rb", undo=_close)
    try:
        left = size
        while left > 0 and (chunk := await run_to_completion(file.read, min(chunk_size, left))):
            left -= len(chunk)
            yield chunk
    finally:
        await run_to_completion(file.close)


def _close(file: Any) -> None:
    file.close()


async def _close_async_file(file: Any) -> None:
    await file.close()
    body = getattr(file, "r", None)  # s3fs: the response being read, held until closed
    if body is not None and hasattr(body, "close"):
        body.close()


class Stores:
    """The filesystems of one client: one per protocol and storage options, made when first
    needed and closed by `aclose`."""

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        self.options: Mapping[str, Any] = dict(storage_options or {})
        self._stores: dict[tuple[str, str], Store] = {}

    def store(self, url: str, options: Mapping[str, Any] | None = None) -> Store:
        """The store for ``url``, with ``options`` (else the client's) as fsspec's keywords."""
        protocol = protocol_of(url)
        if protocol is None:
            raise ValueError(f"not a remote URL: {url!r}")
        chosen = dict(self.options if options is None else options)
        key = (protocol, json.dumps(chosen, sort_keys=True, default=repr))
        if key not in self._stores:
            self._stores[key] = Store(_make_filesystem(url, protocol, chosen))
        return self._stores[key]

    async def aclose(self) -> None:
        """Close every filesystem made."""
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.aclose()


def _make_filesystem(url: str, protocol: str, options: dict[str, Any]) -> Any:
    fsspec = import_fsspec(url)
    cls = fsspec.get_filesystem_class(protocol)
    if getattr(cls, "async_impl", False):
        # Our own instance, bound to the running loop, closed by us (fsspec's cache would
        # hand one loop's session to another).
        options = {**options, "asynchronous": True, "skip_instance_cache": True}
    return cls(**options)
