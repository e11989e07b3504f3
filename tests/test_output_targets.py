"""A result that could not be kept is refused before it is sent (and so never paid for)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CaptureServer, LocalServer, make_image
from PIL import Image

from rembg_async import (
    AsyncRembg,
    InvalidInputError,
    Rembg,
    RemoveOptions,
    rembg,
    rembg_sync,
)

PNG = make_image((40, 30), "PNG")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        pytest.param("cut.png", RemoveOptions(format="webp"), id="webp-into-png"),
        pytest.param("cut.png", {"format": "webp"}, id="dict-webp-into-png"),
        pytest.param("cut.webp", RemoveOptions(format="jpeg"), id="jpeg-into-webp"),
        pytest.param("cut.JPG", RemoveOptions(format="png"), id="png-into-jpg"),
    ],
)
async def test_extension_naming_another_format_is_refused(
    capture_server: CaptureServer,
    tmp_path: Path,
    name: str,
    options: RemoveOptions | dict[str, str],
) -> None:
    """output_path='x.png' with WEBP given is refused up front, saying how to fix it."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(InvalidInputError, match="format") as caught:
            await client.remove(PNG, options, output_path=tmp_path / name)
    assert caught.value.details[0][0] == "output_path"
    assert capture_server.received == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "options"),
    [
        pytest.param("cut.webp", None, id="webp"),
        pytest.param("cut.jpeg", RemoveOptions(format="jpg"), id="jpg-is-jpeg"),
        pytest.param("cut.out", RemoveOptions(format="png"), id="unknown-extension"),
        pytest.param("cut.out", None, id="unknown-extension-no-format"),
    ],
)
async def test_matching_or_neutral_extension_is_written(
    capture_server: CaptureServer, tmp_path: Path, name: str, options: RemoveOptions | None
) -> None:
    """An extension of the asked format, or one naming no format, is written as before."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        result = await client.remove(PNG, options, output_path=tmp_path / name)
    assert result.output_image_path == tmp_path / name


#: Each extension that names a format, and the format Pillow finds in the file written there.
NAMED = [
    pytest.param("cut.png", "PNG", id="png"),
    pytest.param("cut.webp", "WEBP", id="webp"),
    pytest.param("cut.jpg", "JPEG", id="jpg"),
    pytest.param("cut.JPEG", "JPEG", id="jpeg-upper"),
    pytest.param("cut.bmp", "BMP", id="bmp"),
]


def _format_of(path: Path) -> str | None:
    with Image.open(path) as image:
        return image.format


@pytest.mark.parametrize(
    "options", [None, RemoveOptions(w=20), {"w": 20}], ids=["none", "RemoveOptions", "dict"]
)
@pytest.mark.parametrize(("name", "pillow_format"), NAMED)
async def test_extension_sets_the_format_when_none_is_given(
    unlimited_server: LocalServer,
    tmp_path: Path,
    name: str,
    pillow_format: str,
    options: RemoveOptions | dict[str, int] | None,
) -> None:
    """remove(p, output_path='cut.png') with no format writes a PNG there, as Pillow's save()."""
    async with AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        result = await client.remove(PNG, options, output_path=tmp_path / name)
    assert result.output_image_path == tmp_path / name
    assert _format_of(tmp_path / name) == pillow_format
    assert result.content_type == f"image/{pillow_format.lower()}"


@pytest.mark.parametrize(("name", "pillow_format"), NAMED)
async def test_one_shot_takes_the_format_from_the_extension(
    unlimited_server: LocalServer, tmp_path: Path, name: str, pillow_format: str
) -> None:
    """rembg(input_image=p, output_path='cut.png') writes a PNG: the rule of remove()."""
    result = await rembg(
        api_key=unlimited_server.api_key,
        input_image=PNG,
        output_path=tmp_path / name,
        base_url=unlimited_server.url,
    )
    assert result.output_image_path == tmp_path / name
    assert _format_of(tmp_path / name) == pillow_format


@pytest.mark.parametrize(("name", "pillow_format"), NAMED)
def test_sync_twin_takes_the_format_from_the_extension(
    unlimited_server: LocalServer, tmp_path: Path, name: str, pillow_format: str
) -> None:
    """Rembg.remove and rembg_sync with output_path='cut.png' write PNGs too."""
    with Rembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        client.remove(PNG, output_path=tmp_path / name)
    assert _format_of(tmp_path / name) == pillow_format
    rembg_sync(
        api_key=unlimited_server.api_key,
        input_image=PNG,
        output_path=tmp_path / f"one-shot-{name}",
        base_url=unlimited_server.url,
    )
    assert _format_of(tmp_path / f"one-shot-{name}") == pillow_format


async def test_one_shot_refuses_a_contradicting_extension(
    capture_server: CaptureServer, tmp_path: Path
) -> None:
    """rembg() refuses a given format that output_path's extension contradicts, unsent."""
    with pytest.raises(InvalidInputError, match="names a PNG file but the format is JPEG"):
        await rembg(
            api_key="k",
            input_image=PNG,
            options={"format": "jpg"},
            output_path=tmp_path / "cut.png",
            base_url=capture_server.url,
        )
    assert capture_server.received == []


def test_sync_twin_refuses_a_contradicting_extension(
    unlimited_server: LocalServer, tmp_path: Path
) -> None:
    """Rembg.remove and rembg_sync refuse a format the extension contradicts, as remove()."""
    with (
        Rembg(unlimited_server.api_key, base_url=unlimited_server.url) as client,
        pytest.raises(InvalidInputError, match="names a PNG file"),
    ):
        client.remove(PNG, RemoveOptions(format="webp"), output_path=tmp_path / "cut.png")
    with pytest.raises(InvalidInputError, match="names a BMP file"):
        rembg_sync(
            api_key=unlimited_server.api_key,
            input_image=PNG,
            options={"format": "png"},
            output_path=tmp_path / "cut.bmp",
            base_url=unlimited_server.url,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make_target", "error"),
    [
        pytest.param(lambda tmp: tmp, IsADirectoryError, id="a-folder"),
        pytest.param(lambda tmp: tmp / "file" / "x.webp", NotADirectoryError, id="under-a-file"),
        pytest.param(
            lambda tmp: tmp / "file" / "deeper" / "x.webp", NotADirectoryError, id="deep-under"
        ),
    ],
)
async def test_target_that_cannot_be_written_is_refused_before_sending(
    capture_server: CaptureServer, tmp_path: Path, make_target: object, error: type[OSError]
) -> None:
    """A folder as output_path, or a path under a file: refused with nothing sent."""
    (tmp_path / "file").write_bytes(b"x")
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(error):
            await client.remove(PNG, output_path=make_target(tmp_path))  # type: ignore[operator]
    assert capture_server.received == []


async def test_one_shot_refuses_base64_with_output_path(
    capture_server: CaptureServer, tmp_path: Path
) -> None:
    """rembg() with returnBase64 and output_path is refused as remove() refuses it."""
    with pytest.raises(ValueError, match="exclude each other"):
        await rembg(
            api_key="k",
            input_image=PNG,
            options={"returnBase64": True},
            output_path=tmp_path / "x.webp",
            base_url=capture_server.url,
        )
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(ValueError, match="exclude each other"):
            await client.remove(PNG, {"returnBase64": True}, output_path=tmp_path / "x.webp")
    assert capture_server.received == []
    assert list(tmp_path.iterdir()) == []
