"""The progress tracker's rules on their own, under a fake clock: throttling, the final event,
the rate window, and the edge cases (an empty body, a body longer than announced)."""

from __future__ import annotations

import pytest

from rembg_async import ProgressEvent
from rembg_async._progress import DEFAULT_INTERVAL, RATE_WINDOW_SECONDS, ProgressTracker


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tracker(
    total: int | None, *, interval: float = 0, upload: bool = False, attempt: int = 1
) -> tuple[ProgressTracker, list[ProgressEvent], Clock]:
    """A tracker on a fake clock, and the list its events go to."""
    clock, events = Clock(), []
    made = ProgressTracker(
        events.append,
        total=total,
        upload=upload,
        interval=interval,
        attempt=attempt,
        clock=clock,
    )
    return made, events, clock


def test_the_documented_constants() -> None:
    """Events at most every 0.1 s by default; the rate is the average of the last 3 s."""
    assert (DEFAULT_INTERVAL, RATE_WINDOW_SECONDS) == (0.1, 3.0)


async def test_the_default_interval_throttles_events() -> None:
    """With the default interval, chunks every 0.05 s give an event every 0.1 s (and the first)."""
    clock, events = Clock(), []
    made = ProgressTracker(events.append, total=None, upload=True, clock=clock)
    for tick in range(5):
        clock.now = tick * 0.05
        await made.advance(1)
    assert [event.loaded for event in events] == [1, 3, 5]
    assert [event.bytes for event in events] == [1, 2, 2]
    assert {event.attempt for event in events} == {1}  # the first attempt unless told


async def test_the_rate_is_over_the_last_three_seconds() -> None:
    """A transfer longer than the rate window: the rate is the last 3 s's, not the average."""
    made, events, clock = tracker(None)
    for second in range(1, 11):
        clock.now = float(second)
        await made.advance(2 ** (second - 1))  # loaded at t: 2**t - 1
    assert events[-1].rate == pytest.approx((1023 - 127) / 3)


async def test_a_final_event_after_a_pause_keeps_two_samples() -> None:
    """Finished long after its last chunk, the rate spans the two latest samples at least."""
    made, events, clock = tracker(None, interval=100)
    clock.now = 1.0
    await made.advance(10)
    clock.now = 2.0
    await made.advance(10)
    clock.now = 10.0
    await made.finish()
    assert [event.loaded for event in events] == [10, 20]
    assert events[-1].rate == pytest.approx(10 / 9)


async def test_no_rate_before_time_has_passed() -> None:
    """A first chunk at the very time the transfer started has no rate and no estimate."""
    made, events, _ = tracker(100)
    await made.advance(10)
    assert (events[0].rate, events[0].estimated, events[0].progress) == (None, None, 0.1)


async def test_reaching_the_total_is_final_at_once() -> None:
    """The chunk that reaches the total emits the final event, whatever the interval."""
    made, events, clock = tracker(10, interval=100)
    await made.advance(5)
    clock.now = 0.01
    await made.advance(5)
    assert [(event.loaded, event.progress) for event in events] == [(5, 0.5), (10, 1.0)]
    await made.finish()  # the client's own call at the end: nothing more to say
    assert len(events) == 2


async def test_an_empty_body_is_complete() -> None:
    """Zero bytes of zero: one final event at 100 %, however often finish() is called."""
    made, events, _ = tracker(0)
    await made.finish()
    await made.finish()
    assert len(events) == 1
    assert (events[0].loaded, events[0].total, events[0].progress) == (0, 0, 1.0)


async def test_finish_sends_what_moved_since_the_last_event_once() -> None:
    """An unknown size: finish() reports the bytes not yet reported, once; nothing new, nothing."""
    made, events, clock = tracker(None, interval=100)
    await made.advance(10)
    clock.now = 1.0
    await made.advance(10)
    await made.finish()
    await made.finish()
    assert [(event.loaded, event.bytes) for event in events] == [(10, 10), (20, 10)]
    quiet, quiet_events, _ = tracker(None, interval=100)
    await quiet.advance(10)
    await quiet.finish()
    assert len(quiet_events) == 1


async def test_a_body_longer_than_announced() -> None:
    """More bytes than the announced total: the total grows to what came, progress is 100 %."""
    made, events, clock = tracker(5)
    clock.now = 2.0
    await made.advance(10)
    final = events[-1]
    assert (final.loaded, final.total, final.progress, final.estimated) == (10, 10, 1.0, 0)
    assert final.rate == pytest.approx(5.0)


async def test_events_say_their_direction_and_attempt() -> None:
    """Upload or download, and the attempt the transfer belongs to."""
    made, events, _ = tracker(1, upload=True, attempt=3)
    await made.advance(1)
    assert (events[0].upload, events[0].download, events[0].attempt) == (True, False, 3)
    assert events[0].to_dict()["upload"] is True
    down, down_events, _ = tracker(1)
    await down.advance(1)
    assert (down_events[0].upload, down_events[0].download) == (False, True)
    assert down_events[0].to_dict()["download"] is True
    assert "upload" not in down_events[0].to_dict()


async def test_without_a_callback_bytes_are_still_counted() -> None:
    """No callback: nothing is called, but ``loaded`` counts."""
    made = ProgressTracker(None, total=10, upload=False)
    await made.advance(4)
    await made.finish()
    assert made.loaded == 4


def test_an_event_is_keyword_only_with_defaults() -> None:
    """ProgressEvent takes keywords only; neither direction is set and attempt is 1 by default."""
    event = ProgressEvent(loaded=1, total=None, progress=None, bytes=1, rate=None, estimated=None)
    assert (event.upload, event.download, event.attempt) == (False, False, 1)
    with pytest.raises(TypeError):
        ProgressEvent(1, None, None, 1, None, None)  # type: ignore[misc]
