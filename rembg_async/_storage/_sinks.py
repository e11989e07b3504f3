"""A result written to a remote store: received into a local temporary file as any result is
(chunked, checked whole), then put into the store in one piece, so that no half-written object
ever appears under its final name (an S3 multipart upload is visible only once complete)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from .._results import ImageFile
from ._stores import Store


@attrs.frozen(kw_only=True)
class RemoteTarget:
    """A remote output, with an async ``then()`` to run once the object is in place (a
    batch notes its provenance there)."""

    url: str
    then: Callable[[], Awaitable[object]] | None = None


async def put_result(store: Store, local: ImageFile, target: RemoteTarget) -> ImageFile:
    """Put the temporary result ``local`` at ``target``; the local file is deleted whatever
    happens. Returns the result as stored: its ``url``, and its path within the store."""
    path = store.path(target.url)
    try:
        await store.put(os.fspath(local.output_image_path), path, local.size)
    finally:
        await local.cleanup()
    if target.then is not None:
        await target.then()
    return ImageFile(
        output_image_path=Path(path),
        content_type=local.content_type,
        size=local.size,
        request_id=local.request_id,
        url=target.url,
    )
