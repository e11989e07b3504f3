"""The result cache: never pay twice for the same answer.

One idea per module: what a cache is (`_protocol`), how an entry is framed and verified
(`_frame`), what a result's key is made of (`_key`), the local folder (`_folder`) and fsspec
(`_fsspec`) backends, and how a client uses its cache (`_seam`: lookups, one request per key
at a time, storing whole answers). The exchange calls the seam; `rembg_async._hits` serves
a hit into the call's sink.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._storage._stores import is_remote
from ._folder import FolderCache
from ._frame import Entry, frame, unframe
from ._fsspec import FsspecCache
from ._key import cache_key
from ._protocol import CacheLike, MaxAge, ResultCache
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
