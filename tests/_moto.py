"""A real S3 for the tests: moto's server in a process of its own, on a loopback port.

Its own process, so that what it holds (every object, in memory) and what it allocates while
serving never counts in the memory the tests measure of the client.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import attrs

_SERVE = """
import logging, sys
logging.disable(logging.CRITICAL)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop()
"""

#: Credentials moto accepts (any); never real ones.
KEY = "testing"
SECRET = "testing"


@attrs.define
class Moto:
    """One moto server; ``url`` reaches it."""

    process: subprocess.Popen[str]
    url: str

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec's keywords for s3fs to reach this server."""
        return {
            "key": KEY,
            "secret": SECRET,
            "anon": False,
            "client_kwargs": {"endpoint_url": self.url},
        }

    def client(self) -> Any:
        """A boto3 client of this server, for a test's own setting up and looking."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )

    def new_bucket(self) -> str:
        """A new, empty bucket's name."""
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def close(self) -> None:
        """Stop the server."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_moto() -> Moto:
    """Start a moto server and wait until it says where it listens."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"moto did not start: {url!r}")
    return Moto(process=process, url=url)
