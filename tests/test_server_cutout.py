"""The colours of a cut-out's soft edge: the subject's own, no halo and no dark outline."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import Client
from PIL import Image, ImageDraw, ImageFilter

RED: tuple[int, int, int] = (220, 40, 40)
GREEN: tuple[int, int, int] = (40, 200, 40)


def soft_disc() -> bytes:
    """A red disc on green whose edge is a blend of the two, as a camera sees an edge; its
    alpha channel is the disc's coverage (the server keeps an input's opacity: the edge's
    opacity is then known, whatever the engine finds)."""
    coverage = Image.new("L", (160, 120))
    ImageDraw.Draw(coverage).ellipse((40, 20, 120, 100), fill=255)
    coverage = coverage.filter(ImageFilter.GaussianBlur(4))
    size = coverage.size
    image = Image.composite(Image.new("RGB", size, RED), Image.new("RGB", size, GREEN), coverage)
    image.putalpha(coverage)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("format", ["png", "webp"])
async def test_soft_edge_has_the_subjects_colour(client: Client, format: str) -> None:
    """Semi-transparent pixels are red: not tinted by the old green, not darkened by alpha."""
    answer = await client.rmbg(soft_disc(), fields={"format": format})
    assert answer.status == 200
    rgba = np.asarray(answer.image().convert("RGBA")).astype(np.int16)
    edge = rgba[(rgba[..., 3] > 24) & (rgba[..., 3] < 232)]
    assert len(edge) > 100
    red, green = edge[:, 0], edge[:, 1]
    assert np.percentile(green, 95) < 90  # no green halo (the blend goes up to 200)
    assert np.percentile(red, 5) > 150  # no dark outline (premultiplied, it falls towards 0)


async def test_soft_edge_on_a_new_background_has_no_trace_of_the_old(client: Client) -> None:
    """With ``bg_color``, the edge blends the subject with the new colour only: no old green."""
    answer = await client.rmbg(soft_disc(), fields={"format": "png", "bg_color": "#0000ff"})
    assert answer.status == 200
    rgba = np.asarray(answer.image().convert("RGBA")).astype(np.int16)
    with Image.open(io.BytesIO(soft_disc())) as original:
        coverage = np.asarray(original.getchannel("A"))
    edge = rgba[(coverage > 24) & (coverage < 232)]
    assert (rgba[coverage == 0] == (0, 0, 255, 255)).all()
    assert np.percentile(edge[:, 1], 95) < 50  # the subject's green is 40, the old one's 200
