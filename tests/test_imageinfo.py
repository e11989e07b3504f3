"""Image type and size from the header alone, for every format, without decoding."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rembg_async._imageinfo import read_image_info, sniff_kind

FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "BMP": "bmp"}


def encoded(size: tuple[int, int], format: str, **options: object) -> bytes:
    """A blank image of ``size`` encoded in ``format``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format, **options)
    return buffer.getvalue()


@settings(max_examples=80, deadline=None)
@given(
    width=st.integers(1, 3000),
    height=st.integers(1, 3000),
    format=st.sampled_from(sorted(FORMATS)),
)
def test_size_matches_the_encoder(width: int, height: int, format: str) -> None:
    """Whatever Pillow writes, the header reader finds the same type and size."""
    info = read_image_info(io.BytesIO(encoded((width, height), format)))
    assert info is not None
    assert (info.kind, info.width, info.height) == (FORMATS[format], width, height)


@pytest.mark.parametrize(
    ("options", "label"),
    [
        ({"lossless": True}, "webp-lossless"),
        ({"exif": Image.Exif()}, "webp-extended"),
    ],
)
def test_webp_variants(options: dict[str, object], label: str) -> None:
    """Lossy, lossless (VP8L) and extended (VP8X) WEBP headers all give the size."""
    info = read_image_info(io.BytesIO(encoded((321, 123), "WEBP", **options)))
    assert info is not None, label
    assert (info.width, info.height) == (321, 123), label


def test_jpeg_with_large_exif_block_before_the_frame() -> None:
    """A JPEG whose size comes after a 60 KB EXIF segment is still read from its header."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    info = read_image_info(io.BytesIO(encoded((640, 480), "JPEG", exif=exif)))
    assert info is not None
    assert (info.width, info.height) == (640, 480)


def test_progressive_jpeg() -> None:
    """A progressive JPEG's frame header (SOF2) gives the size too."""
    info = read_image_info(io.BytesIO(encoded((77, 55), "JPEG", progressive=True)))
    assert info is not None
    assert (info.width, info.height) == (77, 55)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    """Random bytes give None or an answer, never an exception."""
    info = read_image_info(io.BytesIO(data))
    assert info is None or info.kind == sniff_kind(data)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff\xdb", "jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"BM" + b"\x00" * 30, "bmp"),
        (b"GIF89a", None),
        (b"", None),
    ],
)
def test_signatures(head: bytes, kind: str | None) -> None:
    """Each accepted format is known by its signature; others are not images."""
    assert sniff_kind(head) == kind
