"""The colours of a cut-out: nothing of the background kept, edges in the subject's colours.

Under a fully transparent pixel the colour is 0, 0, 0: the removed background (a room, a face,
a document) must not survive in the file for whoever drops the alpha channel.

A semi-transparent edge pixel of the photo is a mix of the subject and the old background,
``I = αF + (1 − α)B``. Kept as it is (straight alpha) the old background shows as a halo on a
new one; premultiplied and then stored as straight alpha (rembg's cut-outs) the subject's
colour is darkened once in the file and again by the viewer, a dark outline. Here each edge
pixel gets an estimate of the subject's own colour ``F``, by blur fusion (Forte and Pitié,
*Approximate fast foreground colour estimation*, ICIP 2021): ``F̂`` and ``B̂``, the local means
of the subject's and the background's colours (blurs weighted by ``α`` and ``1 − α``), then
``F = F̂ + α(I − αF̂ − (1 − α)B̂)``: the part of the pixel the two means do not explain goes to
the subject in proportion to its opacity (``F = I`` where ``α = 1``); twice, the second time
with the first ``F`` and a narrower blur. The means are smooth, so they are taken on a copy at
most `WORK_SIDE` pixels a side: the cost does not grow with the photo, and only the edge pixels
are worked on at full size.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops, ImageFilter

#: The longest side of the copy the local means are taken on (at most): the model's own, as
#: the mask has no finer detail than its 320 × 320 prediction.
WORK_SIDE: Final = 320
#: The blur radii of the means' two passes, as shares of the copy's longest side (the paper
#: has 90 and 6 pixels on photos of about 1,500; wider reaches the subject's own colours from
#: the outer side of wider soft edges: on the tests' blurred disc, a green tint of 71 at most
#: for 102 at 1/16).
WIDE_SHARE: Final = 1 / 8
NARROW_SHARE: Final = 1 / 250


def cut_out(rgb: Image.Image, mask: Image.Image) -> Image.Image:
    """The RGBA cut-out of an RGB image by its mask (mode ``L``), in straight alpha."""
    # Pillow interleaves the channels in one C pass (2048 × 1536: 3 ms; numpy's strided
    # writes of each channel take 10), and its bytes are read in place; dropping the image
    # at once keeps two full-size copies alive at most, not three.
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
        edge = pixels[rows, columns]
        pixels[rows, columns, :3] = _subject_colours(
            rgb, mask, rows, columns, edge[:, :3], edge[:, 3]
        )
    return Image.fromarray(pixels, mode="RGBA")


def _subject_colours(
    rgb: Image.Image,
    mask: Image.Image,
    rows: npt.NDArray[np.intp],
    columns: npt.NDArray[np.intp],
    edge_rgb: npt.NDArray[np.uint8],
    edge_alpha: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint8]:
    """``F`` at the edge pixels (``rows``, ``columns``) of the full-size image, whose colours
    and opacities there are ``edge_rgb`` and ``edge_alpha``."""
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
    return _fuse(
        mean_f.reshape(-1, 3).take(near, axis=0),
        mean_b.reshape(-1, 3).take(near, axis=0),
        edge_rgb,
        edge_alpha,
    )


def _fuse(
    mean_f: npt.NDArray[np.uint8],
    mean_b: npt.NDArray[np.uint8],
    image: npt.NDArray[np.uint8],
    alpha: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint8]:
    """``F = F̂ + α(I − αF̂ − (1 − α)B̂)``, pixel by pixel (any shape, colours last)."""
    f, b, i = (values.astype(np.float32) for values in (mean_f, mean_b, image))
    a = (alpha.astype(np.float32) / 255.0)[..., np.newaxis]
    colour = f + a * (i - a * f - (1.0 - a) * b)
    result: npt.NDArray[np.uint8] = np.clip(colour + 0.5, 0.0, 255.0).astype(np.uint8)
    return result


def _weighted_mean(rgb: Image.Image, weight: Image.Image, radius: int) -> npt.NDArray[np.uint8]:
    """The mean colour around each pixel (``(height, width, 3)``), each pixel counted by its
    ``weight`` (mode ``L``).

    Pillow does it in three passes over 8-bit channels: premultiply by the weight, box-blur
    colour and weight alike, divide by the blurred weight.
    """
    weighted = rgb.convert("RGBA")
    weighted.putalpha(weight)
    blurred = weighted.convert("RGBa").filter(ImageFilter.BoxBlur(radius)).convert("RGBA")
    return np.asarray(blurred)[..., :3]
