"""The result cache: never pay twice for the same answer. What a cache is and the backends
(`_backends`), an entry's key and frame (`_frame`), and a client's use of its cache (`_seam`);
the exchange serves a hit into the call's sink, as a download (`rembg_async._hits`)."""

from __future__ import annotations

from ._backends import CacheLike, FolderCache, FsspecCache, MaxAge, ResultCache, as_cache
from ._frame import Entry, cache_key, frame, unframe
from ._seam import CacheSeam, Turn

__all__ = [
    "CacheLike",
    "CacheSeam",
    "Entry",
    "FolderCache",
    "FsspecCache",
    "MaxAge",
    "ResultCache",
    "Turn",
    "as_cache",
    "cache_key",
    "frame",
    "unframe",
]
