"""The command's surface as a new user meets it: help, version, flags, and no traceback for
anything a user can cause (issue 16, "The CLI")."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_cli_remove import COMMAND, IMAGES, run, run_in_terminal

from rembg_async import __version__
from rembg_async._cli._report import shorten
from rembg_async.server import Fault, ServerConfig


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused command printed (asserting it is one line, exit 2)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["remove", "x.png", "--concurrency", "0"], "--concurrency: must be at least 1, not 0"),
        (["remove", "x.png", "--retries", "-1"], "--retries: must be at least 0, not -1"),
        (["remove", "x.png", "--concurrency", "many"], "--concurrency: not a whole number"),
        (["remove", "x.png", "--timeout", "0"], "--timeout: must be a positive number"),
        (["remove", "x.png", "--timeout", "nan"], "--timeout: must be a positive number"),
        (["remove", "x.png", "--max-credits", "-3"], "--max-credits: must be at least 0"),
        (["remove"], "give an INPUT, or --retry-failed MANIFEST"),
        (["serve", "--port", "70000"], "--port: must be at most 65535"),
        (["serve", "--fault-rate", "2"], "--fault-rate: must be from 0 to 1"),
        (["serve", "--rate-limit", "-1"], "--rate-limit: must be at least 0"),
        (["usage", "--timeout", "-2"], "--timeout: must be a positive number"),
        (["usage", "--api-key", "pasted\n"], "usage: the API key contains a control character"),
        (["remove", "x.png", "--api-key", "k\n"], "remove: the API key contains a control"),
        (["usage", "--base-url", "ftp://rembg.test"], "usage: not an http(s) URL"),
    ],
)
def test_bad_option_values_are_one_line_and_exit_2(args: list[str], said: str) -> None:
    """A bad value is refused before anything runs: exit 2, one line naming the option."""
    line = one_line_error(run(*args))
    assert said in line
    assert line.startswith(f"rembg-async {args[0]}: ")


def test_version() -> None:
    """--version prints the package's version."""
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout == f"rembg-async {__version__}\n"


def test_top_level_help_is_plain_text() -> None:
    """The top-level help says what the command does, with no reStructuredText markup."""
    result = run("--help")
    assert result.returncode == 0
    assert "``" not in result.stdout
    assert ":class:" not in result.stdout
    assert "Remove the background of images" in result.stdout
    assert "--version" in result.stdout


