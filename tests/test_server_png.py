"""The local server's own PNG writer: lossless in every mode it takes, Pillow for the rest."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from rembg_async.server._imaging import COLOUR_TYPES, encode, filtered_rows, write_png

MODES = sorted(COLOUR_TYPES)


@st.composite
def images(draw: st.DrawFn) -> Image.Image:
    """Small images of each mode, from noise to runs of one value (what cut-outs are made of)."""
    mode = draw(st.sampled_from(MODES))
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    values = st.integers(0, 255) | st.sampled_from([0, 255])
    shape = (height, width, len(mode)) if len(mode) > 1 else (height, width)
    pixels = draw(hnp.arrays(np.uint8, shape, elements=values))
    return Image.fromarray(pixels, mode=mode)


@settings(max_examples=300, deadline=None)
@given(images(), st.integers(1, 30))
def test_png_round_trips_exactly(image: Image.Image, band: int) -> None:
    """Pillow reads back the very pixels, size and mode written, whichever filters rows got,
    however many bands the rows were written in."""
    body = write_png(image, band=band)
    assert body is not None
    with Image.open(io.BytesIO(body)) as read:
        read.load()
        assert (read.mode, read.size) == (image.mode, image.size)
        assert np.array_equal(np.asarray(read), np.asarray(image))


def test_rows_get_the_filter_that_suits_them() -> None:
    """A row that repeats the one above is filtered Up; a row of one colour, Sub."""
    stripes = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 4))  # columns of colours
    flat = np.repeat(np.arange(0, 200, 10, dtype=np.uint8)[:, None], 400, axis=1)  # rows
    with Image.open(io.BytesIO(write_png(Image.fromarray(stripes)) or b"")) as read:
        assert np.array_equal(np.asarray(read), stripes)
    assert set(filtered_rows(stripes, 1, stripes[:1])[1:, 0]) == {2}
    assert set(filtered_rows(flat, 1, np.zeros_like(flat[:1]))[:, 0]) == {1}


@pytest.mark.parametrize("mode", ["P", "1", "I;16"])
def test_other_modes_go_through_pillow(mode: str) -> None:
    """Modes the writer leaves out still come back as PNG (Pillow's), never an error."""
    image = Image.new(mode, (7, 5))
    assert write_png(image) is None
    with Image.open(io.BytesIO(encode(image, "png").body)) as read:
        assert read.format == "PNG"
        assert read.size == (7, 5)
