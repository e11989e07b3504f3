"""Which strings are remote (a protocol, but not ``file://``), and the fsspec filesystems that
serve them: one per protocol and options, owned and closed by one client. An async filesystem
(s3fs, gcsfs, http) is used through its coroutines, a blocking one in a thread."""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

from .._extras import import_optional
from .._files import run_to_completion

_URL: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
#: Protocols that name local files: those keep today's path (and its checks).
_LOCAL: Final = frozenset({"file", "local"})
#: Streamed reads go in pieces this large (a read may return less).
READ_BYTES: Final = 1024 * 1024
#: Up to this size, an async store's result is read in a thread and written in one call; a
#: larger one goes through the store's own ``_put_file`` (s3fs: a multipart upload that reads
#: its parts itself, and appears only when complete).
PUT_WHOLE_BYTES: Final = 64 * 1024 * 1024
_CLOSE: Final = operator.methodcaller("close")  # undoes an open cancelled meanwhile


def protocol_of(value: Any) -> str | None:
    """The protocol of a remote URL (``"s3"``), or None for anything else."""
    match = _URL.match(value) if isinstance(value, str) else None
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

    async def cat(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """The object's bytes (``start`` to ``end``, else all of a small one)."""
        return bytes(await self._call("cat_file", path, start=start, end=end))

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
        if not self._async:
            await run_to_completion(self.fs.put_file, local, path)
        elif size > PUT_WHOLE_BYTES:
            await self.fs._put_file(local, path)
        else:  # s3fs's _put_file would read the file on the event loop: read it in a thread
            await self.fs._pipe_file(path, await run_to_completion(Path(local).read_bytes))

    async def pipe(self, path: str, data: bytes) -> None:
        """Write ``data`` whole at ``path``."""
        await self._call("pipe_file", path, data)

    async def chunks(self, path: str, size: int, chunk_size: int) -> AsyncIterator[bytes]:
        """The object's bytes, streamed, up to ``size`` (a file opened here is closed here)."""
        if self._async:
            file = await self.fs.open_async(path, "rb")
            read = file.read
        else:
            file = await run_to_completion(self.fs.open, path, "rb", undo=_CLOSE)
            read = functools.partial(run_to_completion, file.read)
        try:
            left = size
            while left > 0 and (chunk := await read(min(chunk_size, left))):
                left -= len(chunk)
                yield bytes(chunk)
        finally:
            await self._close(file)

    async def _close(self, file: Any) -> None:
        if not self._async:
            await run_to_completion(file.close)
            return
        await file.close()
        body = getattr(file, "r", None)  # s3fs: the response being read, held until closed
        if body is not None and hasattr(body, "close"):
            body.close()

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
            cls = import_fsspec(url).get_filesystem_class(protocol)
            if getattr(cls, "async_impl", False):
                # Our own instance, bound to the running loop, closed by us (fsspec's cache
                # would hand one loop's session to another).
                chosen |= {"asynchronous": True, "skip_instance_cache": True}
            self._stores[key] = Store(cls(**chosen))
        return self._stores[key]

    async def aclose(self) -> None:
        """Close every filesystem made."""
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.aclose()
