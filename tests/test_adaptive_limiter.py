"""The in-process limiter's rules under a fake clock: arguments, hold-offs, what each answer
teaches it, and its snapshot."""

from __future__ import annotations

import asyncio

import pytest
from _simulation import FakeClock

from rembg_async import AdaptiveLimiter
from rembg_async._limits import Answer, Permit


def limiter(**options: object) -> tuple[AdaptiveLimiter, FakeClock]:
    """A limiter on a fake clock."""
    clock = FakeClock()
    made = AdaptiveLimiter(clock=clock, sleep=clock.sleep, **options)  # type: ignore[arg-type]
    return made, clock


@pytest.mark.parametrize(
    "options", [{"requests_per_second": 0}, {"requests_per_second": -1}, {"max_concurrency": 0}]
)
def test_bad_arguments_are_refused(options: dict[str, float]) -> None:
    """A rate that is not positive, or fewer than one request in flight, is a ValueError."""
    with pytest.raises(ValueError, match="must be"):
        AdaptiveLimiter(**options)  # type: ignore[arg-type]


def test_the_smallest_good_arguments() -> None:
    """One request in flight and any positive rate are fine."""
    made = AdaptiveLimiter(max_concurrency=1, requests_per_second=0.001)
    assert made.state.rate == 0.001


async def test_a_hold_off_up_to_max_hold_is_kept_a_longer_one_ignored() -> None:
    """hold_off(seconds) holds every start, if 0 < seconds <= max_hold; the longest one wins."""
    made, clock = limiter(max_hold=10.0)
    await made.hold_off(0)
    await made.hold_off(10.5)
    assert made.state.held_for == 0.0
    await made.hold_off(10.0)
    await made.hold_off(4.0)
    assert made.state.held_for == 10.0
    clock.now = 3.0
    assert made.state.held_for == 7.0
    clock.now = 12.0
    assert made.state.held_for == 0.0


async def test_a_hold_off_delays_the_next_start() -> None:
    """A start asked for during a hold-off waits for its end."""
    made, clock = limiter()
    await made.hold_off(2.0)
    task = asyncio.create_task(made.acquire())
    await clock.run(until=1.0)
    assert not task.done()
    await clock.run(until=5.0)
    permit = await task
    assert permit.started_at == 2.0


async def test_what_each_answer_teaches() -> None:
    """2xx is a success, other statuses say nothing; headers give a rate and a spent quota."""
    made, clock = limiter()
    for status in (200, 299, 199, 300, 503):
        await made.release(await made.acquire(), Answer(status=status))
    state = made.state
    assert (state.answered, state.throttled, state.rate, state.source) == (5, 0, None, "none")
    stated = Answer(status=200, headers={"RateLimit-Policy": '"b";q=4;w=1'})
    await made.release(await made.acquire(), stated)
    assert (made.state.rate, made.state.source, made.state.ceiling) == (4.0, "server", 4.0)
    spent = Answer(status=200, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "3"})
    await made.release(Permit(started_at=clock.now), spent)
    assert made.state.held_for == 3.0


