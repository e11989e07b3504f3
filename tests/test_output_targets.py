"""A result that could not be kept is refused before it is sent (and so never paid for)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CaptureServer, make_image

from rembg_async import AsyncRembg, InvalidInputError, RemoveOptions, rembg

PNG = make_image((40, 30), "PNG")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        pytest.param("cut.png", None, id="default-webp-into-png"),
        pytest.param("cut.webp", RemoveOptions(format="jpeg"), id="jpeg-into-webp"),
        pytest.param("cut.JPG", RemoveOptions(format="png"), id="png-into-jpg"),
    ],
)
async def test_extension_naming_another_format_is_refused(
    capture_server: CaptureServer, tmp_path: Path, name: str, options: RemoveOptions | None
) -> None:
    """output_path='x.png' with WEBP asked for is refused up front, saying how to fix it."""
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
    ],
)
async def test_matching_or_neutral_extension_is_written(
    capture_server: CaptureServer, tmp_path: Path, name: str, options: RemoveOptions | None
) -> None:
    """An extension of the asked format, or one naming no format, is written as before."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        result = await client.remove(PNG, options, output_path=tmp_path / name)
    assert result.output_image_path == tmp_path / name


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