def test_serve_help_shows_its_defaults() -> None:
    """serve --help gives each option's default, and no empty ones."""
    result = run("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for default in ("127.0.0.1", "7000", "0.0", "100", "1.0"):
        assert f"(default: {default})" in text
    assert "(default: None)" not in text
    assert "(default: False)" not in text


def free_port_in_use() -> socket.socket:
    """A listening socket on a loopback port (the caller closes it)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken


def test_serve_on_a_busy_port_says_so() -> None:
    """serve on a port another program holds: one line saying so, exit 1, no traceback."""
    with free_port_in_use() as taken:
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"rembg-async serve: cannot listen on 127.0.0.1:{port}: "
        f"error while attempting to bind on address ('127.0.0.1', {port}): address already in use"
    ]


def test_serve_access_log_logs_each_request() -> None:
    """serve --access-log writes one line per request to stderr; without it, none."""
    import requests

    lines = {}
    for flag in ([], ["--access-log"]):
        process = subprocess.Popen(
            [*COMMAND, "serve", "--port", "0", *flag],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert requests.get(f"{url}/api/membership-usage", timeout=30).status_code == 401
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0
        lines[bool(flag)] = [line for line in err.splitlines() if "GET /api/membership" in line]
    assert lines[False] == []
    assert len(lines[True]) == 1
    assert '" 401 ' in lines[True][0]


def test_plain_http_base_url_needs_the_flag(rembg_server: Any) -> None:
    """A plain-http --base-url on another host is refused in one line naming
    --allow-insecure-http; with the flag the command runs (through a loopback proxy here)."""
    url = "http://rembg.test"
    result = run("usage", "--base-url", url, "--api-key", rembg_server.api_key)
    line = one_line_error(result)
    assert "plain http to rembg.test" in line
    assert "--allow-insecure-http" in line
    # aiohttp sends absolute-form requests to the proxy; the local server answers them.
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy")}
    env["HTTP_PROXY"] = rembg_server.url
    result = run(
        "usage", "--base-url", url, "--api-key", rembg_server.api_key, "--allow-insecure-http",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "membership: " in result.stdout


def test_timeout_is_the_longest_silence(rembg_server_factory: Any, tmp_path: Path) -> None:
    """--timeout N fails an image whose answer is slower than N seconds of silence."""
    server = rembg_server_factory(ServerConfig(faults=True))
    server.faults.push(Fault(latency=5.0))
    result = run(
        "remove", str(IMAGES / "mug.jpg"), "--base-url", server.url, "--api-key", server.api_key,
        "--timeout", "0.3", "--retries", "0", "-o", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "went silent for longer than the read timeout" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("pattern", ["{tmp}/empty", "{tmp}/*.png", "{tmp}/empty/**/*.jpg"])
def test_inputs_matching_nothing_are_refused(tmp_path: Path, pattern: str) -> None:
    """A folder or glob naming no image says so and exits 2, sending nothing."""
    (tmp_path / "empty").mkdir()
    given = pattern.format(tmp=tmp_path)
    result = run("remove", str(IMAGES / "mug.jpg"), given, "--local", "-o", str(tmp_path / "o"))
    assert one_line_error(result) == f"rembg-async remove: no image matches {given!r}"
    assert not (tmp_path / "o").exists()


def test_unwritable_manifest_is_refused_up_front(tmp_path: Path) -> None:
    """A manifest that cannot be written: one line, exit 2, nothing sent or written."""
    manifest = tmp_path / "missing-folder" / "manifest.jsonl"
    result = run(
        "remove", str(IMAGES), "--local", "-o", str(tmp_path / "o"), "--manifest", str(manifest)
    )
    line = one_line_error(result)
    assert line.startswith("rembg-async remove: cannot write the manifest: ")
    assert str(manifest) in line
    assert not (tmp_path / "o").exists()


def test_retry_failed_runs_only_what_failed(tmp_path: Path) -> None:
    """--retry-failed MANIFEST runs again only the inputs that failed, placed as the folder
    places them, and appends to that manifest; once all are made, there is nothing to do."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "mug.jpg").write_bytes((IMAGES / "mug.jpg").read_bytes())
    broken = photos / "sub" / "orange.png"
    broken.write_bytes(b"not yet an image")
    manifest, out = tmp_path / "manifest.jsonl", tmp_path / "out"
    first = run("remove", str(photos), "--local", "-o", str(out), "--manifest", str(manifest))
    assert first.returncode == 1
    broken.write_bytes((IMAGES / "orange-small.png").read_bytes())  # the user fixes it
    again = run("remove", str(photos), "--local", "-o", str(out), "--retry-failed", str(manifest))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines() == [f"ok      {broken} -> {out / 'sub' / 'orange.webp'}"]
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [entry["status"] for entry in entries][-1] == "ok"
    done = run("remove", "--local", "-o", str(out), "--retry-failed", str(manifest))
    assert done.returncode == 0
    assert done.stdout == ""
    assert f"nothing failed in {manifest}" in done.stderr


def test_quiet_prints_only_failures(tmp_path: Path) -> None:
    """--quiet: no line per made image and no summary; a failure is still said, exit 1."""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"no image")
    result = run("remove", str(IMAGES), str(bad), "--local", "-o", str(tmp_path / "o"), "-q")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"failed  {bad}: File does not appear to be a valid image (invalid file signature)"
    ]
    assert len(list((tmp_path / "o").glob("*.webp"))) == 4


