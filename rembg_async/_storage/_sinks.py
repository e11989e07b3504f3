"""A result for a remote store: received into a local temporary file as any result is, then put
in one piece, so that no half-written object appears under its final name."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from .._results import ImageFile
from ._stores import Store


@attrs.frozen(kw_only=True)
class RemoteTarget:
    """A remote output, and what to run once it is in place (a batch notes its provenance)."""

    url: str
    then: Callable[[], Awaitable[object]] | None = None


async def put_result(store: Store, local: ImageFile, target: RemoteTarget) -> ImageFile:
    """Put the temporary result ``local`` at ``target`` (deleting it whatever happens); the
    result as stored: its ``url``, and its path within the store."""
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
