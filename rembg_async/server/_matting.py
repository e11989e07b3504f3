"""The matting engines behind ``/rmbg``, picked by `load_matting`: ``u2netp``, the U²-Net
model (`._u2net`, the ``model`` extra), or ``classic``, a colour threshold good on product shots
on plain backgrounds, not on photos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from ._u2net import ModelError, U2Net, load_u2net, model_installed, model_unavailable

#: An engine: an RGB image's mask (mode ``L``, its size), 255 where the subject is opaque.
Matting = Callable[[Image.Image], Image.Image]
EngineName = Literal["auto", "u2netp", "classic"]
ENGINES: Final = ("auto", "u2netp", "classic")

#: The softness of the ramp from background (opacity 0) to subject (opacity 1), in colour distance.
RAMP_WIDTH: Final = 40.0
#: A pixel this close to the background colour is background whatever the border's noise.
MIN_THRESHOLD: Final = 12.0


def load_matting(
    engine: str, model: Path | None = None, *, threads: int = 1, lone_threads: int = 1
) -> Matting:
    """The engine the server runs, loaded now so a broken model fails at start, not per request.

    ``auto`` is ``u2netp`` when the ``model`` extra is installed (or ``model`` is given), else
    ``classic``; see `load_u2net` for ``model`` and the threads.
    """
    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "classic":
        if model is not None:
            raise ModelError("a model file needs the u2netp engine, not classic")
        return classic
    if engine == "auto" and model is None and not model_installed():
        return classic
    return load_u2net(model, threads=threads, lone_threads=lone_threads)


def alone(matting: Matting) -> Matting:
    """The engine for a request with no other in work: the model on every core at once."""
    return matting.alone() if isinstance(matting, U2Net) else matting


def fallback_notice(engine: str, model: Path | None = None) -> str | None:
    """What ``auto`` runs instead of the model and why, when it cannot run the model; else None.
    The command line prints it: else a photo cut by the threshold looks like a model's failure."""
    reason = model_unavailable()
    if engine != "auto" or model is not None or reason is None:
        return None
    return (
        "engine: classic (a colour threshold: fine on plain backgrounds, poor on photos), "
        f"not the U²-Net model: {reason}"
    )


def engine_name(matting: Matting) -> str:
    """A short name of a loaded engine, for logs and the command line."""
    return str(getattr(matting, "name", "classic"))


def classic(image: Image.Image) -> Image.Image:
    """The classic engine, an RGB image's mask: opacity ramps up with the colour distance from
    the border's median (a soft threshold scaled to the border's own noise), then a small blur
    feathers the edge."""
    rgb = np.asarray(image)
    band = max(1, min(image.size) // 100)
    sides = (rgb[:band], rgb[-band:], rgb[:, :band], rgb[:, -band:])
    border = np.concatenate([side.reshape(-1, 3) for side in sides]).astype(np.float32)
    background = np.median(border, axis=0)
    noise = float(np.percentile(_distance(border, background), 95)) if border.size else 0.0
    low = max(MIN_THRESHOLD, noise * 1.5)
    distance = _distance(rgb.astype(np.float32), background)
    alpha = np.clip((distance - low) * (255.0 / RAMP_WIDTH), 0.0, 255.0).astype(np.uint8)
    radius = max(1.0, min(image.size) / 600)
    return Image.fromarray(alpha, mode="L").filter(ImageFilter.GaussianBlur(radius))


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
