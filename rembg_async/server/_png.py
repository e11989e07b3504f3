"""A fast PNG writer for cut-outs and masks: half Pillow's time for up to a fifth more bytes.

Pillow's encoder tries all five PNG filters on every row and keeps the best, which is most of
its time on a cut-out (2048 × 1536: 113 ms at level 1, of which zlib takes about 45). Here
each row gets *Sub* or *Up*, whichever leaves the smaller bytes on a sample of the row (one
byte in 16), computed in a few vectorised passes; then zlib at level 1 with its run-length
strategy, which suits the runs of zeros under the transparency (see `_cutout`). Measured on
that cut-out: 55 ms, 1,972 KB, against Pillow's 113 ms, 1,665 KB; on the shipped coffee
photo 225 KB against 211 (rembg's own: 203)."""

from __future__ import annotations

import struct
import zlib
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

#: PNG's colour type of each mode written here (others go through Pillow).
COLOUR_TYPES: Final = {"L": 0, "RGB": 2, "LA": 4, "RGBA": 6}
_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_SUB, _UP = 1, 2
#: Rows filtered and compressed at a time: small copies (2048 × 64 RGBA: 512 KB) that stay in
#: the cache, instead of three full-size arrays (2048 × 1536: 12 MB each) per image in work.
BAND_ROWS: Final = 64
#: One byte in this many is looked at to choose a row's filter: the choice is about as good
#: (half a percent larger) for a third of the time of looking at every byte (4 ms, not 15).
_SAMPLE_STEP: Final = 16


def write_png(image: Image.Image, *, band: int = BAND_ROWS) -> bytes | None:
    """``image`` as PNG bytes, or ``None`` for a mode this writer does not handle.

    The rows are filtered and compressed ``band`` at a time: no full-size copy is made.
    """
    colour_type = COLOUR_TYPES.get(image.mode)
    if colour_type is None:
        return None
    width, height = image.size
    channels = len(image.mode)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    parts = []
    above = np.zeros((1, width * channels), dtype=np.uint8)  # PNG's row above the first
    for top in range(0, height, band):
        box = (0, top, width, min(height, top + band))
        pixels = np.asarray(image.crop(box)).reshape(-1, width * channels)
        parts.append(compressor.compress(filtered_rows(pixels, channels, above).data))
        above = pixels[-1:]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = b"".join(parts)
    return b"".join((_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", idat), _chunk(b"IEND")))


def filtered_rows(
    pixels: npt.NDArray[np.uint8], step: int, above: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """PNG's filtered scanlines of ``(height, width × step)`` bytes with ``step`` bytes a
    pixel, under the row ``above`` (``(1, width × step)``): each row led by its filter type,
    Sub or Up, whichever looks smaller on a sample of its bytes."""
    rows = np.empty((pixels.shape[0], pixels.shape[1] + 1), dtype=np.uint8)
    body = rows[:, 1:]
    body[:, :step] = pixels[:, :step]
    np.subtract(pixels[:, step:], pixels[:, :-step], out=body[:, step:])  # Sub, everywhere
    sampled = pixels[:, ::_SAMPLE_STEP]
    previous = np.concatenate((above[:, ::_SAMPLE_STEP], sampled[:-1]))
    use_up = _smallness(sampled - previous) < _smallness(body[:, ::_SAMPLE_STEP])
    # Up over Sub where it is smaller: the first row from ``above``, the others in one pass.
    if use_up[0]:
        np.subtract(pixels[0], above[0], out=body[0])
    np.subtract(pixels[1:], pixels[:-1], out=body[1:], where=use_up[1:, np.newaxis])
    rows[:, 0] = np.where(use_up, _UP, _SUB)
    return rows


def _smallness(filtered: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """Each row's sum of bytes as signed distances from zero (libpng's heuristic)."""
    # In uint8 arithmetic -x is 256 - x: the smaller of the two is |x| read as a signed byte.
    result: npt.NDArray[np.uint32] = np.minimum(filtered, np.negative(filtered)).sum(
        axis=1, dtype=np.uint32
    )
    return result


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    checksum = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)
