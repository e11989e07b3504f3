"""`FsspecCache`: entries as objects in any store fsspec knows (``s3://``, ``gs://``,
``memory://``…), through the package's stores (`_storage`).

An entry is one object, ``<url>/<first two digits of the key>/<key>``, written whole in one
request (an S3 PUT is atomic: a reader sees the old object or the new one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .._storage._stores import Stores, is_remote
from ._frame import stored_at
from ._protocol import MaxAge, max_age_seconds


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
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        max_age: MaxAge = None,
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
            data = await store.cat(self._path(store.path(self.url), key))
        except FileNotFoundError:
            return None
        if self.max_age is not None:
            stored = stored_at(data)
            if stored is None or self._clock() - stored > self.max_age:
                return None
        return data

    async def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, in one write."""
        store = self._stores.store(self.url)
        await store.pipe(self._path(store.path(self.url), key), value)

    async def aclose(self) -> None:
        """Close the filesystem's connections."""
        await self._stores.aclose()

    @staticmethod
    def _path(root: str, key: str) -> str:
        return f"{root.rstrip('/')}/{key[:2]}/{key}"
