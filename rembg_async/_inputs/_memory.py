"""The inputs held in memory or by the caller: bytes, ``{"base64": ...}`` (a ``data:`` URL too)
and a seekable binary file object, each sent from where it is."""

from __future__ import annotations

import base64
import binascii
import io
import os
from collections.abc import AsyncGenerator, Mapping
from typing import IO

from .._files import run_to_completion
from .._imageinfo import ImageInfo, read_image_info
from ._source import Opening, Source, checked_source, input_error, memory_source, read_exactly


async def open_bytes(image: bytes | bytearray | memoryview, where: Opening) -> Source:
    """The bytes' `Source`."""
    await where.check_place()
    return memory_source(memoryview(image).cast("B"), name=None)


async def open_base64(image: Mapping[str, str], where: Opening) -> Source:
    """The decoded image's `Source` (a ``data:`` URL's prefix is dropped)."""
    await where.check_place()
    text = image.get("base64")
    if not isinstance(text, str):
        raise TypeError("a dict input_image needs a 'base64' string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise input_error("The 'base64' input is not valid base64.") from None
    return memory_source(memoryview(data), name=None)


async def open_file_object(file: IO[bytes], where: Opening) -> Source:
    """The file's `Source`, from its position now to its end."""
    await where.check_place()
    name = os.path.basename(str(getattr(file, "name", ""))) or None

    def inspect() -> tuple[int, int, ImageInfo | None]:
        start = file.tell()
        size = file.seek(0, io.SEEK_END) - start
        file.seek(start)
        info = read_image_info(file)
        file.seek(start)
        return start, size, info

    start, size, info = await run_to_completion(inspect)

    async def chunks(chunk_size: int) -> AsyncGenerator[bytes, None]:
        await run_to_completion(file.seek, start)
        try:
            async for chunk in read_exactly(
                name or "the input file object", file.read, size, chunk_size
            ):
                yield chunk
        finally:
            file.seek(start)  # leave the caller's file where it was (a seek is instant)

    return checked_source(name, size, info, chunks)
