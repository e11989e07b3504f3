"""A result cache's hit handed to the call's sink as a download would have left it: a file
(temporary, or the user's path, renamed into place whole), base64, bytes, or a stream; its
download progress one complete transfer (``loaded == total``). And the other way: the bytes
of an answer just received, to store them (`answer_body`).
"""

from __future__ import annotations

import base64
import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ._contract import OUTPUT_FORMATS
from ._download import save_whole
from ._files import run_to_completion
from ._imageinfo import extension_for
from ._progress import ProgressTracker
from ._results import Base64Image, ImageBytes, ImageFile
from ._stream_output import StreamedImage

_KINDS: Final = {mime: kind for kind, mime in OUTPUT_FORMATS.items()}


async def deliver_file(
    data: bytes,
    content_type: str,
    output_path: Path | None,
    tracker: ProgressTracker,
    then: Callable[[], object] | None = None,
) -> ImageFile:
    """A cached answer written whole where `receive_file` would have put it (``output_path``,
    else a new temporary file), running ``then()`` once it is there."""
    await _delivered(tracker, data)
    folder = output_path.parent if output_path is not None else Path(tempfile.gettempdir())
    extension = extension_for(_KINDS[content_type])
    target = await run_to_completion(
        save_whole, folder, [data], output_path, extension, then, undo=_forget
    )
    return ImageFile(
        output_image_path=target,
        content_type=content_type,
        size=len(data),
        temporary=output_path is None,
        cached=True,
    )


async def deliver_base64(data: bytes, content_type: str, tracker: ProgressTracker) -> Base64Image:
    """A cached answer as `receive_base64` would have made it."""
    await _delivered(tracker, data)
    data_url = f"data:{content_type};base64," + base64.b64encode(data).decode("ascii")
    size = len(data)
    return Base64Image(base64_image=data_url, content_type=content_type, size=size, cached=True)


async def deliver_bytes(data: bytes, content_type: str, tracker: ProgressTracker) -> ImageBytes:
    """A cached answer as `receive_bytes` would have made it."""
    await _delivered(tracker, data)
    return ImageBytes(data=data, content_type=content_type, size=len(data), cached=True)


async def deliver_stream(data: bytes, tracker: ProgressTracker) -> StreamedImage:
    """A cached answer handed over as ``client.stream()`` hands one over."""
    await _delivered(tracker, data)
    return StreamedImage(None, data, tracker, contextlib.nullcontext)


async def _delivered(tracker: ProgressTracker, data: bytes) -> None:
    await tracker.advance(len(data))
    await tracker.finish()


def _forget(path: Path) -> None:
    """A file written for a caller cancelled meanwhile: nobody will receive it."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def answer_body(result: ImageFile | Base64Image | ImageBytes) -> bytes:
    """The bytes of a result just received (a file's read back, in a thread), to cache them."""
    if isinstance(result, ImageBytes):
        return result.data
    if isinstance(result, Base64Image):
        return base64.b64decode(result.base64_image.partition(",")[2])
    return await run_to_completion(result.output_image_path.read_bytes)
