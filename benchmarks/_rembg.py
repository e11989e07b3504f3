"""danielgatis's rembg (`rembg s`) as a server to measure against, on our own weights.

It is installed in a virtualenv of its own (its ``rembg`` package would clash with the
distribution that carries our weights), and finds ``u2netp.onnx`` in ``U2NET_HOME``: a folder
holding a link to our file, which rembg's md5 check accepts, so it downloads nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import ServerProcess

from rembg_async.server._matting import bundled_model

#: The version measured; its CPU and server extras (onnxruntime, FastAPI, uvicorn, Gradio).
REQUIREMENT = "rembg[cpu,cli]==2.0.86"
OUT = Path(__file__).parent / ".out"
#: What the answers of `rembg s` are asked for: the same weights as our server's.
MODEL = "u2netp"


def ensure_venv(venv: Path) -> Path:
    """The Python of ``venv``, with rembg installed in it first if it is not there yet."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run([str(python), "-m", "ensurepip", "--upgrade"], check=True)
    probe = subprocess.run([str(python), "-c", "import rembg.cli"], capture_output=True)
    if probe.returncode != 0:
        install = [str(python), "-m", "pip", "install", "--quiet", REQUIREMENT]
        subprocess.run(install, check=True)
    return python


def weights_home() -> Path:
    """A ``U2NET_HOME`` whose ``u2netp.onnx`` is our weights file."""
    weights = bundled_model()
    if weights is None:
        raise SystemExit("the model extra is not installed: no weights to share with rembg")
    home = OUT / "u2net"
    home.mkdir(parents=True, exist_ok=True)
    link = home / f"{MODEL}.onnx"
    if not link.exists():
        link.symlink_to(weights)
    return home


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rembg s exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api", timeout=1):  # its OpenAPI page
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("rembg s did not start")


@contextmanager
def rembg_server(venv: Path) -> Iterator[ServerProcess]:
    """`rembg s --no-ui` on a free port of 127.0.0.1, with its defaults otherwise."""
    ensure_venv(venv)
    port = _free_port()
    environment = {**os.environ, "U2NET_HOME": str(weights_home())}
    command = [str(venv / "bin" / "rembg"), "s", "--no-ui", "-h", "127.0.0.1"]
    command += ["-p", str(port), "-l", "warning"]
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield ServerProcess(process, url)
    finally:
        process.terminate()
        process.wait(timeout=30)
