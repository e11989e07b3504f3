"""``rembg-async serve`` as a user runs it: prints its URL, serves, stops on a signal."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import make_image


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start the command on a free port; return it and the URL it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rembg_async", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else ""
    return process, url


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A server started with one key; killed after the test if still running."""
    process, url = start("--api-key", "cli-key")
    yield process, url
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def test_serve_answers_with_the_given_key(served: tuple[subprocess.Popen[str], str]) -> None:
    """A key given with --api-key works; another does not."""
    _, url = served
    files = {"image": ("a.png", make_image())}
    assert requests.post(
        f"{url}/rmbg", headers={"x-api-key": "cli-key"}, files=files, timeout=30
    ).ok
    wrong = requests.post(f"{url}/rmbg", headers={"x-api-key": "other"}, files=files, timeout=30)
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    "signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"]
)
def test_serve_stops_cleanly_on_signals(
    served: tuple[subprocess.Popen[str], str], signal_number: int
) -> None:
    """SIGTERM and Ctrl-C stop the server with exit code 0 and no traceback."""
    process, _ = served
    process.send_signal(signal_number)
    assert process.wait(timeout=15) == 0
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()


def test_accounts_file(tmp_path: Path) -> None:
    """--accounts loads plans, credits and verification state from a JSON file."""
    accounts = [
        {
            "api_key": "a",
            "membership": "Pro",
            "credits": 7,
            "prepaid_credits": 3,
            "email_verified": True,
        },
        {
            "api_key": "b",
            "membership": "Free",
            "credits": 1,
            "prepaid_credits": 0,
            "email_verified": False,
        },
    ]
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(accounts))
    process, url = start("--accounts", str(path))
    try:
        usage = requests.get(
            f"{url}/api/membership-usage", headers={"x-api-key": "a"}, timeout=10
        ).json()
        assert (usage["membership"], usage["credits"], usage["prepaidCredits"]) == ("Pro", 7, 3)
        assert (
            requests.get(
                f"{url}/api/membership-usage", headers={"x-api-key": "b"}, timeout=10
            ).status_code
            == 403
        )
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_bad_accounts_file_is_a_clear_error(tmp_path: Path) -> None:
    """An unreadable accounts file exits with 2 and says what is wrong."""
    path = tmp_path / "accounts.json"
    path.write_text('[{"api_key": "a", "colour": "blue"}]')
    result = subprocess.run(
        [sys.executable, "-m", "rembg_async", "serve", "--accounts", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "bad --accounts file" in result.stderr


def test_a_second_ctrl_c_ends_a_slow_shutdown_at_once() -> None:
    """While the first Ctrl-C waits for a response still being sent, a second one ends it."""
    process, url = start("--api-key", "cli-key", "--faults")
    try:
        slow = requests.post(
            f"{url}/rmbg",
            headers={"x-api-key": "cli-key", "x-rembg-fault": "trickle=1,chunk=1"},
            files={"image": ("a.png", make_image())},
            stream=True,
            timeout=60,
        )  # a byte a second: the graceful shutdown would wait for it
        assert slow.status_code == 200
        process.send_signal(signal.SIGINT)
        host, port = url.removeprefix("http://").split(":")
        while True:  # the first Ctrl-C was handled once the server stops listening
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except (ConnectionRefusedError, ConnectionResetError):  # reset: closed mid-accept
                break
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        assert time.monotonic() - started < 5
        slow.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
