"""A result written to a remote store: received into a local temporary file as any result is
(chunked, checked whole), then put into the store in one piece, so that no half-written object
ever appears under its final name (an S3 multipart upload is visible only once complete)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from .._results import ImageFile
from ._stores import Store


@attrs.frozen(kw_only=True)
class RemoteTarget:
    """A remote ``output_path``, with an async ``then()`` to run once the object is in place (a
    batch notes its provenance there)."""

    url: str
    then: Callable[[], Awaitable[object]] | None = None

    def __fspath__(self) -> str:
        return self.url


def remote_target(output_path: Any) -> RemoteTarget | None:
    """``output_path`` as a `RemoteTarget` when it names a remote object, else None."""
    from ._stores import is_remote

    if isinstance(output_path, RemoteTarget):
        return output_path
    if isinstance(output_path, str) and is_remote(output_path):
        return RemoteTarget(url=output_path)
    return None


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