async def test_successes_widen_the_slow_start_window_others_do_not() -> None:
    """Only a 2xx lets one more request in flight before the first 429."""
    made, _ = limiter()
    first = await made.acquire()
    await made.release(first, Answer(status=503))
    held = await made.acquire()
    waiting = asyncio.ensure_future(made.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()  # still one at a time
    await made.release(held, Answer(status=200))
    second, third = await waiting, await made.acquire()  # two now
    assert made.state.in_flight == 2
    for permit in (second, third):
        await made.release(permit, None)


async def test_each_success_widens_the_window_by_half_a_request() -> None:
    """Slow start grows by half a request a success: after two, two in flight, not three."""
    made, _ = limiter()
    for _ in range(2):
        await made.release(await made.acquire(), Answer(status=200))
    first, second = await made.acquire(), await made.acquire()
    waiting = asyncio.ensure_future(made.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()  # a window of 2.0 (one a success would make it 3.0)
    waiting.cancel()
    for permit in (first, second):
        await made.release(permit, None)


async def test_on_a_fixed_rate_every_429_holds_everyone() -> None:
    """Not learning: each short-term 429's Retry-After holds every caller."""
    made, clock = limiter(requests_per_second=5)
    throttled = Answer(status=429, headers={"Retry-After": "2"}, throttled=True)
    await made.release(await made.acquire(), throttled)
    assert made.state.held_for == 2.0
    clock.now = 30.0
    await made.release(Permit(started_at=29.0, epoch=0), throttled)
    assert made.state.held_for == 2.0
    assert made.state.rate == 5


def throttled(retry_after: str | None = None) -> Answer:
    """A short-term 429, with ``Retry-After`` when given."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return Answer(status=429, headers=headers, throttled=True)


async def test_a_second_event_within_the_last_wait_holds_everyone() -> None:
    """The first 429 holds everyone, so does a new event within the last wait; a bare 429 not."""
    made, clock = limiter()
    clock.now = 30.0
    await made.release(Permit(started_at=29.5), throttled("3"))
    assert made.state.held_for == 3.0
    assert made.state.ceiling == 1.0  # nothing accepted yet: one a second
    clock.now = 32.5  # within 3 s of the cut, sent a window after it: a new event
    await made.release(Permit(started_at=31.5, epoch=1), throttled("3"))
    assert made.state.held_for == 3.0
    clock.now = 40.0
    await made.release(Permit(started_at=39.0, epoch=2), throttled())
    assert made.state.held_for == 0.0
    assert made.state.throttled == 3


async def test_the_last_wait_is_a_second_at_least() -> None:
    """After a wait under a second (or none said), an event 1.5 s after the cut holds no one."""
    for first in (throttled("0.5"), throttled()):
        made, clock = limiter()
        await made.release(Permit(started_at=0.0), first)
        clock.now = 1.5
        await made.release(Permit(started_at=1.2, epoch=1), throttled("3"))
        assert made.state.throttled == 2
        assert made.state.held_for == 0.0


async def test_the_default_longest_hold_is_a_minute() -> None:
    """By default a server may hold every caller for 60 s, not more."""
    made, _ = limiter()
    await made.hold_off(61)
    assert made.state.held_for == 0.0
    await made.hold_off(60)
    assert made.state.held_for == 60.0


@pytest.mark.parametrize("status", [199, 300, 404, 503])
async def test_only_a_2xx_widens_the_window(status: int) -> None:
    """Before the first 429, an answer that is not a 2xx lets no more requests in flight."""
    made, _ = limiter()
    await made.release(await made.acquire(), Answer(status=status))
    held = await made.acquire()
    waiting = asyncio.ensure_future(made.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
    await made.release(held, None)


async def test_a_caller_cancelled_while_queued_leaves_no_trace() -> None:
    """Cancelled queued, woken-then-cancelled, or waiting for its turn: its slot comes back."""
    made, clock = limiter(max_concurrency=1)
    held = await made.acquire()
    queued = asyncio.ensure_future(made.acquire())
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    woken = asyncio.ensure_future(made.acquire())
    await asyncio.sleep(0)
    await made.release(held, None)  # wakes it, with the slot counted for it...
    woken.cancel()  # ...cancelled before it ran: the slot is passed on
    with pytest.raises(asyncio.CancelledError):
        await woken
    assert made.state.in_flight == 0
    await made.hold_off(5.0)
    turn = asyncio.ensure_future(made.acquire())
    await clock.run(until=1.0)
    turn.cancel()  # cancelled while waiting for its turn (the hold-off)
    with pytest.raises(asyncio.CancelledError):
        await turn
    assert made.state.in_flight == 0
    await clock.run(until=6.0)
    permit = await made.acquire()
    assert made.state.in_flight == 1
    await made.release(permit, None)


async def test_a_late_start_keeps_the_schedule_an_idle_one_restarts_it() -> None:
    """At 10/s a late start keeps the schedule; after idling, turns count from the new start."""
    made, clock = limiter(requests_per_second=10)

    async def start(at: float, turn: float | None = None) -> float:
        """Ask at ``at``; let the clock run to ``turn`` (if it must wait); when it started."""
        assert at >= clock.now  # the clock only goes forward
        clock.now = at
        task = asyncio.ensure_future(made.acquire())
        await clock.run(until=(turn or at) + 1e-9)
        permit = await task
        await made.release(permit, None)
        return round(permit.started_at, 6)

    assert await start(0.0) == 0.0
    assert await start(0.15) == 0.15  # its turn was 0.1: late by 0.05
    assert await start(0.15 + 1e-9, turn=0.2) == 0.2  # the next turn is still 0.2
    assert await start(5.0) == 5.0  # idle: at once
    assert await start(5.0 + 1e-9, turn=5.1) == 5.1  # and the next a tenth of a second later


def test_repr_says_rate_source_and_429s() -> None:
    """The repr: the rate (or unpaced), where it comes from, the 429s."""
    assert repr(AdaptiveLimiter()) == "<AdaptiveLimiter unpaced (none) 429s=0>"
    assert repr(AdaptiveLimiter(requests_per_second=2.5)) == (
        "<AdaptiveLimiter 2.5/s (fixed) 429s=0>"
    )
