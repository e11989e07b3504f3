"""The image work of ``/rmbg``, blocking, in a worker thread, in the API's order: remove the
background (`cut_out`) → resize → rotate (with ``expand``) → background colour → encode (PNG by
`write_png`, twice as fast as Pillow's)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import IO, Final, TypeAlias

import attrs
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops, ImageFilter, ImageOps

from .._contract import (
    MAX_DIMENSION,
    MSG_INVALID_SIGNATURE,
    OPAQUE_FORMATS,
    OUTPUT_FORMATS,
    dimension_messages,
)
from ._matting import Matting
from ._state import APIError

# Our own limit (10,000 px a side) is checked from the header before any decoding; Pillow's
# lower default would refuse images the API accepts.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_DIMENSION * MAX_DIMENSION)

# Fast settings: the local server must never be what a client's test or benchmark waits on.
_ENCODER_OPTIONS: Final[dict[str, dict[str, int]]] = {
    # For the modes `write_png` leaves out. zlib's run-length strategy suits the zeros under
    # the transparency: on a 2048×1536 cut-out 1,665 KB in 117 ms, level 6 1,605 KB in 374.
    "png": {"compress_level": 1, "compress_type": 3},
    "jpeg": {"quality": 90},
    # method 0: a third of method 1's time, ~40% larger. exact=False lets libwebp fill the
    # transparent pixels, which `cut_out` made zeros: smaller files, nothing hidden either way.
    "webp": {"quality": 90, "method": 0},
    "bmp": {},
}
#: PNG's colour type of each mode `write_png` writes (others go through Pillow).
COLOUR_TYPES: Final = {"L": 0, "RGB": 2, "LA": 4, "RGBA": 6}
_SUB, _UP = 1, 2
#: Rows filtered and compressed at a time: small copies (2048 × 64 RGBA: 512 KB) that stay in
#: the cache, instead of three full-size arrays (2048 × 1536: 12 MB each) per image in work.
BAND_ROWS: Final = 64
#: One byte in this many is looked at to choose a row's filter: about as good a choice (half a
#: percent larger) for a third of the time of looking at every byte (4 ms, not 15).
_SAMPLE_STEP: Final = 16
#: The longest side of the copy the local means are taken on: the model's own, as the mask has
#: no finer detail than its 320 × 320 prediction.
WORK_SIDE: Final = 320
#: The blur radii of the means' two passes, as shares of the copy's longest side (the paper: 90
#: and 6 px on photos of about 1,500; wider reaches past wider soft edges, on the tests' blurred
#: disc a green tint of 71 at most, not 102 at 1/16).
WIDE_SHARE: Final = 1 / 8
NARROW_SHARE: Final = 1 / 250
_Bytes: TypeAlias = npt.NDArray[np.uint8]
_Index: TypeAlias = npt.NDArray[np.intp]


@attrs.frozen(kw_only=True)
class RenderOptions:
    """The validated options of one ``/rmbg`` call."""

    format: str = "webp"
    w: int | None = None
    h: int | None = None
    exact_resize: bool = False
    mask: bool = False
    bg_color: tuple[int, int, int, int] | None = None
    angle: float = 0.0
    expand: bool = True


@attrs.frozen
class Rendered:
    """The encoded result and its MIME type."""

    body: bytes
    content_type: str


def render(source: IO[bytes], options: RenderOptions, matting: Matting) -> Rendered:
    """The whole pipeline, from the uploaded bytes to the encoded answer."""
    cutout = remove_background(decode(source), matting)
    size = target_size(cutout.width, cutout.height, options)
    if size != cutout.size:
        cutout = cutout.resize(size, Image.Resampling.LANCZOS)
    if options.angle:
        cutout = cutout.rotate(
            options.angle, resample=Image.Resampling.BICUBIC, expand=options.expand
        )
    result = cutout.getchannel("A") if options.mask else apply_background(cutout, options)
    return encode(result, options.format)


def decode(source: IO[bytes]) -> Image.Image:
    """The upright image (EXIF orientation applied), fully loaded; the API's 400 when the
    bytes that passed the signature check cannot be decoded, or are too large after all."""
    try:
        with Image.open(source) as opened:
            if max(opened.size) > MAX_DIMENSION:
                raise APIError(400, dimension_messages(*opened.size)[0])
            opened.load()
            return ImageOps.exif_transpose(opened)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise APIError(400, MSG_INVALID_SIGNATURE) from None


def remove_background(image: Image.Image, matting: Matting) -> Image.Image:
    """An RGBA cut-out (see `cut_out`: nothing kept under it); opacity the input had is kept."""
    if image.mode == "RGB":
        return cut_out(image, matting(image))
    rgba = image.convert("RGBA")
    rgb = rgba.convert("RGB")
    mask = matting(rgb)
    if image.has_transparency_data:
        mask = ImageChops.darker(mask, rgba.getchannel("A"))
    return cut_out(rgb, mask)


def cut_out(rgb: Image.Image, mask: Image.Image) -> Image.Image:
    """The RGBA cut-out of an RGB image by its mask (mode ``L``), in straight alpha: zeros under
    full transparency (the removed background must not survive for whoever drops the alpha),
    the subject's own colour at the soft edges (no halo of the old background, nor the dark
    outline of premultiplied alpha stored as straight, as rembg's).

    An edge pixel is ``I = αF + (1 − α)B``: each gets an estimate of the subject's colour ``F``
    by blur fusion (Forte and Pitié, *Approximate fast foreground colour estimation*, ICIP
    2021): from ``F̂`` and ``B̂``, local means of subject and background (blurs weighted by ``α``
    and ``1 − α``), ``F = F̂ + α(I − αF̂ − (1 − α)B̂)``; twice, the second time with the first
    ``F`` and a narrower blur. The means are smooth, so they are taken on a copy at most
    `WORK_SIDE` a side: only the edge pixels are worked on at full size.
    """
    # Pillow interleaves the channels in one C pass (2048 × 1536: 3 ms, numpy 10), read in
    # place; dropping the image at once keeps two full-size copies alive at most, not three.
    rgba = rgb.convert("RGBA")
    rgba.putalpha(mask)
    source = np.asarray(rgba)
    del rgba
    # Zeros under alpha 0, a whole pixel at a time, into the one writable copy: one 32-bit
    # word per pixel is 10 times faster than a multiply broadcast over its four bytes.
    pixels = np.empty_like(source)
    words = pixels.view(np.uint32)[..., 0]
    np.multiply(source.view(np.uint32)[..., 0], source[..., 3] != 0, out=words)
    del source
    alpha = pixels[..., 3]
    rows, columns = np.nonzero((alpha - np.uint8(1)) < 254)  # 0 < alpha < 255, in one compare
    if rows.size:
        pixels[rows, columns, :3] = _subject_colours(
            rgb, mask, rows, columns, pixels[rows, columns]
        )
    return Image.fromarray(pixels, mode="RGBA")


def _subject_colours(
    rgb: Image.Image, mask: Image.Image, rows: _Index, columns: _Index, edge: _Bytes
) -> _Bytes:
    """``F`` at the edge pixels (``rows``, ``columns``), whose RGBA values are ``edge``."""
    # Whole-factor reduction (block means): the fastest way down, and an exact pixel mapping.
    factor = -(-max(rgb.size) // WORK_SIDE)
    small_rgb, small_mask = (rgb.reduce(factor), mask.reduce(factor)) if factor > 1 else (rgb, mask)
    side = max(small_rgb.size)
    # The paper's two passes: a wide one finds the subject's colours past the soft band, a
    # narrow one then follows their local changes along the edge.
    wide, narrow = max(2, round(side * WIDE_SHARE)), max(1, round(side * NARROW_SHARE))
    inverse = ImageChops.invert(small_mask)
    mean_f = _weighted_mean(small_rgb, small_mask, wide)
    mean_b = _weighted_mean(small_rgb, inverse, wide)
    first = _fuse(mean_f, mean_b, np.asarray(small_rgb), np.asarray(small_mask))
    mean_f = _weighted_mean(Image.fromarray(first, mode="RGB"), small_mask, narrow)
    mean_b = _weighted_mean(Image.fromarray(mean_b, mode="RGB"), inverse, narrow)
    # Each edge pixel's block, as one flat index: a single gather from each mean.
    near = (rows // factor) * small_rgb.width + columns // factor
    mean_f, mean_b = (mean.reshape(-1, 3).take(near, axis=0) for mean in (mean_f, mean_b))
    return _fuse(mean_f, mean_b, edge[:, :3], edge[:, 3])


def _fuse(mean_f: _Bytes, mean_b: _Bytes, image: _Bytes, alpha: _Bytes) -> _Bytes:
    """``F = F̂ + α(I − αF̂ − (1 − α)B̂)``, pixel by pixel (any shape, colours last)."""
    f, b, i = (values.astype(np.float32) for values in (mean_f, mean_b, image))
    a = (alpha.astype(np.float32) / 255.0)[..., np.newaxis]
    colour = f + a * (i - a * f - (1.0 - a) * b)
    result: _Bytes = np.clip(colour + 0.5, 0.0, 255.0).astype(np.uint8)
    return result


def _weighted_mean(rgb: Image.Image, weight: Image.Image, radius: int) -> _Bytes:
    """The mean colour around each pixel (``(height, width, 3)``), each counted by its ``weight``
    (mode ``L``): Pillow premultiplies, box-blurs colour and weight alike, and divides back."""
    weighted = rgb.convert("RGBA")
    weighted.putalpha(weight)
    blurred = weighted.convert("RGBa").filter(ImageFilter.BoxBlur(radius)).convert("RGBA")
    return np.asarray(blurred)[..., :3]


def target_size(width: int, height: int, options: RenderOptions) -> tuple[int, int]:
    """The size after resizing: ``w``/``h`` keep the aspect ratio unless ``exact_resize``; with
    both and no ``exact_resize``, the largest size that fits inside ``w × h``."""
    w, h = options.w, options.h
    if options.exact_resize and w is not None and h is not None:
        return w, h
    scales = [target / side for target, side in ((w, width), (h, height)) if target is not None]
    if not scales:
        return width, height
    scale = min(scales)
    return max(1, round(width * scale)), max(1, round(height * scale))


def apply_background(cutout: Image.Image, options: RenderOptions) -> Image.Image:
    """The cut-out over ``bg_color``; formats with no alpha are flattened (onto white if unset)."""
    result = cutout
    if options.bg_color is not None:
        result = Image.alpha_composite(Image.new("RGBA", cutout.size, options.bg_color), result)
    if options.format in OPAQUE_FORMATS:
        white = Image.new("RGBA", cutout.size, (255, 255, 255, 255))
        result = Image.alpha_composite(white, result).convert("RGB")
    return result


def encode(image: Image.Image, format: str) -> Rendered:
    """The encoded bytes of ``image`` in ``format`` (``png``, ``jpeg``, ``webp`` or ``bmp``)."""
    body = write_png(image) if format == "png" else None
    if body is not None:
        return Rendered(body, OUTPUT_FORMATS[format])
    buffer = io.BytesIO()
    try:
        image.save(buffer, format.upper(), **_ENCODER_OPTIONS[format])
    except (ValueError, OSError):
        if format != "webp":
            raise
        # Lossy WEBP overflows its first partition (libwebp error 6) on very large canvases,
        # such as a 10,000 px image turned 45° with expand; lossless has no such limit.
        buffer = io.BytesIO()
        image.save(buffer, "WEBP", lossless=True, method=0, quality=0)
    return Rendered(buffer.getvalue(), OUTPUT_FORMATS[format])


def write_png(image: Image.Image, *, band: int = BAND_ROWS) -> bytes | None:
    """``image`` as PNG bytes, or ``None`` for a mode this writer does not handle.

    Pillow tries all five filters on every row; here each row gets Sub or Up (`filtered_rows`),
    then zlib level 1 with its run-length strategy, ``band`` rows at a time. On a 2048 × 1536
    cut-out 55 ms and 1,972 KB, Pillow 113 ms and 1,665 KB; the coffee photo 225 KB, not 211.
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
    chunks = ((b"IHDR", header), (b"IDAT", b"".join(parts)), (b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(_png_chunk(kind, data) for kind, data in chunks)


def filtered_rows(pixels: _Bytes, step: int, above: _Bytes) -> _Bytes:
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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    checksum = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)
