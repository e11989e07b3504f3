"""The sync client `Rembg`: scripts, threads, a running loop; and AsyncRembg on a second loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rembg_async import AsyncRembg, ImageFile, ProgressEvent, Rembg, rembg_sync
from tests.conftest import LocalServer, RawServer, make_image, read_request

PNG = make_image((64, 48), "PNG")
ROOT = Path(__file__).resolve().parent.parent


def test_sync_remove_in_a_script(unlimited_server: LocalServer) -> None:
    """remove() without await gives an ImageFile, sync callbacks get events, close() deletes it."""
    events: list[ProgressEvent] = []
    with Rembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        result = client.remove(PNG, on_download_progress=events.append)
    assert isinstance(result, ImageFile)
    assert result.output_image_path.read_bytes().startswith(b"RIFF")
    assert events
    assert events[-1].loaded == result.size
    with result:
        pass
    assert not result.output_image_path.exists()


def test_sync_client_shared_by_threads(unlimited_server: LocalServer) -> None:
    """One Rembg used by eight threads at once: every call succeeds."""
    with Rembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:

        def one(_: int) -> int:
            result = client.remove(PNG, return_base64=True)
            return result.size

        with ThreadPoolExecutor(8) as pool:
            sizes = list(pool.map(one, range(16)))
    assert len(sizes) == 16
    assert all(size > 0 for size in sizes)


async def test_sync_client_inside_a_running_loop(unlimited_server: LocalServer) -> None:
    """In a thread whose loop is running (a notebook), Rembg and rembg_sync still work."""
    asyncio.get_running_loop()
    with Rembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        result = client.remove(PNG)
        with result:
            assert result.output_image_path.exists()
    one = rembg_sync(
        api_key=unlimited_server.api_key,
        input_image=PNG,
        options={"returnBase64": True},
        base_url=unlimited_server.url,
    )
    assert one.content_type == "image/webp"


def test_sync_remove_many_and_usage(unlimited_server: LocalServer) -> None:
    """remove_many is a plain iterator of items; membership_usage and billing_cycles answer."""
    with Rembg(unlimited_server.api_key, base_url=unlimited_server.url) as client:
        items = list(client.remove_many([PNG] * 5, {"returnBase64": True}, concurrency=2))
        usage = client.membership_usage()
        cycles = client.billing_cycles()
    assert len(items) == 5
    assert all(item.error is None for item in items)
    assert usage is not None
    assert isinstance(cycles, list)


def test_closed_sync_client_refuses_calls(unlimited_server: LocalServer) -> None:
    """A closed Rembg says so instead of hanging; closing twice is fine."""
    client = Rembg(unlimited_server.api_key, base_url=unlimited_server.url)
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.remove(PNG)


def test_async_client_on_a_second_loop_says_what_to_do(unlimited_server: LocalServer) -> None:
    """An AsyncRembg used on a second loop (another asyncio.run()) raises a clear error."""
    client = AsyncRembg(unlimited_server.api_key, base_url=unlimited_server.url)

    async def once() -> None:
        result = await client.remove(PNG, return_base64=True)
        assert result.size > 0

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(once())
        with pytest.raises(RuntimeError, match=r"another event loop.*rembg_async\.Rembg"):
            asyncio.run(once())
        first.run_until_complete(client.aclose())  # on its own loop, closing works
    finally:
        first.close()


def _in_a_thread(call: Callable[[], Any]) -> asyncio.Future[tuple[Any, BaseException | None]]:
    """Run ``call`` in a daemon thread (one that hangs cannot hold the tests up); the future
    gets (result, None) or (None, error)."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[tuple[Any, BaseException | None]] = loop.create_future()

    def run() -> None:
        try:
            done: tuple[Any, BaseException | None] = (call(), None)
        except BaseException as error:
            done = (None, error)
        loop.call_soon_threadsafe(outcome.set_result, done)

    threading.Thread(target=run, daemon=True).start()
    return outcome


