"""A fast PNG writer for cut-outs and masks: about half Pillow's time at a tenth more bytes.

Pillow's encoder tries all five PNG filters on every row and keeps the best, which is most of
its time on a cut-out (2048 × 1536: 113 ms at level 1, of which zlib takes about 45). Here
each row gets *Sub* or *Up*, whichever leaves the smaller bytes on a sample of the row (one
byte in 16), computed in a few vectorised passes; then zlib at level 1 with its run-length
strategy, which suits the runs of zeros under the transparency (see `_cutout`). Measured on
that cut-out: 51 ms, 1,971 KB, against Pillow's 113 ms, 1,665 KB; on the shipped coffee
photo 225 KB against 211 (rembg's own: 203).
"""

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
#: One byte in this many is looked at to choose a row's filter: the choice is about as good
#: (half a percent larger) for a third of the time of looking at every byte (4 ms, not 15).
_SAMPLE_STEP: Final = 16


def write_png(image: Image.Image) -> bytes | None:
    """``image`` as PNG bytes, or ``None`` for a mode this writer does not handle."""
    colour_type = COLOUR_TYPES.get(image.mode)
    if colour_type is None:
        return None
    width, height = image.size
    channels = len(image.mode)
    pixels = np.asarray(image).reshape(height, width * channels)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = compressor.compress(filtered_rows(pixels, channels).data) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join((_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", data), _chunk(b"IEND")))


def filtered_rows(pixels: npt.NDArray[np.uint8], step: int) -> npt.NDArray[np.uint8]:
    """PNG's filtered scanlines of ``(height, width × step)`` bytes with ``step`` bytes a
    pixel: each row led by its filter type, Sub or Up, whichever looks smaller."""
    height, length = pixels.shape
    rows = np.empty((height, length + 1), dtype=np.uint8)
    sub = rows[:, 1:]  # written in place; rows that choose Up get it copied over
    sub[:, :step] = pixels[:, :step]
    np.subtract(pixels[:, step:], pixels[:, :-step], out=sub[:, step:])
    up = np.empty_like(pixels)
    up[0] = pixels[0]  # the row above the first is zeros
    np.subtract(pixels[1:], pixels[:-1], out=up[1:])
    use_up = _smallness(up) < _smallness(sub)
    sub[use_up] = up[use_up]
    rows[:, 0] = np.where(use_up, _UP, _SUB)
    return rows


def _smallness(filtered: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """Each row's sum of sampled bytes as signed distances from zero (libpng's heuristic)."""
    sample = filtered[:, ::_SAMPLE_STEP]
    # In uint8 arithmetic -x is 256 - x: the smaller of the two is |x| read as a signed byte.
    result: npt.NDArray[np.uint32] = np.minimum(sample, np.negative(sample)).sum(
        axis=1, dtype=np.uint32
    )
    return result


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    checksum = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)
