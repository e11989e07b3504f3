"""The README's main job on this Python, and what the command line says when the model cannot run.

`nox` runs this file on every Python the package claims (3.10 to 3.13): the weights are package
data of ours, so the model runs wherever onnxruntime installs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).parent.parent
#: Runs the command line with onnxruntime hidden, as on an install without the model extra.
WITHOUT_ONNXRUNTIME = (
    "import sys; sys.modules['onnxruntime'] = None\n"
    "from rembg_async._cli import main; sys.exit(main(sys.argv[1:]))"
)


def user_env() -> dict[str, str]:
    """The environment a user has: no engine chosen (the suite's conftest picks the threshold)."""
    return {key: value for key, value in os.environ.items() if key != "REMBG_ASYNC_ENGINE"}


def test_main_job_keeps_the_cats_body(tmp_path: Path) -> None:
    """`rembg-async remove examples/images --local` runs U²-Net here: the cat stays mostly opaque
    (0.68 of its cut-out; the threshold engine leaves 0.00), and no engine notice is printed."""
    result = subprocess.run(
        [sys.executable, "-m", "rembg_async", "remove", "examples/images", "--local",
         "-o", str(tmp_path)],
        cwd=ROOT, env=user_env(), capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "engine: classic" not in result.stderr
    (cat,) = tmp_path.rglob("chelsea.*")
    with Image.open(cat) as image:
        alpha = np.asarray(image.getchannel("A"))
    opaque = float((alpha >= 128).mean())
    assert opaque > 0.4, f"only {opaque:.2f} of the cat's cut-out is opaque: not the model's cut"


def test_local_remove_says_first_which_engine_runs_and_why(tmp_path: Path) -> None:
    """Without onnxruntime, `remove --local` says on its first line that the threshold runs,
    and why (with the install command), then does the job."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_ONNXRUNTIME, "remove", "examples/images/bottle.jpg",
         "--local", "-o", str(tmp_path)],
        cwd=ROOT, env=user_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("rembg-async --local: engine: classic"), result.stderr
    assert "onnxruntime is not installed (pip install 'rembg-async[model]')" in first


def test_serve_says_first_which_engine_runs_and_why() -> None:
    """Without onnxruntime, `serve`'s first line on stderr names the engine and why."""
    process = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_ONNXRUNTIME, "serve", "--port", "0"],
        env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
    finally:
        process.kill()
        _, rest = process.communicate(timeout=30)
    assert first.startswith("rembg-async serve: engine: classic"), first + rest
    assert "onnxruntime is not installed" in first


def test_no_notice_when_the_engine_is_chosen() -> None:
    """`--engine classic` is the user's choice: nothing to explain, the URL line comes first."""
    process = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_ONNXRUNTIME, "serve", "--port", "0", "--engine", "classic"],
        env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert first.startswith("RemBG-compatible server on http://127.0.0.1:"), first