CALLS: dict[str, Callable[[Rembg], Any]] = {
    "remove": lambda client: client.remove(PNG),
    "remove_many": lambda client: list(client.remove_many([PNG, PNG], concurrency=2)),
}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_closing_from_another_thread_cuts_a_waiting_call(
    raw_server: Callable[..., Awaitable[RawServer]],
    private_tmp: Path,
    caplog: pytest.LogCaptureFixture,
    call: str,
) -> None:
    """close() in one thread while another waits on remove() or a remove_many item: close()
    returns, the waiting call raises RuntimeError (closed), the client's thread ends, no task
    is left pending and no file behind."""
    arrived = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        arrived.set()
        await asyncio.Event().wait()

    server = await raw_server(never_answer)
    threads_before = set(threading.enumerate())
    client = Rembg("key", base_url=server.url)
    waiting = _in_a_thread(lambda: CALLS[call](client))
    await asyncio.wait_for(arrived.wait(), 10)
    assert await asyncio.wait_for(_in_a_thread(client.close), 10) == (None, None)
    _, error = await asyncio.wait_for(waiting, 10)
    assert isinstance(error, RuntimeError)
    assert "closed" in str(error)
    ours = [
        t
        for t in set(threading.enumerate()) - threads_before
        if t.name == "rembg-async sync client"
    ]
    assert ours == []
    gc.collect()
    assert [r.message for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert list(private_tmp.iterdir()) == []


def _script(
    server: LocalServer, tmp_path: Path, mode: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """Run tests/_sync_script.py MODE in a fresh interpreter whose TMPDIR is its own."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    paths = [os.environ.get("PYTHONPATH", ""), str(ROOT), str(ROOT / "tests")]
    environment = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, *options, str(ROOT / "tests" / "_sync_script.py")]
    return subprocess.run(
        [*command, mode, server.url, server.api_key],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sync_results_clean_up_without_await(unlimited_server: LocalServer, tmp_path: Path) -> None:
    """A plain result.cleanup() of Rembg, rembg_sync and batch results deletes each temp file."""
    done = _script(unlimited_server, tmp_path, "cleanup", "-W", "error::RuntimeWarning")
    assert (done.returncode, done.stdout.strip()) == (0, "done"), done.stderr
    assert "never awaited" not in done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


def test_leaving_the_client_closes_an_open_batch(
    unlimited_server: LocalServer, tmp_path: Path
) -> None:
    """Leaving `with Rembg()` inside a remove_many loop stops the run: no task left pending,
    and the files of items never received are deleted."""
    done = _script(unlimited_server, tmp_path, "open-batch", "-W", "error")
    assert (done.returncode, done.stdout.strip()) == (0, "done"), done.stderr
    assert done.stderr == ""
    assert list((tmp_path / "tmp").iterdir()) == []


def test_unclosed_sync_client_warns_with_sync_advice(
    unlimited_server: LocalServer, tmp_path: Path
) -> None:
    """A Rembg never closed warns once with the sync advice, then closes on its own thread:
    no async advice, no unclosed session, no 'Non-thread-safe operation' error."""
    done = _script(unlimited_server, tmp_path, "unclosed", "-X", "dev", "-W", "always")
    assert (done.returncode, done.stdout.strip()) == (0, "done"), done.stderr
    lines = done.stderr.splitlines()
    warnings = [line for line in lines if "Warning:" in line and "tracemalloc" not in line]
    assert len(warnings) == 1, done.stderr
    assert "ResourceWarning: Rembg was never closed: use 'with Rembg() as client:'" in warnings[0]
    for wrong in ("async with", "Non-thread-safe", "Unclosed", "Exception ignored"):
        assert wrong not in done.stderr


def test_unclosed_sync_client_closes_when_its_warning_is_an_error(
    unlimited_server: LocalServer, tmp_path: Path
) -> None:
    """Under ``-W error::ResourceWarning`` the warning of a Rembg never closed raises, yet the
    client is closed first: its thread ends, and no async advice or unclosed session follows."""
    done = _script(unlimited_server, tmp_path, "unclosed", "-W", "error::ResourceWarning")
    assert (done.returncode, done.stdout.strip()) == (0, "done"), done.stderr
    assert "ResourceWarning: Rembg was never closed: use 'with Rembg() as client:'" in done.stderr
    for wrong in ("async with", "AsyncRembg was never closed", "Unclosed"):
        assert wrong not in done.stderr
