"""Shared pieces of the benchmarks: a local server in its own process and its memory, and the
fixed-answer servers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

BENCH_KEY = "bench-key"


@attrs.frozen
class ServerProcess:
    """A ``rembg-async serve`` process and its URL."""

    process: subprocess.Popen[str]
    url: str

    def peak_rss_mib(self) -> float:
        """The process's peak resident memory (VmHWM) in MiB."""
        return _status_kib(self.process.pid, "VmHWM") / 1024

    def rss_mib(self) -> float:
        """The process's current resident memory in MiB."""
        return _status_kib(self.process.pid, "VmRSS") / 1024

    def reset_peak(self) -> None:
        """Start a new peak-memory measurement (Linux: clear_refs 5 resets VmHWM)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


@contextmanager
def server_process(*extra: str) -> Iterator[ServerProcess]:
    """Run the local server in a child process, without rate limits, on a free port.

    Its engine is ``classic`` unless ``extra`` names one: the client benchmarks measure the
    client, and the model would only make every figure slower.
    """
    command = [sys.executable, "-m", "rembg_async", "serve", "--port", "0", "--api-key", BENCH_KEY]
    command += ["--rate-limit", "0", "--daily-limit", "0", *extra]
    if "--engine" not in extra:  # the figures published so far are the classic engine's
        command += ["--engine", "classic"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        yield ServerProcess(process, process.stdout.readline().strip())
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def fast_servers(answers: set[int], *extra: str) -> Iterator[dict[int, str]]:
    """One fast server per answer size (``extra``: more of its options); yields their URLs
    by size."""
    processes = []
    try:
        urls = {}
        for answer in sorted(answers):
            command = [
                sys.executable,
                str(Path(__file__).parent / "fast_server.py"),
                "--answer-bytes",
                str(answer),
                *extra,
            ]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            processes.append(process)
            assert process.stdout is not None
            urls[answer] = process.stdout.readline().strip()
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


def machine() -> str:
    """One line describing this machine."""
    processor = platform.processor() or platform.machine()
    return f"{processor}, {os.cpu_count()} cores, Python {platform.python_version()}"
