"""rembg(): the one-shot call that mirrors rembg.js."""

from __future__ import annotations

import base64
from pathlib import Path

from conftest import make_image

from rembg_async import Base64Image, ImageFile, ProgressEvent, rembg
from rembg_async.server import LocalServer

EXAMPLE = Path(__file__).parent.parent / "examples" / "images" / "mug.jpg"


async def test_like_rembg_js(rembg_server: LocalServer) -> None:
    """A path in, a temporary webp out (rembg-….webp), progress both ways, cleanup works."""
    events: list[ProgressEvent] = []
    result = await rembg(
        api_key=rembg_server.api_key,
        input_image=str(EXAMPLE),
        on_upload_progress=events.append,
        on_download_progress=events.append,
        base_url=rembg_server.url,
    )
    assert isinstance(result, ImageFile)
    assert result.output_image_path.name.startswith("rembg-")
    assert result.output_image_path.suffix == ".webp"
    assert {event.to_dict().get("upload") for event in events} == {True, None}
    await result.cleanup()
    assert not result.output_image_path.exists()


async def test_rembg_js_options_dict(rembg_server: LocalServer) -> None:
    """rembg.js option names work, returnBase64 included; the data URL type is the real one."""
    result = await rembg(
        api_key=rembg_server.api_key,
        input_image={"base64": "data:image/png;base64," + base64.b64encode(make_image()).decode()},
        options={"returnBase64": True, "returnMask": True, "format": "png", "w": 0, "h": 0},
        base_url=rembg_server.url,
    )
    assert isinstance(result, Base64Image)
    assert result.base64_image.startswith("data:image/png;base64,")


async def test_output_path(rembg_server: LocalServer, tmp_path: Path) -> None:
    """output_path saves where asked, not in the temporary folder."""
    target = tmp_path / "cut.webp"
    result = await rembg(
        api_key=rembg_server.api_key,
        input_image=make_image(),
        output_path=target,
        base_url=rembg_server.url,
    )
    assert isinstance(result, ImageFile)
    assert result.output_image_path == target
    assert not result.temporary
