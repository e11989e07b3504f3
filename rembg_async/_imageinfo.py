"""Image type and size from a file's first bytes, without decoding it: enough for the client to
refuse what the API would, and for the server to refuse a decompression bomb before decoding it."""

from __future__ import annotations

import struct
from typing import IO, Final

import attrs

from ._contract import (
    MAX_UPLOAD_BYTES,
    MSG_EMPTY_FILE,
    MSG_INVALID_SIGNATURE,
    OUTPUT_FORMATS,
    dimension_messages,
    file_too_large_message,
)

#: Enough bytes to tell the type and, for every type but JPEG, the size.
HEAD_BYTES: Final = 64


@attrs.frozen(kw_only=True)
class ImageInfo:
    """What the header says: the type (``png``, ``jpeg``, ``webp``, ``bmp``) and the size."""

    kind: str
    width: int | None
    height: int | None

    @property
    def mime_type(self) -> str:
        """The MIME type of this kind of image."""
        return OUTPUT_FORMATS[self.kind]

    @property
    def extension(self) -> str:
        """The usual file extension, without a dot."""
        return extension_for(self.kind)


def extension_for(kind: str) -> str:
    """The usual file extension of an image type (``jpeg`` files end in ``.jpg``)."""
    return "jpg" if kind == "jpeg" else kind


def sniff_kind(head: bytes) -> str | None:
    """The image type announced by the first bytes, or None if they are no image's signature."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    return None


def read_image_info(stream: IO[bytes]) -> ImageInfo | None:
    """Type and size of the image in ``stream`` (from its current position), or None; the size
    is None when the header is cut short or malformed (the decoder will judge). Moves the stream."""
    head = stream.read(HEAD_BYTES)
    kind = sniff_kind(head)
    if kind is None:
        return None
    size = _jpeg_size(stream) if kind == "jpeg" else _HEADER_READERS[kind](head)
    width, height = size if size is not None else (None, None)
    return ImageInfo(kind=kind, width=width, height=height)


def file_problem(size: int | None, info: ImageInfo | None) -> str | None:
    """The API's message for the first problem of an upload of ``size`` bytes whose header says
    ``info``, in the server's order (client and server both check with it); None: no problem."""
    if size == 0:
        return MSG_EMPTY_FILE
    if size is not None and size > MAX_UPLOAD_BYTES:
        return file_too_large_message(size)
    if info is None:
        return MSG_INVALID_SIGNATURE
    if info.width is None or info.height is None:
        return None
    return next(iter(dimension_messages(info.width, info.height)), None)


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _bmp_size(head: bytes) -> tuple[int, int] | None:
    header_size = struct.unpack("<I", head[14:18])[0]
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", head[18:22])
        return width, height
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)  # a negative height means top-down rows


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


_HEADER_READERS: Final = {"png": _png_size, "bmp": _bmp_size, "webp": _webp_size}

# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but don't.
_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_size(stream: IO[bytes]) -> tuple[int, int] | None:
    """Walk the JPEG segments (EXIF and ICC blocks can be large) up to the start of frame."""
    stream.seek(2)
    while (marker := _next_jpeg_marker(stream)) is not None:
        if marker in _STANDALONE_MARKERS:
            continue
        length_bytes = stream.read(2)
        if len(length_bytes) < 2:
            return None
        if marker in _SOF_MARKERS:
            frame = stream.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        length = struct.unpack(">H", length_bytes)[0]
        if length < 2:
            return None
        stream.seek(length - 2, 1)
    return None


def _next_jpeg_marker(stream: IO[bytes]) -> int | None:
    byte = stream.read(1)
    if byte != b"\xff":
        return None
    while byte == b"\xff":  # fill bytes may pad a marker
        byte = stream.read(1)
    if not byte or byte in (b"\x00", b"\xd9", b"\xda"):
        return None  # end of data, or entropy-coded data before any frame header
    return byte[0]
