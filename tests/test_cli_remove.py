"""``rembg-async remove`` and ``usage`` as a user runs them: piped, and in a terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path, PurePath
from typing import Any

import pytest
from conftest import read_terminal

from rembg_async._cli._walk import Inputs
from rembg_async.server import Account, ServerConfig

ROOT = Path(__file__).parent.parent
IMAGES = ROOT / "examples" / "images"
# Every image under it, the photos in its photos/ folder included (a folder is recursive).
IMAGE_COUNT = sum(1 for path in IMAGES.rglob("*") if path.suffix in {".jpg", ".png"})
COMMAND = [sys.executable, "-m", "rembg_async"]


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command, piped (stdout is not a terminal)."""
    return subprocess.run(
        [*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def run_in_terminal(*args: str, columns: int | None = None) -> tuple[int, str]:
    """The command with a pseudo-terminal as stdout and stderr (``columns`` wide when given);
    its exit code and screen."""
    leader, follower = pty.openpty()
    env = None
    if columns is not None:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [*COMMAND, *args], cwd=ROOT, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    return read_terminal(leader, process)


def test_piped_output_is_one_plain_line_per_image(tmp_path: Path) -> None:
    """Without a terminal: a line per image, files written, the summary on stderr, exit 0."""
    result = run(
        "remove", str(IMAGES), "--local", "-o", str(tmp_path), "--format", "png", "--w", "100"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == IMAGE_COUNT
    assert all(line.startswith("ok ") for line in lines)
    assert "\x1b[" not in result.stdout  # no escape codes in a pipe
    made = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*.png"))
    assert made == [  # the inputs' layout, mirrored
        "bottle.png",
        "mug.png",
        "orange-small.png",
        "orange.png",
        "photos/astronaut.png",
        "photos/chelsea.png",
        "photos/coffee.png",
    ]
    assert (tmp_path / ".rembg-async-index.jsonl").exists()  # what each output was made from
    assert "made" in result.stderr


def test_a_failed_image_makes_the_exit_code_non_zero(tmp_path: Path) -> None:
    """One bad input among good ones: the others are made, the exit code is 1."""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"no image")
    result = run(
        "remove", str(bad), str(IMAGES / "mug.jpg"), "--local", "-o", str(tmp_path / "out")
    )
    assert result.returncode == 1
    assert f"failed  {bad}: File does not appear to be a valid image" in result.stdout
    assert "ok      " in result.stdout


def test_terminal_shows_live_bars_and_a_summary(tmp_path: Path) -> None:
    """In a terminal: the batch bar reaches N/N, then the summary. (Seven small images can be
    done before the bars redraw once, so the per-file bars are checked against a server slow
    enough to show them, in test_cli_surface.)"""
    code, screen = run_in_terminal("remove", str(IMAGES), "--local", "-o", str(tmp_path))
    assert code == 0, screen
    assert "images" in screen
    assert f"{IMAGE_COUNT}/{IMAGE_COUNT}" in screen
    assert "made" in screen


def test_base64_prints_only_data_urls(tmp_path: Path) -> None:
    """--base64: stdout carries INPUT<TAB>data URL lines and nothing else; no file is left."""
    result = run(
        "remove", str(IMAGES / "mug.jpg"), str(IMAGES / "orange-small.png"), "--local", "--base64"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.split("\t")[1].startswith("data:image/webp;base64,") for line in lines)


def test_manifest_and_skip_existing(tmp_path: Path) -> None:
    """A re-run with --skip-existing skips what is made; the manifest records both runs."""
    manifest, out = tmp_path / "m.jsonl", tmp_path / "out"
    arguments = [
        "remove",
        str(IMAGES / "mug.jpg"),
        "--local",
        "-o",
        str(out),
        "--manifest",
        str(manifest),
    ]
    assert run(*arguments).returncode == 0
    again = run(*arguments, "--skip-existing")
    assert again.stdout.startswith("skipped ")
    statuses = [json.loads(line)["status"] for line in manifest.read_text().splitlines()]
    assert statuses == ["ok", "skipped"]


def test_invalid_options_are_refused_before_anything_runs() -> None:
    """Bad options: exit 2 and the server's own words."""
    result = run("remove", str(IMAGES / "mug.jpg"), "--local", "--w", "-5", "--angle", "500")
    assert result.returncode == 2
    assert "Multiple validation errors" in result.stderr
    assert "'w' must be at least 1, got: -5" in result.stderr


def test_usage_local() -> None:
    """usage --local --cycles prints the plan, credits and the cycle table."""
    result = run("usage", "--local", "--cycles")
    assert result.returncode == 0, result.stderr
    assert "membership: Premium-20000" in result.stdout
    assert "billing cycles" in result.stdout


def test_key_from_a_dotenv_file(rembg_server_factory, tmp_path: Path) -> None:
    """With no --api-key nor $REMBG_API_KEY, the key comes from ./.env."""
    server = rembg_server_factory(
        ServerConfig(accounts=[Account(api_key="from-dotenv", membership="Dotenv")])
    )
    (tmp_path / ".env").write_text('# settings\nexport REMBG_API_KEY="from-dotenv"\n')
    env = {key: value for key, value in os.environ.items() if key != "REMBG_API_KEY"}
    result = run("usage", "--base-url", server.url, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "membership: Dotenv" in result.stdout


def test_wrong_key_is_a_clear_error(rembg_server) -> None:  # type: ignore[no-untyped-def]
    """A refused key: exit 1 and the server's message, no traceback."""
    result = run("usage", "--base-url", rembg_server.url, "--api-key", "wrong")
    assert result.returncode == 1
    assert "401 invalid api key" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("folder_pattern", ["{images}", "{images}/*.jpg"], ids=["folder", "glob"])
def test_folders_and_globs(tmp_path: Path, folder_pattern: str) -> None:
    """A folder means every image inside it; a quoted glob is expanded by the command."""
    pattern = folder_pattern.format(images=IMAGES)
    result = run("remove", pattern, "--local", "-o", str(tmp_path))
    expected = IMAGE_COUNT if pattern == str(IMAGES) else 3
    assert len(result.stdout.splitlines()) == expected


def expand_inputs(patterns: list[str], **given: Any) -> dict[str, PurePath]:
    """Each input the INPUTs name, as walked, with its place under ``-o``."""
    inputs = Inputs(patterns, **given)
    return {value: inputs.place(value) for value in inputs}


def test_inputs_keep_their_place_under_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each input's output place is its path under its folder (or under ``--root``), by name
    when it is outside; the output folder's files are left out, and only they (not a sibling
    whose name starts alike), however either is spelled."""
    for name in ("a.png", "sub/b.png", "out/made.png", "outline.png", ".hidden.png"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes((IMAGES / "mug.jpg").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert expand_inputs(["in"], exclude=tmp_path / "in" / "out") == {
        "in/a.png": PurePath("a.png"),
        "in/outline.png": PurePath("outline.png"),
        "in/sub/b.png": PurePath("sub/b.png"),
    }
    assert expand_inputs(["in/*/*.png"], exclude=Path("in/out/")) == {
        "in/sub/b.png": PurePath("sub/b.png")
    }
    assert expand_inputs([str(tmp_path / "in" / "sub" / "b.png")], root=Path("in")) == {
        str(tmp_path / "in" / "sub" / "b.png"): PurePath("sub/b.png")
    }
    assert expand_inputs(["in/sub/b.png"], root=Path("elsewhere")) == {
        "in/sub/b.png": PurePath("b.png")
    }


def test_daily_limit_stop_is_reported(tmp_path: Path) -> None:
    """Anonymous against a tiny daily limit: the stop and the inputs left are said plainly."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [*COMMAND, "serve", "--port", str(port), "--daily-limit", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        env = {key: value for key, value in os.environ.items() if key != "REMBG_API_KEY"}
        (tmp_path / "in").mkdir()
        inputs = []
        for number in range(6):  # six inputs (one input given six times is sent once)
            inputs.append(str(tmp_path / "in" / f"mug-{number}.jpg"))
            Path(inputs[-1]).write_bytes((IMAGES / "mug.jpg").read_bytes())
        result = run(
            "remove", *inputs, "--base-url", url, "-o", str(tmp_path / "out"), "--concurrency", "1",
            "--retries", "0", cwd=tmp_path, env=env,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=15)
        if server.stdout is not None:
            server.stdout.close()
    assert result.returncode == 1
    assert "stopped, You've reached your daily limit." in result.stderr
    assert "(3 input(s) not started" in result.stderr
    assert "Traceback" not in result.stderr
