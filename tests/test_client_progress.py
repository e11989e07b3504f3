"""Progress events: Axios's shape, monotonic, summing up, final at 100%, true totals."""

from __future__ import annotations

import aiohttp
import pytest
from conftest import CaptureServer, make_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rembg_async import AsyncRembg, ProgressEvent, RemoveOptions
from rembg_async._progress import ProgressTracker
from rembg_async.server import FAULT_HEADER, LocalServer, ServerConfig


def check_invariants(events: list[ProgressEvent], *, total: int | None, upload: bool) -> None:
    """The properties every transfer's events have."""
    assert events, "at least the final event"
    loaded = [event.loaded for event in events]
    assert loaded == sorted(loaded)
    assert sum(event.bytes for event in events) == events[-1].loaded
    assert all(event.upload is upload and event.download is not upload for event in events)
    assert all(event.total == total for event in events)
    if total is not None:
        assert all(event.loaded <= total for event in events)
        assert events[-1].loaded == total
        assert events[-1].progress == 1.0
    else:
        assert all(event.progress is None for event in events)


async def test_upload_total_is_the_body_on_the_wire(capture_server: CaptureServer) -> None:
    """The upload's total is exactly the Content-Length the server received."""
    events: list[ProgressEvent] = []
    async with AsyncRembg("k", base_url=capture_server.url, progress_interval=0) as client:
        await (
            await client.remove(make_image((400, 300)), on_upload_progress=events.append)
        ).cleanup()
    content_length = int(capture_server.received[0].headers["Content-Length"])
    check_invariants(events, total=content_length, upload=True)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    width=st.integers(8, 900),
    interval=st.sampled_from([0.0, 0.05, 10.0]),
    format=st.sampled_from(["png", "bmp", "webp"]),
)
def test_invariants_for_any_size(
    rembg_server: LocalServer, width: int, interval: float, format: str
) -> None:
    """Whatever the sizes and throttle, upload and download events keep their invariants."""
    import asyncio

    async def run() -> None:
        ups: list[ProgressEvent] = []
        downs: list[ProgressEvent] = []
        async with AsyncRembg(
            rembg_server.api_key, base_url=rembg_server.url, progress_interval=interval
        ) as client:
            result = await client.remove(
                make_image((width, width * 3 // 4 or 1)),
                RemoveOptions(format=format),
                on_upload_progress=ups.append,
                on_download_progress=downs.append,
            )
            await result.cleanup()
        check_invariants(ups, total=ups[-1].total, upload=True)
        check_invariants(downs, total=result.size, upload=False)
        if interval >= 10:  # throttled down to the first and the final event
            assert len(ups) <= 2
            assert len(downs) <= 2

    asyncio.run(run())


async def test_async_callbacks_are_awaited(api: AsyncRembg) -> None:
    """A coroutine callback is awaited for each event."""
    seen: list[ProgressEvent] = []

    async def record(event: ProgressEvent) -> None:
        seen.append(event)

    result = await api.remove(make_image(), on_upload_progress=record, on_download_progress=record)
    await result.cleanup()
    assert seen[-1].download
    assert seen[-1].progress == 1.0
    assert any(event.upload for event in seen)


async def test_unknown_length_has_no_total(rembg_server_factory) -> None:
    """A chunked answer with no length gives events with total and progress None."""
    server = rembg_server_factory(ServerConfig(faults=True))
    events: list[ProgressEvent] = []
    async with (
        aiohttp.ClientSession(headers={FAULT_HEADER: "chunked"}) as session,
        AsyncRembg(server.api_key, base_url=server.url, session=session) as client,
    ):
        result = await client.remove(make_image((200, 100)), on_download_progress=events.append)
        await result.cleanup()
    check_invariants(events, total=None, upload=False)
    assert events[-1].loaded == result.size


def test_axios_shape() -> None:
    """to_dict() is the Axios progress event, with upload or download set."""
    event = ProgressEvent(
        loaded=5, total=10, progress=0.5, bytes=5, rate=None, estimated=None, upload=True
    )
    assert event.to_dict() == {
        "loaded": 5,
        "total": 10,
        "progress": 0.5,
        "bytes": 5,
        "rate": None,
        "estimated": None,
        "upload": True,
    }


@pytest.mark.parametrize("chunks", [[10] * 10, [1, 99], [100]])
async def test_rate_and_estimate_from_a_clock(chunks: list[int]) -> None:
    """Rate is bytes per second over the window; estimated is what is left at that rate."""
    now = [0.0]
    events: list[ProgressEvent] = []
    tracker = ProgressTracker(
        events.append, total=100, upload=False, interval=0, clock=lambda: now[0]
    )
    for size in chunks:
        now[0] += 1.0
        await tracker.advance(size)
    final = events[-1]
    assert final.rate == pytest.approx(100 / len(chunks))
    assert final.estimated == 0
    first = events[0]
    assert first.rate == pytest.approx(chunks[0] / 1.0)
    assert first.estimated == pytest.approx((100 - chunks[0]) / first.rate)
