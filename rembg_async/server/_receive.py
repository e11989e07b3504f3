"""Reading the multipart form of ``POST /rmbg`` as it streams in.

The image goes to a spooled temporary file (memory for small ones, disk beyond), so a 50 MB
upload is never held in memory at all, let alone twice. Past the size limit nothing more is kept;
the rest is only counted, up to a drain limit, so that the "too large" message can print the real
size; a client that goes on beyond that is answered at once and disconnected.
"""

from __future__ import annotations

import tempfile
from typing import IO, Final

import attrs
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from .._contract import MAX_UPLOAD_BYTES, extension_problem

CHUNK_BYTES: Final = 256 * 1024
#: Uploads smaller than this stay in memory; larger ones spill to a temporary file.
SPOOL_IN_MEMORY_BYTES: Final = 2 * 1024 * 1024
#: The longest value kept for a text field; the API's fields are all short.
MAX_FIELD_BYTES: Final = 4096
#: The text fields the API reads; every other field is ignored, as the API does.
FIELD_NAMES: Final = frozenset(
    {"format", "w", "h", "exact_resize", "mask", "bg_color", "angle", "expand"}
)


@attrs.define
class ReceivedFile:
    """The uploaded image: its name, its full size, and its bytes up to the size limit."""

    filename: str
    size: int
    content: IO[bytes]
    complete: bool  # False when the client sent more than the drain limit

    def close(self) -> None:
        """Release the spooled bytes."""
        self.content.close()


@attrs.define
class ReceivedForm:
    """The fields of the form (first value of each) and the image part, if there was one.

    ``image_filename`` is the name of the first ``image`` file part as sent (possibly empty, and
    None when there was no such part); ``image`` holds its bytes unless its name alone refused it.
    """

    fields: dict[str, str] = attrs.field(factory=dict)
    image: ReceivedFile | None = None
    image_filename: str | None = None

    def close(self) -> None:
        """Release the image's bytes, if any."""
        if self.image is not None:
            self.image.close()


async def receive_form(request: web.Request, *, drain_limit: int) -> ReceivedForm:
    """Read the request's multipart form; a body that is no readable form gives an empty one."""
    form = ReceivedForm()
    if not request.content_type.startswith("multipart/"):
        return form
    try:
        reader = await request.multipart()
        await _read_parts(reader, form, drain_limit)
    except (ValueError, LookupError, AssertionError, HttpProcessingError):
        # A malformed body is answered like a form with no image in it.
        form.close()
        return ReceivedForm()
    except BaseException:
        form.close()
        raise
    return form


async def _read_parts(reader: MultipartReader, form: ReceivedForm, drain_limit: int) -> None:
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            await part.release()  # a nested multipart: not something the API reads
            continue
        if part.name == "image" and part.filename is not None and form.image_filename is None:
            form.image_filename = part.filename
            if not part.filename or extension_problem(part.filename):
                await part.release()  # refused by its name alone: no need to keep the bytes
                continue
            form.image = await _receive_file(part, part.filename, drain_limit)
            if not form.image.complete:
                return  # the client is still sending: answer now, read no further
        elif part.name in FIELD_NAMES and part.name not in form.fields:
            form.fields[part.name] = await _read_text(part)
        else:
            await part.release()


async def _receive_file(part: BodyPartReader, filename: str, drain_limit: int) -> ReceivedFile:
    # Not a `with`: the file outlives this function, owned (and closed) by the ReceivedFile.
    content: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    size = 0
    try:
        while chunk := await part.read_chunk(CHUNK_BYTES):
            size += len(chunk)
            if size <= MAX_UPLOAD_BYTES:
                # A page-cache write of one chunk costs microseconds; not worth a thread hop.
                content.write(chunk)
            elif size > drain_limit:
                return ReceivedFile(filename=filename, size=size, content=content, complete=False)
    except BaseException:
        content.close()
        raise
    content.seek(0)
    return ReceivedFile(filename=filename, size=size, content=content, complete=True)


async def _read_text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        if len(data) < MAX_FIELD_BYTES:
            data += chunk[: MAX_FIELD_BYTES - len(data)]
    charset = part.get_charset(default="utf-8")
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")
