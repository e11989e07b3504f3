"""What ``rembg-async remove`` writes where nobody watches a terminal: a log file, a pipe; each
failure once, with its file name; a missing extra as a usage error."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import make_image

from rembg_async.server import LocalServer

COMMAND = [sys.executable, "-m", "rembg_async"]
#: Rich's box-drawing characters.
BOX_DRAWING = re.compile("[\u2500-\u257f]")


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment without a key or base URL of the developer's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REMBG_")}
    env["REMBG_ASYNC_ENGINE"] = "classic"
    env["HOME"] = str(tmp_path)
    return env


def two_images(folder: Path) -> Path:
    """Two small images in ``folder``."""
    folder.mkdir()
    for name in ("cat.png", "cup.png"):
        (folder / name).write_bytes(make_image((40, 30)))
    return folder


def test_a_log_file_gets_plain_lines(rembg_server_factory: Any, tmp_path: Path) -> None:
    """Both streams to a file: a line per image and a summary of plain lines (no box
    drawing), naming every count, the time, the rate, credits, 429s, the API rate in words
    and where the outputs are."""
    server: LocalServer = rembg_server_factory()
    folder, out, log = two_images(tmp_path / "in"), tmp_path / "out", tmp_path / "run.log"
    with log.open("w") as stream:
        result = subprocess.run(
            [*COMMAND, "remove", str(folder), "-o", str(out), "--base-url", server.url,
             "--api-key", server.api_key or ""],
            stdout=stream, stderr=stream, timeout=120, check=False,
        )  # fmt: skip
    text = log.read_text(encoding="utf-8")
    assert result.returncode == 0, text
    assert not BOX_DRAWING.search(text), text
    lines = text.splitlines()
    assert sum(line.startswith("ok ") for line in lines) == 2
    assert "made 2, skipped 0, failed 0, cancelled 0" in lines
    assert any(
        re.fullmatch(r"time \d+\.\d s, \d+\.\d\d images/s, credits 2", line) for line in lines
    )
    assert (
        "429s 0, API rate unpaced: no 429s, so requests went as fast as --concurrency let them"
        in lines
    )
    assert f"outputs in {out}" in lines


def test_a_failure_is_said_once_with_its_file_name(tmp_path: Path) -> None:
    """Nobody listening: one line says the image failed, with its name, the system's reason
    and the attempts; no second line from logging, no aiohttp "ssl:default"; the library's
    own warning (no key) is shown once, as a line of ours."""
    folder = two_images(tmp_path / "in")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [*COMMAND, "remove", str(folder / "cat.png"), "-o", str(tmp_path / "out"),
         "--base-url", f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    said = (result.stdout + result.stderr).splitlines()
    failures = [line for line in said if "cat.png" in line]
    assert failures == [
        f"failed  {folder / 'cat.png'}: connection to http://127.0.0.1:{port}/rmbg failed: "
        "Connection refused (after 3 attempts)"
    ]
    assert not [line for line in said if "giving up" in line or "ssl:" in line]
    anonymous = [line for line in said if "no RemBG API key" in line]
    assert anonymous == [
        "rembg-async: no RemBG API key given: calls are anonymous, with a small daily limit"
    ]


def test_local_without_the_server_extra_is_a_usage_error(tmp_path: Path) -> None:
    """--local where the server extra cannot be imported (NumPy blocked): exit 2, one line
    naming the extra, for remove and usage alike."""
    image = tmp_path / "cat.png"
    image.write_bytes(make_image((40, 30)))
    blocked = "import sys; sys.modules['numpy'] = None\nfrom rembg_async._cli import main\n"
    for argv in (
        ["remove", str(image), "--local", "-o", str(tmp_path / "o")],
        ["usage", "--local"],
    ):
        code = blocked + f"sys.exit(main({argv!r}))"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"rembg-async {argv[0]} --local: this needs the server extra: "
            "pip install 'rembg-async[server]'"
        ]
        assert not (tmp_path / "o").exists()
