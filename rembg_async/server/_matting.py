"""The stand-in for the hosted model: classical matting against a plain background.

The background colour is estimated from the image's border; each pixel's opacity ramps up with
its colour distance from it (a soft threshold scaled to the border's own noise); a small blur
feathers the edge. It is honest about what it is: good on product shots on plain backgrounds,
not a segmentation model. Swap :func:`estimate_alpha` to plug in a real one.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

#: The softness of the ramp from background (opacity 0) to subject (opacity 1), in colour distance.
RAMP_WIDTH: Final = 40.0
#: A pixel this close to the background colour is background whatever the border's noise.
MIN_THRESHOLD: Final = 12.0


def estimate_alpha(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The opacity (0 … 255) of each pixel of an ``(height, width, 3)`` image."""
    border = _border_pixels(rgb).astype(np.float32)
    background = np.median(border, axis=0)
    noise = float(np.percentile(_distance(border, background), 95)) if border.size else 0.0
    low = max(MIN_THRESHOLD, noise * 1.5)
    distance = _distance(rgb.astype(np.float32), background)
    alpha = np.clip((distance - low) * (255.0 / RAMP_WIDTH), 0.0, 255.0).astype(np.uint8)
    return _feather(alpha)


def _border_pixels(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    height, width = rgb.shape[:2]
    band = max(1, min(height, width) // 100)
    return np.concatenate(
        [
            rgb[:band].reshape(-1, 3),
            rgb[-band:].reshape(-1, 3),
            rgb[:, :band].reshape(-1, 3),
            rgb[:, -band:].reshape(-1, 3),
        ]
    )


def _distance(
    pixels: npt.NDArray[np.float32], colour: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    difference = pixels - colour
    # einsum squares and sums the channels in one pass, twice as fast as (d * d).sum(-1).
    squared = np.einsum("...i,...i->...", difference, difference)
    result: npt.NDArray[np.float32] = np.sqrt(squared)
    return result


def _feather(alpha: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    radius = max(1.0, min(alpha.shape) / 600)
    blurred = Image.fromarray(alpha, mode="L").filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, dtype=np.uint8)
