"""A client's use of its cache, entered before any permit or credit is taken: a hit sends
nothing; a miss holds its key until the call is over, so identical calls wait, then find the
answer (a failure is not shared). A failing backend is logged, and costs a request, not the call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import attrs
from yarl import URL

from .._contract import OUTPUT_FORMATS
from .._imageinfo import sniff_kind
from ._backends import ResultCache
from ._frame import Entry, cache_key, frame, normalised_url, unframe

logger = logging.getLogger("rembg_async")


@attrs.frozen(kw_only=True)
class Turn:
    """One call's place at the cache: its ``key``, and the ``entry`` found (None: a miss, and
    this call holds the key's turn until it is over)."""

    seam: CacheSeam
    key: str
    entry: Entry | None

    async def store(self, body: bytes, declared_type: str, declared_length: int | None) -> bool:
        """Store a 200's whole ``body`` if it is what the answer declared: an image of its
        ``Content-Type`` (from its bytes), of its length; whether it was stored."""
        content_type = OUTPUT_FORMATS.get(sniff_kind(body[:32]) or "")
        if content_type != declared_type or declared_length not in (None, len(body)):
            logger.info(
                "not cached: the answer declared %s of %s bytes, and was %s of %s bytes",
                declared_type, declared_length, content_type, len(body),
            )  # fmt: skip
            return False
        return await self.seam.put(self.key, body, declared_type)

    async def store_read(
        self, read: Callable[[], Awaitable[bytes]], declared_type: str, length: int | None
    ) -> bool:
        """`store` the body that ``read()`` gives (a result's file read back); a body that
        cannot be read (moved or deleted meanwhile) is not stored, and the call goes on."""
        try:
            body = await read()
        except OSError:
            logger.warning("not cached: the answer could not be read back", exc_info=True)
            return False
        return await self.store(body, declared_type, length)


class CacheSeam:
    """A client's cache (a `ResultCache`) for the API at ``api_url``."""

    def __init__(self, cache: ResultCache, api_url: str | URL) -> None:
        self.cache = cache
        self._api = normalised_url(api_url)
        self._fetching: dict[str, asyncio.Event] = {}
        self._clock = time.time

    def key(self, digest: str, fields: Mapping[str, str]) -> str:
        """The key of an input whose bytes have the sha256 ``digest``, sent with ``fields``."""
        return cache_key(digest, fields, self._api)

    @contextlib.asynccontextmanager
    async def turn(self, digest: str, fields: Mapping[str, str]) -> AsyncIterator[Turn]:
        """The call's `Turn`: a hit, or a miss holding the key until the block ends."""
        key = self.key(digest, fields)
        while True:
            entry = await self.lookup(key)
            if entry is not None:
                yield Turn(seam=self, key=key, entry=entry)
                return
            first = self._fetching.get(key)
            if first is None:
                break
            await first.wait()  # an identical call is fetching it: look again once it is over
        done = asyncio.Event()
        self._fetching[key] = done
        try:
            yield Turn(seam=self, key=key, entry=None)
        finally:
            del self._fetching[key]
            done.set()

    async def lookup(self, key: str) -> Entry | None:
        """The verified entry under ``key``; None when there is none, or it is damaged."""
        try:
            data = await self.cache.get(key)
        except Exception:  # a cache that fails costs a request, not the call
            logger.warning("the cache %r failed to get an entry: a miss", self.cache, exc_info=True)
            return None
        if data is None:
            return None
        entry = unframe(key, bytes(data))
        if entry is None:
            logger.warning("a damaged cache entry was found in %r: fetched again", self.cache)
        return entry

    async def put(self, key: str, body: bytes, content_type: str) -> bool:
        """Store ``body`` under ``key``, framed; whether it was stored."""
        try:
            await self.cache.put(key, frame(key, body, content_type, self._clock()))
        except Exception:
            logger.warning("the cache %r failed to store an entry", self.cache, exc_info=True)
            return False
        return True
