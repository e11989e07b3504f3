"""The example web services (aiohttp and FastAPI), each run as its own process on loopback."""

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

import attrs

EXAMPLES = Path(__file__).parent.parent / "examples"
SERVICES = ["web_service.py", "web_service_fastapi.py"]


@attrs.frozen
class Service:
    """A running example service: its process, URL and temporary folder."""

    process: subprocess.Popen[bytes]
    url: str
    temp: Path

    def peak_rss_mib(self) -> float:
        """The process's peak resident memory (VmHWM) in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def deleted_open_files(self) -> list[str]:
        """Files the process holds open that were deleted (a temporary file not closed)."""
        folder = Path(f"/proc/{self.process.pid}/fd")
        targets = []
        for fd in folder.iterdir():
            try:
                targets.append(os.readlink(fd))
            except OSError:  # closed meanwhile
                continue
        return [target for target in targets if target.endswith("(deleted)")]


def free_port() -> int:
    """A port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running(script: str, api_url: str, api_key: str, temp: Path) -> Iterator[Service]:
    """``examples/<script> --port <free> --base-url <api_url>``, until the block ends."""
    port = free_port()
    command = [sys.executable, str(EXAMPLES / script), "--port", str(port)]
    command += ["--base-url", api_url, "--api-key", api_key]
    # The examples' folder (they import each other), then this checkout's rembg_async.
    path = os.pathsep.join([str(EXAMPLES), str(EXAMPLES.parent)])
    environment = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": path}
    process = subprocess.Popen(command, cwd=EXAMPLES, env=environment)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(process, url)
        yield Service(process=process, url=url, temp=temp)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):  # loopback only
                return
        except OSError:
            time.sleep(0.05)  # polling for start-up, not timing an assertion
    raise AssertionError("the service did not start within 60 s")
