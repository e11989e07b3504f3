"""A batch's manifest kept in a remote store (``manifest="s3://bucket/out/manifest.jsonl"``).

An object cannot be appended to. So the manifest is kept in a local temporary file, holding
what the object had when the run started and then one line per outcome, and that file is put
whole into the store every `PUT_SECONDS` and when the run ends (or is stopped or cancelled).
The object is thus never half-written, but a run killed without warning loses the lines of
its last seconds: the outputs' index (see `_tree`) is what a re-run trusts to skip.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import IO, Final

from .._threads import run_to_completion
from ._stores import Store

#: The object is replaced by the local file at most this often while the run goes on.
PUT_SECONDS: Final = 10.0


class RemoteManifest:
    """What a batch writes its manifest lines to, as it would to a local file."""

    def __init__(self, store: Store, url: str, file: IO[bytes], before: bytes = b"") -> None:
        #: What the object held when the run started (a resuming run reads it).
        self.before = before
        self._store = store
        self._url = url
        self._file = file
        self._put_at = time.monotonic()
        self._dirty = False

    @classmethod
    async def open(cls, store: Store, url: str) -> RemoteManifest:
        """Start from what the object has (nothing if it is not there yet)."""
        path = store.path(url)
        try:
            before = await store.cat(path)
        except FileNotFoundError:
            before = b""
        file = await run_to_completion(_spool, before, undo=_forget)
        return cls(store, url, file, before)

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


def _spool(before: bytes) -> IO[bytes]:
    file = tempfile.NamedTemporaryFile(prefix="rembg-manifest-", suffix=".jsonl", delete=False)  # noqa: SIM115
    try:
        file.write(before)
        if before and not before.endswith(b"\n"):
            file.write(b"\n")  # a line torn by some other writer stays apart from ours
    except BaseException:
        _forget(file)
        raise
    return file


def _forget(file: IO[bytes]) -> None:
    file.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(file.name)
