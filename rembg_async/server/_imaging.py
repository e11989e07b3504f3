"""The image work of ``/rmbg``: decode, remove the background, resize, rotate, colour, encode.

The order is the API's: remove background → resize → rotate (with ``expand``) → background
colour → encode. Everything here is blocking and runs in a worker thread.
"""

from __future__ import annotations

import io
from typing import IO, Final

import attrs
from PIL import Image, ImageChops, ImageOps

from .._contract import MAX_DIMENSION, OPAQUE_FORMATS, OUTPUT_FORMATS
from ._cutout import cut_out
from ._matting import Matting
from ._png import write_png

# Our own limit (10,000 px a side) is checked from the header before any decoding; Pillow's
# lower default would refuse images the API accepts.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_DIMENSION * MAX_DIMENSION)

_WHITE: Final = (255, 255, 255, 255)
_PIL_FORMATS: Final = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP"}
# Fast settings: the local server must never be what a client's test or benchmark waits on.
_ENCODER_OPTIONS: Final[dict[str, dict[str, int]]] = {
    # PNG goes through `write_png` (half the time); Pillow's best settings for the modes it
    # leaves out. zlib's run-length strategy: transparent pixels are runs of zeros, and on
    # cut-outs it is about as small as level 6 (rembg's, the default) at level 1's time
    # (measured on a 2048×1536 cut-out: 1,665 KB in 117 ms; level 6, 1,605 KB in 374).
    "png": {"compress_level": 1, "compress_type": 3},
    "jpeg": {"quality": 90},
    # method 0: a third of method 1's time, ~40% larger. exact stays False (Pillow's default):
    # libwebp may then fill transparent pixels as it likes, from what it is given, and it is
    # given zeros (see `_cutout`): smaller files than exact=True, nothing hidden either way.
    "webp": {"quality": 90, "method": 0},
    "bmp": {},
}


_WEBP_FALLBACK: Final = {"lossless": True, "method": 0, "quality": 0}


class UndecodableImage(Exception):
    """The bytes passed the signature check but the decoder could not read them."""


class OversizedImage(Exception):
    """The decoder found a size the header check could not read, and it is over the limit."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"{width}x{height}")
        self.width = width
        self.height = height


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
    cutout = resize(cutout, options)
    if options.angle:
        cutout = cutout.rotate(
            options.angle, resample=Image.Resampling.BICUBIC, expand=options.expand
        )
    result = cutout.getchannel("A") if options.mask else apply_background(cutout, options)
    return encode(result, options.format)


def decode(source: IO[bytes]) -> Image.Image:
    """The upright image (EXIF orientation applied), fully loaded."""
    try:
        with Image.open(source) as opened:
            if max(opened.size) > MAX_DIMENSION:
                raise OversizedImage(*opened.size)
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UndecodableImage(str(error)) from error
    return image


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


def target_size(width: int, height: int, options: RenderOptions) -> tuple[int, int]:
    """The size after resizing: ``w``/``h`` keep the aspect ratio unless ``exact_resize``.

    With both and no ``exact_resize``, the largest size that fits inside ``w × h``.
    """
    w, h = options.w, options.h
    if options.exact_resize and w is not None and h is not None:
        return w, h
    scales = [target / side for target, side in ((w, width), (h, height)) if target is not None]
    if not scales:
        return width, height
    scale = min(scales)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(image: Image.Image, options: RenderOptions) -> Image.Image:
    """The image at `target_size`."""
    size = target_size(image.width, image.height, options)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def apply_background(cutout: Image.Image, options: RenderOptions) -> Image.Image:
    """The cut-out over ``bg_color``; formats with no alpha are flattened (onto white if unset)."""
    result = cutout
    if options.bg_color is not None:
        result = Image.alpha_composite(Image.new("RGBA", cutout.size, options.bg_color), result)
    if options.format in OPAQUE_FORMATS:
        result = Image.alpha_composite(Image.new("RGBA", cutout.size, _WHITE), result).convert(
            "RGB"
        )
    return result


def encode(image: Image.Image, format: str) -> Rendered:
    """The encoded bytes of ``image`` in ``format`` (``png``, ``jpeg``, ``webp`` or ``bmp``)."""
    if format == "png":
        body = write_png(image)
        if body is not None:
            return Rendered(body, OUTPUT_FORMATS[format])
    buffer = io.BytesIO()
    try:
        image.save(buffer, _PIL_FORMATS[format], **_ENCODER_OPTIONS[format])
    except (ValueError, OSError):
        if format != "webp":
            raise
        # Lossy WEBP overflows its first partition (libwebp error 6) on very large canvases,
        # such as a 10,000 px image turned 45° with expand; lossless has no such limit.
        buffer = io.BytesIO()
        image.save(buffer, "WEBP", **_WEBP_FALLBACK)
    return Rendered(buffer.getvalue(), OUTPUT_FORMATS[format])
