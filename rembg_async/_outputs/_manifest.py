"""A batch's manifest: one JSON line per outcome, appended to a local file; a remote one is
kept in a local temporary file put whole into its store every `PUT_SECONDS` and at the end
(never half-written; a run killed unwarned loses its last seconds' lines)."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Final, Protocol

import aiofiles

from .._files import run_to_completion
from .._inputs import RemoteInputs
from .._storage._stores import Store, is_remote

#: The object is replaced by the local file at most this often while the run goes on.
PUT_SECONDS: Final = 10.0
#: A remote manifest is copied into the local file in chunks of this size.
_CHUNK_BYTES: Final = 1 << 20


class Manifest(Protocol):
    """Where a batch writes its manifest lines."""

    async def write(self, lines: str, /) -> object:
        """Add ``lines`` (whole lines, each ending in a newline)."""

    async def flush(self) -> None:
        """Push what was written on (a local file's buffer; a remote one when a put is due)."""

    async def close(self) -> None:
        """Let go of the manifest, with every line written."""


def manifest_place(manifest: str | os.PathLike[str] | None) -> Path | str | None:
    """The manifest's place: a local path, a remote URL, or None."""
    if manifest is None or (isinstance(manifest, str) and is_remote(manifest)):
        return manifest
    return Path(manifest)


async def open_manifest(place: Path | str | None, remote: RemoteInputs) -> Manifest | None:
    """The manifest at ``place`` (from `manifest_place`), ready for lines; None for none."""
    if place is None:
        return None
    if isinstance(place, str):  # a remote URL (a local one is a Path by now)
        return await RemoteManifest.open(remote.stores.store(place, remote.options), place)
    await run_to_completion(functools.partial(place.parent.mkdir, parents=True, exist_ok=True))
    # A write and a flush per line: writing the lines of the items that ended together in one
    # thread call shifted a batch's timing so that a stop raced the start of a request more
    # often (tests/test_cli_interrupt.py): a race to fix where requests start.
    return await aiofiles.open(place, "a", encoding="utf-8")


class RemoteManifest:
    """What a batch writes its manifest lines to, as it would to a local file."""

    def __init__(self, store: Store, url: str, file: IO[bytes], before: int = 0) -> None:
        #: The bytes the object held when the run started, at the head of the local file.
        self.before = before
        self._store = store
        self._url = url
        self._file = file
        self._put_at = time.monotonic()
        self._dirty = False

    @classmethod
    async def open(cls, store: Store, url: str) -> RemoteManifest:
        """Start from what the object has, copied by chunks: a long manifest is never held whole."""
        path = store.path(url)
        file = await run_to_completion(_spool, undo=_forget)
        try:
            try:
                size = int((await store.info(path))["size"])
            except FileNotFoundError:
                size = 0
            if size:
                async for chunk in store.chunks(path, size, _CHUNK_BYTES):
                    await run_to_completion(file.write, chunk)
            before = await run_to_completion(_end_line, file)
        except BaseException:
            await run_to_completion(_forget, file)
            raise
        return cls(store, url, file, before)

    async def lines_before(self) -> list[str]:
        """The lines the object held when the run started."""
        return await run_to_completion(_head_lines, self._file.name, self.before)

    async def write(self, line: str) -> None:
        """Add a line."""
        await run_to_completion(self._file.write, line.encode("utf-8"))
        self._dirty = True

    async def flush(self) -> None:
        """Put the manifest into its store when the last put is `PUT_SECONDS` old."""
        if self._dirty and time.monotonic() - self._put_at >= PUT_SECONDS:
            await self._put()

    async def _put(self) -> None:
        await run_to_completion(self._file.flush)
        size = await run_to_completion(os.fstat, self._file.fileno())
        await self._store.put(self._file.name, self._store.path(self._url), size.st_size)
        self._put_at = time.monotonic()
        self._dirty = False

    async def close(self) -> None:
        """Put the manifest into its store, and delete the local file."""
        try:
            if self._dirty:
                await self._put()
        finally:
            await run_to_completion(_forget, self._file)


def _spool() -> IO[bytes]:
    return tempfile.NamedTemporaryFile(prefix="rembg-manifest-", suffix=".jsonl", delete=False)


def _end_line(file: IO[bytes]) -> int:
    """The size of what was copied; a line torn by another writer is ended, apart from ours."""
    size = file.tell()
    if size:
        file.flush()
        with open(file.name, "rb") as copy:
            copy.seek(size - 1)
            if copy.read(1) != b"\n":
                file.write(b"\n")
    return size


def _head_lines(name: str, size: int) -> list[str]:
    with open(name, "rb") as file:
        return file.read(size).decode("utf-8", "replace").splitlines()


def _forget(file: IO[bytes]) -> None:
    file.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(file.name)
