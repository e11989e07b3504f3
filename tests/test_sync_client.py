"""The sync client `Rembg`: scripts, threads, a running loop; and AsyncRembg on a second loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from rembg_async import AsyncRembg, ImageFile, ProgressEvent, Rembg, rembg_sync
from tests.conftest import LocalServer, make_image

PNG = make_image((64, 48), "PNG")


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
