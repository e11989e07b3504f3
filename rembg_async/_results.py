"""What ``remove()`` returns: an image file (temporary or the user's), or a base64 data URL."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, Final

import attrs

from ._closing import AsyncClosing
from ._files import run_to_completion


@attrs.define
class _Cleanup:
    done: bool = False


@attrs.frozen(kw_only=True)
class ImageFile(AsyncClosing):
    """An image on disk: ``output_image_path``, its ``content_type`` and ``size`` in bytes.

    For a remote ``output_path`` (a URL such as ``s3://bucket/out/cat.png``), ``url`` is where
    the image is and ``output_image_path`` its path within that store (``bucket/out/cat.png``);
    no local file is left, and ``cleanup()`` does nothing: the object is yours.

    ``await cleanup()`` deletes it (safe to call twice), as does leaving ``async with``. A
    temporary file (``temporary=True``, made when no ``output_path`` was given) that is never
    cleaned up gives a ``ResourceWarning`` when the object is collected.
    """

    output_image_path: Path
    content_type: str
    size: int
    temporary: bool = False
    #: The server's id of the request (``x-request-id``), if it sent one.
    request_id: str | None = None
    #: Where the image was stored, for a remote ``output_path``; None for a local file.
    url: str | None = None
    #: Served by the client's result cache (nothing was sent); False when the API answered.
    cached: bool = False
    _cleanup: _Cleanup = attrs.field(factory=_Cleanup, repr=False, eq=False)

    async def _close_on_exit(self) -> None:
        await run_to_completion(self._delete)

    async def cleanup(self) -> None:
        """Delete the file; nothing happens if it is already gone.

        Safe to cancel: the deletion completes even if the calling task is cancelled.
        (A `SyncImageFile`, from the sync client, is cleaned up without ``await``.)
        """
        await run_to_completion(self._delete)

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        """How Jupyter shows the image; a file that is gone, or remote, is described instead."""
        if self.url is not None:
            return {"text/plain": f"{self!r}: stored at {self.url}"}
        try:
            data = self.output_image_path.read_bytes()
        except FileNotFoundError:
            gone = "cleaned up" if self._cleanup.done else "the file no longer exists"
            return {"text/plain": f"{self!r}: {gone}, nothing to show"}
        return notebook_bundle(self.content_type, data)

    def close(self) -> None:
        """Delete the file now, without ``await`` (for the sync `Rembg`); safe to call twice.

        Like ``tempfile.NamedTemporaryFile``'s ``close()``, and what leaving ``with`` does.
        """
        self._delete()

    def _delete(self) -> None:
        """The one deletion behind ``cleanup()``, ``close()`` and leaving ``with``."""
        self._cleanup.done = True
        if self.url is not None:  # a remote object: never a local path to delete
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.output_image_path)

    def __enter__(self) -> ImageFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self.temporary and not self._cleanup.done and os.path.exists(self.output_image_path):
            warnings.warn(
                f"temporary image {self.output_image_path} was never cleaned up",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )


@attrs.frozen(kw_only=True)
class SyncImageFile(ImageFile):
    """The `ImageFile` of the sync client (`Rembg`, `rembg_sync`): ``cleanup()`` deletes it at
    once, without ``await``, as rembg.js's does.

    Everything else is an `ImageFile`'s (``close()``, ``with``, the ``ResourceWarning``). Code
    written for the async client that awaits ``cleanup()`` cannot take one: give it the
    ``close()`` both have.
    """

    # A plain method where ImageFile's is a coroutine: type checkers then accept
    # ``result.cleanup()`` here and flag ``await result.cleanup()``, and the reverse there.
    def cleanup(self) -> None:  # type: ignore[override]
        """Delete the file now; nothing happens if it is already gone. Safe to call twice."""
        self._delete()


def handed_to_sync(image: ImageFile) -> SyncImageFile:
    """``image`` as the sync client's result; the new object answers for the file (its
    clean-up and its ``ResourceWarning``), the old one no longer does."""
    if isinstance(image, SyncImageFile):
        return image
    fields = {str(a.alias): getattr(image, a.name) for a in attrs.fields(ImageFile)}
    fields["cleanup"] = _Cleanup(done=image._cleanup.done)
    image._cleanup.done = True
    return SyncImageFile(**fields)


@attrs.frozen(kw_only=True)
class Base64Image:
    """An image as a ``data:`` URL (``base64_image``) whose MIME type is the real format's."""

    base64_image: str = attrs.field(repr=lambda value: f"'{value[:40]}…'")
    content_type: str
    size: int
    #: The server's id of the request (``x-request-id``), if it sent one.
    request_id: str | None = None
    #: Served by the client's result cache (nothing was sent); False when the API answered.
    cached: bool = False

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        """How Jupyter shows the image inline (see `notebook_bundle`)."""
        return notebook_bundle(
            self.content_type, base64.b64decode(self.base64_image.partition(",")[2])
        )


#: The image types every Jupyter front end shows (JupyterLab, Notebook, VS Code, nbviewer).
_NOTEBOOK_IMAGES: Final = ("image/png", "image/jpeg")


def notebook_bundle(content_type: str, data: bytes) -> dict[str, Any]:
    """A Jupyter MIME bundle with one image in it, so a notebook stores it once. WebP and BMP,
    which not every front end shows, go as a PNG (with Pillow) or else an HTML ``<img>``."""
    if content_type in _NOTEBOOK_IMAGES:
        return {content_type: data}
    png = _as_png(data)
    if png is not None:
        return {"image/png": png}
    encoded = base64.b64encode(data).decode()
    return {"text/html": f'<img src="data:{content_type};base64,{encoded}"/>'}


def _as_png(data: bytes) -> bytes | None:
    """``data`` re-encoded as PNG for display; None without Pillow, or if Pillow cannot read it."""
    buffer = io.BytesIO()
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            image.save(buffer, "PNG")
    except (ImportError, OSError, ValueError):
        return None
    return buffer.getvalue()


@attrs.frozen(kw_only=True)
class ImageBytes:
    """An image in memory (``remove(..., return_bytes=True)``): its bytes (``data``), real
    ``content_type`` and ``size``. For small results; a large one is better streamed
    (``client.stream()``) or written to a file."""

    data: bytes = attrs.field(repr=False)
    content_type: str
    size: int
    #: The server's id of the request (``x-request-id``), if it sent one.
    request_id: str | None = None
    #: Served by the client's result cache (nothing was sent); False when the API answered.
    cached: bool = False

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        """How Jupyter shows the image inline (see `notebook_bundle`)."""
        return notebook_bundle(self.content_type, self.data)


def discard_temporary(result: ImageFile | Base64Image | ImageBytes | None) -> None:
    """Delete ``result``'s temporary file now: not awaited, so it completes in a cancelled task."""
    if isinstance(result, ImageFile) and result.temporary:
        result._delete()
