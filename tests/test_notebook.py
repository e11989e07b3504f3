"""Notebooks: results display inline through Jupyter's ``_repr_png_``/``_repr_mimebundle_``."""

from __future__ import annotations

import base64

import pytest

from rembg_async import AsyncRembg, Base64Image, ImageFile
from tests.conftest import LocalServer, make_image

PNG = make_image((64, 48), "PNG")


@pytest.mark.parametrize(("fmt", "mime"), [("png", "image/png"), ("webp", "image/webp")])
async def test_results_have_a_mime_bundle(
    unlimited_server: LocalServer, fmt: str, mime: str
) -> None:
    """Both result kinds give Jupyter the image bytes (PNG) or an <img> data URL (any format)."""
    async with AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        saved = await client.remove(PNG, {"format": fmt})
        encoded = await client.remove(PNG, {"format": fmt}, return_base64=True)
        assert isinstance(saved, ImageFile)
        assert isinstance(encoded, Base64Image)
        data = saved.output_image_path.read_bytes()
        for result in (saved, encoded):
            bundle = result._repr_mimebundle_()
            assert bundle["text/html"] == (
                f'<img src="data:{mime};base64,{base64.b64encode(data).decode()}"/>'
            )
            assert bundle.get("image/png") == (data if fmt == "png" else None)
            assert result._repr_png_() == (data if fmt == "png" else None)
        await saved.cleanup()


def test_tqdm_auto_bar_in_a_notebook_style_script(unlimited_server: LocalServer) -> None:
    """A tqdm.auto bar (a widget in Jupyter) driven by the sync client reaches the result size."""
    import io

    from tqdm.auto import tqdm

    from rembg_async import Rembg, tqdm_progress

    with (
        Rembg(unlimited_server.api_key, base_url=unlimited_server.url) as client,
        tqdm(file=io.StringIO(), unit="B") as bar,
    ):
        result = client.remove(PNG, on_download_progress=tqdm_progress(bar))
        result.close()
    assert bar.n == bar.total == result.size
