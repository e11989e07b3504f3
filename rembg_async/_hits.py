"""A result cache's hit handed over as a download would have left it, and the other way: the
bytes of an answer just received, to store them (`answer_body`)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator

from ._files import run_to_completion
from ._progress import ProgressTracker
from ._results import Base64Image, ImageBytes, ImageFile
from ._stream_output import StreamedImage


async def one_piece(data: bytes) -> AsyncIterator[bytes]:
    """A cached body as the chunks of a download (`_download`'s receivers take those)."""
    yield data


async def deliver_stream(data: bytes, tracker: ProgressTracker) -> StreamedImage:
    """A cached answer handed over as ``client.stream()`` hands one over."""
    await tracker.advance(len(data))
    await tracker.finish()
    return StreamedImage(None, data, tracker, contextlib.nullcontext)


async def answer_body(result: ImageFile | Base64Image | ImageBytes) -> bytes:
    """The bytes of a result just received (a file's read back, in a thread), to cache them."""
    if isinstance(result, ImageBytes):
        return result.data
    if isinstance(result, Base64Image):
        return base64.b64decode(result.base64_image.partition(",")[2])
    return await run_to_completion(result.output_image_path.read_bytes)
