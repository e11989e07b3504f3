"""Cancelling a call at any point: CancelledError, and nothing left behind."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from conftest import make_image, open_connections

from rembg_async import AsyncRembg, ProgressEvent, RetryPolicy
from rembg_async.server import FAULT_HEADER, LocalServer

LARGE = make_image((2000, 1500), "BMP")  # 9 MB: an upload that takes many chunks


async def cancel_when(task: asyncio.Task[object], ready: asyncio.Event) -> None:
    """Cancel ``task`` once ``ready`` is set; it must end in CancelledError."""
    await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class RetryWaits(logging.Handler):
    """Sets ``started`` when the client says it is waiting before a retry (INFO, "retrying in")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying in" in record.getMessage():
            self.started.set()


async def assert_nothing_left(server: LocalServer, folder: Path, tasks_before: set[object]) -> None:
    """No file in ``folder``, no connection to the server, no new task."""
    await asyncio.sleep(0.05)  # let the loop finish closing what the cancellation closed
    assert list(folder.iterdir()) == []
    assert open_connections(server) == 0
    assert asyncio.all_tasks() - {asyncio.current_task()} <= tasks_before


async def test_cancel_during_upload(faulty_server: LocalServer, private_tmp: Path) -> None:
    """Cancelled while the image is going out: the connection is closed, no task remains."""
    before = asyncio.all_tasks() - {asyncio.current_task()}
    uploading = asyncio.Event()

    def on_upload(event: ProgressEvent) -> None:
        if 0 < event.loaded < (event.total or 0):
            uploading.set()

    async with AsyncRembg(
        faulty_server.api_key, base_url=faulty_server.url, progress_interval=0
    ) as client:
        task = asyncio.create_task(client.remove(LARGE, on_upload_progress=on_upload))
        await cancel_when(task, uploading)
        await asyncio.sleep(0.05)
        assert (
            open_connections(faulty_server) == 0
        )  # closed, not kept in the pool, while the client lives
    await assert_nothing_left(faulty_server, private_tmp, before)


async def test_cancel_between_retries(
    faulty_server: LocalServer, private_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled while waiting to retry: no second attempt starts, nothing is left."""
    before = asyncio.all_tasks() - {asyncio.current_task()}
    attempts: list[int] = []
    waits = RetryWaits()
    caplog.set_level(logging.INFO, logger="rembg_async")
    logging.getLogger("rembg_async").addHandler(waits)
    policy = RetryPolicy(max_retries=3, initial_backoff=30, max_backoff=30)
    try:
        async with (
            aiohttp.ClientSession(headers={FAULT_HEADER: "status=503"}) as session,
            AsyncRembg(
                faulty_server.api_key, base_url=faulty_server.url, session=session, retry=policy
            ) as client,
        ):
            task = asyncio.create_task(
                client.remove(make_image(), on_upload_progress=lambda e: attempts.append(e.attempt))
            )
            await cancel_when(task, waits.started)  # the 503 came, the 15-30 s wait began
    finally:
        logging.getLogger("rembg_async").removeHandler(waits)
    assert set(attempts) == {1}
    await assert_nothing_left(faulty_server, private_tmp, before)


async def test_cancel_during_download(faulty_server: LocalServer, private_tmp: Path) -> None:
    """Cancelled while the answer trickles in: the partial file is deleted."""
    before = asyncio.all_tasks() - {asyncio.current_task()}
    downloading = asyncio.Event()
    async with (
        aiohttp.ClientSession(headers={FAULT_HEADER: "trickle=0.05,chunk=500"}) as session,
        AsyncRembg(faulty_server.api_key, base_url=faulty_server.url, session=session) as client,
    ):
        task = asyncio.create_task(
            client.remove(
                make_image((200, 150), "BMP"), on_download_progress=lambda e: downloading.set()
            )
        )
        await cancel_when(task, downloading)
        await asyncio.sleep(0.05)
        assert open_connections(faulty_server) == 0
    await assert_nothing_left(faulty_server, private_tmp, before)
