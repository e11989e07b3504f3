"""Draw the example images: product shots on plain backgrounds (CC0, see README.md here).

Run ``python examples/images/make_images.py`` to make them again (needs Pillow and NumPy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).parent
SIZE = (800, 600)


def _canvas(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", SIZE, colour)


def _shadow(image: Image.Image, box: tuple[int, int, int, int]) -> None:
    shadow = Image.new("L", SIZE, 0)
    ImageDraw.Draw(shadow).ellipse(box, fill=90)
    shadow = shadow.filter(ImageFilter.GaussianBlur(18))
    image.paste(Image.new("RGB", SIZE, (0, 0, 0)), mask=shadow.point(lambda v: v // 3))


def _shaded(size: tuple[int, int], dark: tuple[int, ...], light: tuple[int, ...]) -> Image.Image:
    """A horizontal light-to-dark gradient, as on a lit cylinder."""
    width, height = size
    x = np.linspace(-1.0, 1.0, width)
    shade = np.clip(1.0 - (x + 0.35) ** 2, 0.0, 1.0)[None, :, None]
    colours = np.array(dark) + (np.array(light) - np.array(dark)) * shade
    return Image.fromarray(np.repeat(colours, height, axis=0).astype(np.uint8), "RGB")


def _paste_rounded(image: Image.Image, body: Image.Image, at: tuple[int, int], radius: int) -> None:
    """Paste ``body`` with its corners rounded."""
    mask = Image.new("L", body.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, *(side - 1 for side in body.size)), radius, 255)
    image.paste(body, at, mask)


def _add_noise(image: Image.Image, seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).normal(0, 2.5, (SIZE[1], SIZE[0], 1))
    pixels = np.asarray(image, dtype=np.float32) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def mug() -> Image.Image:
    """A red mug on a light grey background."""
    image = _canvas((232, 232, 230))
    _shadow(image, (250, 450, 560, 500))
    _paste_rounded(image, _shaded((240, 280), (120, 10, 20), (230, 60, 60)), (260, 190), 24)
    ImageDraw.Draw(image).ellipse((460, 240, 580, 400), outline=(170, 30, 35), width=26)
    ImageDraw.Draw(image).ellipse((262, 176, 498, 212), fill=(90, 8, 14))
    return _add_noise(image, 1)


def orange() -> Image.Image:
    """An orange on a pale blue background."""
    image = _canvas((214, 230, 245))
    _shadow(image, (270, 440, 540, 490))
    yy, xx = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    distance = np.hypot(xx - 400, yy - 290) / 170
    light = np.clip(1.1 - np.hypot(xx - 350, yy - 230) / 260, 0.25, 1.0)[..., None]
    sphere = (np.array([250, 140, 20]) * light).astype(np.uint8)
    pixels = np.asarray(image).copy()
    inside = distance <= 1.0
    pixels[inside] = sphere[inside]
    image = Image.fromarray(pixels, "RGB")
    ImageDraw.Draw(image).polygon(
        [(400, 120), (430, 95), (445, 110), (410, 128)], fill=(40, 120, 40)
    )
    return _add_noise(image, 2)


def bottle() -> Image.Image:
    """A green bottle on a beige background."""
    image = _canvas((240, 228, 205))
    _shadow(image, (300, 520, 500, 560))
    _paste_rounded(image, _shaded((160, 300), (10, 70, 30), (70, 170, 90)), (320, 240), 40)
    neck = _shaded((60, 170), (10, 70, 30), (70, 170, 90))
    image.paste(neck, (370, 80))
    ImageDraw.Draw(image).rectangle((364, 60, 436, 90), fill=(180, 150, 60))
    return _add_noise(image, 3)


def main() -> None:
    """Write every example image beside this script."""
    for name, draw in (("mug", mug), ("orange", orange), ("bottle", bottle)):
        draw().save(HERE / f"{name}.jpg", quality=88)
    orange().resize((400, 300)).save(HERE / "orange-small.png", optimize=True)


if __name__ == "__main__":
    main()
