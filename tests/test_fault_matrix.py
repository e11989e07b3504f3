"""Every injected fault, in the upload or the download phase, recovered from or not.

For each: the outcome, the number of attempts, no file left behind, no connection left open,
no task left pending, and (when there is a result) bytes identical to a clean run.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from conftest import make_image, open_connections

from rembg_async import (
    APIConnectionError,
    APIResponseError,
    AsyncRembg,
    ProgressEvent,
    RateLimitError,
    RembgError,
    RemoveOptions,
    RetryPolicy,
    ServerError,
    Timeout,
)
from rembg_async.server import FAULT_HEADER, LocalServer

IMAGE = make_image((120, 90))
OPTIONS = RemoveOptions(format="png")
# rate_limited_for=0: short-term 429s count against max_retries here, like every other fault
# of the matrix (their own allowance is tested in test_rate_limiting.py).
POLICY = RetryPolicy(max_retries=2, wait=False, rate_limited_for=0)
_unique = itertools.count()


def fault(text: str, phase: str, error: type[RembgError]) -> object:
    """One row of the matrix: the fault, the error when retries run out; the id names the phase."""
    return pytest.param(text, error, id=f"{phase}:{text.split(',')[0]}")


FAULTS = [
    fault("drop=upload", "upload", APIConnectionError),
    fault("status=500", "answer", ServerError),
    fault("status=502", "answer", ServerError),
    fault("status=503,retry_after=0", "answer", ServerError),
    fault("status=429,retry_after=0", "answer", RateLimitError),
    fault("latency=3", "answer", APIConnectionError),  # with a 0.3 s read timeout
    fault("drop=download", "download", APIConnectionError),
    fault("truncate", "download", APIConnectionError),
    fault("garbage", "download", APIResponseError),
]


@pytest.fixture
async def clean_bytes(faulty_server: LocalServer) -> bytes:
    """The result of a run with no fault, to compare recovered results with."""
    async with AsyncRembg(faulty_server.api_key, base_url=faulty_server.url) as client:
        return (await client.remove(IMAGE, OPTIONS, return_base64=True)).base64_image.encode()


async def pending_tasks() -> set[asyncio.Task[object]]:
    """Tasks other than this one, once the loop has had a turn to finish closing."""
    await asyncio.sleep(0.05)
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[arg-type]


@pytest.fixture
async def no_leaks(faulty_server: LocalServer, private_tmp: Path) -> AsyncIterator[None]:
    """After the test: no temporary file, no open connection, no pending task."""
    before = await pending_tasks()
    yield
    assert list(private_tmp.iterdir()) == []
    assert open_connections(faulty_server) == 0
    assert await pending_tasks() <= before


@pytest.mark.parametrize("recovers", [True, False], ids=["recovers", "exhausts"])
@pytest.mark.parametrize(("fault_text", "error"), FAULTS)
@pytest.mark.usefixtures("no_leaks")
async def test_fault(
    faulty_server: LocalServer,
    tmp_path: Path,
    clean_bytes: bytes,
    fault_text: str,
    error: type[RembgError],
    recovers: bool,
) -> None:
    """The outcome and the attempts, for one fault that stops or does not."""
    times = POLICY.max_retries if recovers else 99
    header = f"{fault_text},times={times},id={next(_unique)}"
    attempts: set[int] = set()

    def record(event: ProgressEvent) -> None:
        attempts.add(event.attempt)

    output = tmp_path / "out" / "cut.png"
    async with (
        aiohttp.ClientSession(headers={FAULT_HEADER: header}) as session,
        AsyncRembg(
            faulty_server.api_key, base_url=faulty_server.url, session=session, retry=POLICY
        ) as client,
    ):
        call = client.remove(
            IMAGE, OPTIONS, output_path=output, on_upload_progress=record, timeout=Timeout(read=0.3)
        )
        if recovers:
            result = await call
            assert result.output_image_path == output
            with_base64 = await client.remove(IMAGE, OPTIONS, return_base64=True)
            assert with_base64.base64_image.encode() == clean_bytes
            assert output.stat().st_size == result.size
            assert attempts == {1, 2, 3}
        else:
            with pytest.raises(error) as caught:
                await call
            assert caught.value.attempts == 3
            assert not output.parent.exists() or list(output.parent.iterdir()) == []