@pytest.mark.parametrize("mode", ["--base64", "--redo"], ids=["data-urls", "lines"])
def test_broken_pipe_stops_quietly(tmp_path: Path, mode: str) -> None:
    """``| head -1``: the command stops when its reader leaves, exit 141, no traceback."""
    (tmp_path / "in").mkdir()
    for number in range(12):
        (tmp_path / "in" / f"mug-{number}.jpg").write_bytes((IMAGES / "mug.jpg").read_bytes())
    reader, writer = os.pipe()
    process = subprocess.Popen(
        [*COMMAND, "remove", str(tmp_path / "in"), "--local", mode, "--concurrency", "1",
         "-o", str(tmp_path / "out")],
        stdout=writer, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        first = pipe.readline()  # as head -1: one line, then gone
    _, err = process.communicate(timeout=120)
    assert b"\tdata:image/webp;base64," in first if mode == "--base64" else first.startswith(b"ok ")
    assert process.returncode == 141
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err


def test_ctrl_c_in_usage_and_serve_is_quiet() -> None:
    """Ctrl-C while usage waits for the server, or while serve serves: no traceback."""
    with free_port_in_use() as silent:  # accepts connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        usage = subprocess.Popen(
            [*COMMAND, "usage", "--base-url", url, "--api-key", "k", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        connection, _ = silent.accept()  # the request is on its way: interrupt it
        usage.send_signal(signal.SIGINT)
        _, usage_err = usage.communicate(timeout=30)
        connection.close()
    assert usage.returncode == 130
    assert "Traceback" not in usage_err
    serve = subprocess.Popen(
        [*COMMAND, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert serve.stdout is not None
    serve.stdout.readline()
    serve.send_signal(signal.SIGINT)
    _, serve_err = serve.communicate(timeout=30)
    assert serve.returncode == 0
    assert "Traceback" not in serve_err


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0-9]")


def screen_of(*args: str, columns: int = 80) -> tuple[int, list[str]]:
    """The command in a pseudo-terminal ``columns`` wide: its exit code and the lines it
    drew (escape codes removed; each redraw of a line is a line of its own)."""
    code, screen = run_in_terminal(*args, columns=columns)
    text = ANSI.sub("", screen)
    return code, [line for line in re.split(r"[\r\n]+", text) if line]


def test_bars_say_processing_fit_80_columns_and_summary_tells_all(
    rembg_server_factory: Any, tmp_path: Path
) -> None:
    """In an 80-column terminal: after the upload, the image's bar says "processing" until the
    answer starts; a long name is shortened so that every line fits; the summary gives the
    time, the rate, the credits and where the outputs are."""
    server = rembg_server_factory(ServerConfig(faults=True))
    server.faults.push(Fault(latency=1.5))  # the server "thinks" before answering
    long_name = "a-photo-with-a-name-much-too-long-for-any-progress-bar-" + "x" * 40 + ".jpg"
    (tmp_path / long_name).write_bytes((IMAGES / "mug.jpg").read_bytes())
    # A short output folder, so that "outputs in FOLDER" fits 80 columns whatever the length of
    # tmp_path (pytest-xdist's workers add a folder to it).
    out = Path(tempfile.mkdtemp(prefix="rembg-out-"))
    try:
        code, lines = screen_of(
            "remove", str(tmp_path / long_name), "--base-url", server.url,
            "--api-key", server.api_key, "-o", str(out),
        )  # fmt: skip
    finally:
        shutil.rmtree(out)
    assert code == 0, lines
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    processing = [line for line in lines if "processing" in line]
    assert processing, lines
    assert "… a-photo-with…xxxxxxxxx.jpg ━" in processing[0]  # 26 characters
    assert "/s" not in processing[0]  # no speed frozen on a finished upload
    header = next(line for line in lines if "made" in line and "credits" in line)
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == [
        "made",
        "skipped",
        "failed",
        "time",
        "rate",
        "credits",
        "api rate",
        "429s",
    ]
    row = next(line for line in lines if line.startswith("│"))
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[:3] == ["1", "0", "0"]
    assert cells[3].endswith(" s")
    assert cells[4].endswith("/s")
    assert cells[5] == "1"
    assert any(line.startswith(f"outputs in {out}") for line in lines)


def test_base64_lines_name_no_deleted_file(tmp_path: Path) -> None:
    """--base64: the line per image on stderr names the input only, not the temporary file
    it has already deleted; the summary says the outputs went to standard output."""
    result = run("remove", str(IMAGES / "mug.jpg"), "--local", "--base64")
    assert result.returncode == 0, result.stderr
    assert f"ok      {IMAGES / 'mug.jpg'}\n" in result.stderr
    assert " -> " not in result.stderr
    assert "outputs in standard output" in result.stderr


@given(stem=st.text(min_size=1, max_size=300), width=st.integers(min_value=12, max_value=200))
def test_shortened_names_fit_and_keep_their_ends(stem: str, width: int) -> None:
    """A name is kept whole when it fits; otherwise its middle becomes "…", its length is the
    width, and its start and its extension are kept."""
    name = f"{stem}.jpeg"
    short = shorten(name, width)
    if len(name) <= width:
        assert short == name
    else:
        assert len(short) == width
        assert "…" in short
        assert short.endswith(".jpeg")
        assert name.startswith(short.split("…")[0])
