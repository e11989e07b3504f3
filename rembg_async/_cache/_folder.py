"""`FolderCache`: entries as files in a local folder, written atomically, evicted LRU.

An entry is ``<folder>/<first two digits of the key>/<key>``, written to a temporary file
beside it then renamed over it (`os.replace`), so a reader sees a whole entry or none, and two
processes writing one key both leave a valid one. A hit sets the file's modification time to
now: the least recently used entries are those with the oldest times. The folder's size is
learnt by one scan at the first write, then counted as entries are written; past
``max_bytes``, a scan removes the oldest entries down to `LOW_WATER` of it (so that a full
cache is scanned once per tenth of its size written, not at every write).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .._files import run_to_completion
from ._frame import stored_at
from ._protocol import MaxAge, max_age_seconds

#: Eviction brings the folder down to this share of ``max_bytes``.
LOW_WATER: Final = 0.9
#: A temporary file older than this was left by a process that died while writing.
STALE_TEMP_SECONDS: Final = 3600.0
_TEMP_PREFIX: Final = ".tmp-"
_KEY: Final = re.compile(r"[0-9a-f]{16,128}")


class FolderCache:
    """A `ResultCache` in a local folder (made if missing), shared by every process that
    uses it.

    ``max_bytes``: when the entries grow past it, the least recently used are removed (down
    to 90% of it). ``max_age`` (seconds or a ``timedelta``): older entries are misses, and
    are fetched again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        max_age: MaxAge = None,
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
        if data is not None and self._expired(data):
            await run_to_completion(_discard, self._entry(key))
            return None
        return data

    async def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (atomically); then evict if the folder is too large."""
        await run_to_completion(_write_atomically, self._entry(key), value)
        if self.max_bytes is None:
            return
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

    def _expired(self, data: bytes) -> bool:
        if self.max_age is None:
            return False
        stored = stored_at(data)
        return stored is None or self._clock() - stored > self.max_age


def _read_and_touch(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    with contextlib.suppress(OSError):  # gone meanwhile, or a read-only cache: still a hit
        now = time.time_ns()
        os.utime(path, ns=(now, now))
    return data


def _write_atomically(path: Path, value: bytes) -> None:
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
        _discard(temporary)
        raise


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
        _discard(Path(path))
        total -= size
    return total


def _entries(root: Path) -> Iterator[tuple[int, int, str]]:
    """Each entry's time of last use, size and path; stale temporary files are deleted. What
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
                _discard(Path(file.path))


def _listing(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as found:
            return list(found)
    except FileNotFoundError:
        return []
