"""Notebooks: results display inline, once, through Jupyter's ``_repr_mimebundle_``; a
notebook run in a real kernel (nbclient) shows what a user would see."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from rembg_async import AsyncRembg, ImageFile
from tests.conftest import LocalServer, make_image

PNG = make_image((64, 48), "PNG")
ROOT = Path(__file__).resolve().parent.parent
IMAGE_TYPES = {"image/png", "image/jpeg", "text/html"}


def _size_of_png(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize(("fmt", "mime"), [("png", "image/png"), ("jpeg", "image/jpeg")])
async def test_png_and_jpeg_show_as_themselves_once(
    unlimited_server: LocalServer, fmt: str, mime: str
) -> None:
    """A PNG or JPEG result's bundle is the image itself and nothing else (no HTML copy)."""
    async with AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        saved = await client.remove(PNG, {"format": fmt})
        encoded = await client.remove(PNG, {"format": fmt}, return_base64=True)
        raw = await client.remove(PNG, {"format": fmt}, return_bytes=True)
        data = saved.output_image_path.read_bytes()
        for result in (saved, encoded, raw):
            assert result._repr_mimebundle_() == {mime: data}
            assert not hasattr(result, "_repr_png_")  # IPython would add it to the bundle
        await saved.cleanup()


@pytest.mark.parametrize("fmt", ["webp", "bmp"])
async def test_webp_and_bmp_show_as_an_image(unlimited_server: LocalServer, fmt: str) -> None:
    """A WebP or BMP result shows as a PNG image of the same size (Pillow installed)."""
    async with AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        saved = await client.remove(PNG, {"format": fmt})
        encoded = await client.remove(PNG, {"format": fmt}, return_base64=True)
        for result in (saved, encoded):
            bundle = result._repr_mimebundle_()
            assert list(bundle) == ["image/png"]
            assert _size_of_png(bundle["image/png"]) == (64, 48)
        await saved.cleanup()


async def test_cleaned_up_result_says_so(unlimited_server: LocalServer) -> None:
    """Displaying a result whose file was cleaned up describes it instead of raising."""
    async with AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        saved = await client.remove(PNG)
    await saved.cleanup()
    bundle = saved._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert "cleaned up" in bundle["text/plain"]
    assert str(saved.output_image_path) in bundle["text/plain"]


def test_remote_result_says_where_it_is() -> None:
    """A result put in a store (``url`` set) is described by its URL, never read locally."""
    remote = ImageFile(
        output_image_path=Path("bucket/out/cat.png"),
        content_type="image/png",
        size=10,
        url="memory://bucket/out/cat.png",
    )
    bundle = remote._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert "stored at memory://bucket/out/cat.png" in bundle["text/plain"]


def _notebook(*cells: str) -> Any:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return notebook


def test_a_notebook_shows_each_result_once(
    unlimited_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run in a real kernel: six results give one image each (WebP too), a cleaned-up result
    a line of text and no error, and the notebook stays as small as its images."""
    (tmp_path / "cat.png").write_bytes(make_image((200, 150), "PNG"))
    monkeypatch.setenv("REMBG_API_KEY", unlimited_server.api_key)
    monkeypatch.setenv("REMBG_BASE_URL", unlimited_server.url)
    paths = [os.environ.get("PYTHONPATH", ""), str(ROOT)]  # the kernel imports what we do
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's own deprecation notice
    formats = ["png", "webp", "jpeg", "bmp", "png", "webp"]
    notebook = _notebook(
        "from rembg_async import Rembg\nclient = Rembg()\nresults = []",
        *(f"results.append(client.remove('cat.png', {{'format': '{fmt}'}}))\nresults[-1]"
          for fmt in formats),
        "results[0].cleanup()\nresults[0]",
        "for result in results[1:]:\n    result.cleanup()\nclient.close()",
    )  # fmt: skip
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    shown = [cell.outputs for cell in notebook.cells[1:7]]
    for fmt, outputs in zip(formats, shown, strict=True):
        assert [output.output_type for output in outputs] == ["execute_result"]
        data = outputs[0].data
        (mime,) = set(data) & IMAGE_TYPES  # one image, no HTML copy of it
        assert mime == ("image/jpeg" if fmt == "jpeg" else "image/png")
        with Image.open(io.BytesIO(base64.b64decode(data[mime]))) as decoded:
            assert decoded.size == (200, 150)
    cleaned = notebook.cells[7].outputs
    assert [output.output_type for output in cleaned] == ["execute_result"]
    assert list(cleaned[0].data) == ["text/plain"]
    assert "cleaned up" in cleaned[0].data["text/plain"]
    images = sum(len(str(outputs[0].data)) for outputs in shown)
    assert len(nbformat.writes(notebook)) < images + 20_000  # each image stored once


def test_tqdm_auto_bar_in_a_notebook_style_script(unlimited_server: LocalServer) -> None:
    """A tqdm.auto bar (a widget in Jupyter) driven by the sync client reaches the result size."""
    from tqdm.auto import tqdm

    from rembg_async import Rembg, tqdm_progress

    with (
        Rembg(unlimited_server.api_key, base_url=unlimited_server.url) as client,
        tqdm(file=io.StringIO(), unit="B") as bar,
    ):
        result = client.remove(PNG, on_download_progress=tqdm_progress(bar))
        result.close()
    assert bar.n == bar.total == result.size
