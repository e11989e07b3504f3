"""What a cache is (`ResultCache`), the two the library ships, and which one ``cache=`` means:
`FolderCache` (a file per entry, renamed into place whole, evicted least recently used first)
and `FsspecCache` (an object per entry, written in one request: an S3 PUT is atomic)."""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from .._files import run_to_completion
from .._storage._stores import Store, Stores, is_remote
from ._frame import expired

#: Eviction brings the folder down to this share of ``max_bytes``.
LOW_WATER: Final = 0.9
#: A temporary file older than this was left by a process that died while writing.
STALE_TEMP_SECONDS: Final = 3600.0
_TEMP_PREFIX: Final = ".tmp-"
_KEY: Final = re.compile(r"[0-9a-f]{16,128}")


@runtime_checkable
class ResultCache(Protocol):
    """Where results are kept between calls, runs and machines: bytes by key.

    The library frames and verifies every entry itself (a header with the key, type, length,
    sha256 and time stored, then the image), so a backend only stores bytes: a dict, Redis,
    a database. ``get`` returns None for a key it does not hold; ``put`` replaces any entry
    under the key, ideally atomically (a reader then sees the old entry or the new one; a
    damaged one is a miss all the same). Keys are 64 hexadecimal digits.
    """

    async def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or None."""
        ...

    async def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        ...


#: What ``cache=`` takes: a folder, an fsspec URL, a `ResultCache`, or None (no cache).
CacheLike = str | os.PathLike[str] | ResultCache | None
#: How old an entry may be: seconds, or a `datetime.timedelta`.
MaxAge = float | datetime.timedelta | None


def max_age_seconds(max_age: MaxAge) -> float | None:
    """``max_age`` in seconds (None: no limit); refused when negative."""
    if max_age is None:
        return None
    seconds = max_age.total_seconds() if isinstance(max_age, datetime.timedelta) else max_age
    if seconds < 0:
        raise ValueError(f"max_age cannot be negative, not {max_age!r}")
    return float(seconds)


def as_cache(cache: Any, storage_options: Mapping[str, Any] | None = None) -> ResultCache | None:
    """The `ResultCache` for ``cache=``: a URL fsspec knows is an `FsspecCache` (with
    ``storage_options``), another string or path a `FolderCache`, a `ResultCache` itself;
    None stays None (no cache)."""
    if cache is None:
        return None
    if isinstance(cache, str) and is_remote(cache):
        return FsspecCache(cache, storage_options=storage_options)
    if isinstance(cache, str) and cache.startswith("file://"):
        return FolderCache(cache.removeprefix("file://"))
    if isinstance(cache, (str, os.PathLike)):
        return FolderCache(cache)
    if isinstance(cache, ResultCache):
        return cache
    raise TypeError(
        "cache must be a folder, an fsspec URL, or an object with async get(key) and "
        f"put(key, value) (a ResultCache), not {type(cache).__name__}"
    )


class FolderCache:
    """A `ResultCache` in a local folder (made if missing), shared by every process that
    uses it.

    ``max_bytes``: when the entries grow past it, the least recently used are removed (down
    to 90% of it). ``max_age`` (seconds or a ``timedelta``): older entries are misses, and
    are fetched again.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int | None = None, max_age: MaxAge = None
    ) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes cannot be negative, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age = max_age_seconds(max_age)
        self._clock = time.time  # replaced by tests that need time to pass
        self._bytes: int | None = None  # the entries' size as counted; None: not scanned yet
        self._evicting = False

    def __repr__(self) -> str:
        return f"FolderCache({str(self.path)!r}, max_bytes={self.max_bytes!r})"

    async def get(self, key: str) -> bytes | None:
        """The entry under ``key``, or None (none, or older than ``max_age``)."""
        data = await run_to_completion(_read_and_touch, self._entry(key))
        if data is not None and expired(data, self.max_age, self._clock()):
            await run_to_completion(functools.partial(self._entry(key).unlink, missing_ok=True))
            return None
        return data

    async def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (atomically); then evict if the folder is too large."""
        await run_to_completion(_write_atomically, self._entry(key), value)
        if self.max_bytes is None:
            return
        # The size is learnt by one scan, then counted: a full cache is scanned once per tenth
        # of it written, not at every write.
        if self._bytes is not None:
            self._bytes += len(value)
        if (self._bytes is None or self._bytes > self.max_bytes) and not self._evicting:
            self._evicting = True
            try:
                self._bytes = await run_to_completion(
                    evict, self.path, self.max_bytes, int(self.max_bytes * LOW_WATER)
                )
            finally:
                self._evicting = False

    def _entry(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.path / key[:2] / key


def _read_and_touch(path: Path) -> bytes | None:
    """The entry's bytes; its time set to now, so the oldest times are the least recently used."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    with contextlib.suppress(OSError):  # gone meanwhile, or a read-only cache: still a hit
        now = time.time_ns()
        os.utime(path, ns=(now, now))
    return data


def _write_atomically(path: Path, value: bytes) -> None:
    """Written beside, then renamed over: a reader sees a whole entry or none."""
    temporary = path.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}")
    try:
        try:
            handle = open(temporary, "xb")  # noqa: SIM115  # closed below, before the rename
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(temporary, "xb")  # noqa: SIM115
        with handle:
            handle.write(value)
        now = time.time_ns()  # exact, not the file system's coarser clock: LRU order
        os.utime(temporary, ns=(now, now))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def evict(root: Path, max_bytes: int, low_water: int) -> int:
    """Remove the least recently used entries under ``root`` when they exceed ``max_bytes``,
    down to ``low_water`` bytes; returns the size left (blocking: in a thread)."""
    entries = list(_entries(root))
    total = sum(size for _, size, _ in entries)
    if total <= max_bytes:
        return total
    for _, size, path in sorted(entries):
        if total <= low_water:
            break
        Path(path).unlink(missing_ok=True)
        total -= size
    return total


def _entries(root: Path) -> Iterator[tuple[int, int, str]]:
    """Each entry's time of last use, size and path (stale temporary files deleted); what
    another process deletes meanwhile is skipped."""
    now = time.time()
    for shard in _listing(str(root)):
        if not shard.is_dir(follow_symlinks=False):
            continue
        for file in _listing(shard.path):
            try:
                status = file.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not file.name.startswith(_TEMP_PREFIX):
                yield status.st_mtime_ns, status.st_size, file.path
            elif now - status.st_mtime > STALE_TEMP_SECONDS:
                Path(file.path).unlink(missing_ok=True)


def _listing(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as found:
            return list(found)
    except FileNotFoundError:
        return []


class FsspecCache:
    """A `ResultCache` in a remote store: ``FsspecCache("s3://bucket/rembg-cache/")``.

    ``storage_options`` go to fsspec (credentials, ``client_kwargs={"endpoint_url": ...}``).
    ``max_age`` (seconds or a ``timedelta``): older entries are misses, and are fetched again.
    No size limit: give the bucket a lifecycle rule. Several processes and machines may share
    one bucket; one `FsspecCache` object serves one event loop at a time (an async
    filesystem, s3fs's, belongs to the loop that made it). The filesystem is made at first use
    and closed by `aclose` (a client made with ``cache="s3://..."`` closes its own); it is
    made again if used after.
    """

    def __init__(
        self, url: str, *, storage_options: Mapping[str, Any] | None = None, max_age: MaxAge = None
    ) -> None:
        if not is_remote(url):
            raise ValueError(f"not a URL fsspec knows: {url!r} (for a folder, use FolderCache)")
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.max_age = max_age_seconds(max_age)
        self._stores = Stores(self.storage_options)
        self._clock = time.time  # replaced by tests that need time to pass

    def __repr__(self) -> str:
        return f"FsspecCache({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Sent to Dask workers: the filesystem (a live session) is made again there.
        return {**self.__dict__, "_stores": None, "_clock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stores = Stores(self.storage_options)
        self._clock = time.time

    async def get(self, key: str) -> bytes | None:
        """The entry under ``key``, or None (none, or older than ``max_age``)."""
        store = self._stores.store(self.url)
        try:
            data = await store.cat(_object(store, self.url, key))
        except FileNotFoundError:
            return None
        return None if expired(data, self.max_age, self._clock()) else data

    async def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, in one write."""
        store = self._stores.store(self.url)
        await store.pipe(_object(store, self.url, key), value)

    async def aclose(self) -> None:
        """Close the filesystem's connections."""
        await self._stores.aclose()


def _object(store: Store, url: str, key: str) -> str:
    return f"{store.path(url).rstrip('/')}/{key[:2]}/{key}"
