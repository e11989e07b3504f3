"""The adaptive limiter's mechanism, under a fake clock: convergence, cuts, recovery, headers."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _simulation import FakeClock, SlidingWindowServer, simulate
from hypothesis import given
from hypothesis import strategies as st

from rembg_async import AdaptiveLimiter, Limiter
from rembg_async._limits import Answer, Permit, RateController, read_hint
from rembg_async._limits._control import BETA

THROTTLED = Answer(status=429, headers={"Retry-After": "1"}, throttled=True)
OK = Answer(status=200)


def steady(controller: RateController, rate: float, seconds: float, start: float = 0.0) -> float:
    """Feed ``rate`` successes a second for ``seconds``; returns the clock after."""
    now = start
    for _ in range(int(rate * seconds)):
        now += 1 / rate
        controller.succeeded(now)
    return now


def test_a_429_cuts_the_rate_just_under_what_the_server_accepted() -> None:
    """Unpaced at first; a 429 after 10 successes a second for 20 s sets the rate to BETA × 10."""
    controller = RateController()
    now = steady(controller, 10, 20)
    assert controller.rate(now) is None
    assert controller.throttle(now, epoch=0)
    assert controller.rate(now) == pytest.approx(BETA * 10, rel=0.02)
    assert controller.source == "learned"


def test_one_cut_per_congestion_event() -> None:
    """429s to requests sent before the cut (or within a window after it) do not cut again."""
    controller = RateController()
    now = steady(controller, 10, 20)
    controller.throttle(now, epoch=0)
    after_one = controller.rate(now)
    assert not controller.throttle(now, epoch=0)  # sent before the cut
    assert not controller.throttle(now + 0.5, epoch=1, sent_at=now + 0.2)  # inside the window
    assert controller.rate(now + 0.5) >= after_one  # still recovering: not cut again
    assert controller.throttled == 3
    assert controller.throttle(now + 2, epoch=1, sent_at=now + 1.5)  # a new event


def test_recovers_to_the_ceiling_then_probes_above_it() -> None:
    """After a cut the rate climbs back to the ceiling, flat near it, then above it."""
    controller = RateController()
    now = steady(controller, 10, 20)
    controller.throttle(now, epoch=0)
    rates = [controller.rate(now + tick / 2) for tick in range(40)]
    assert all(rate is not None for rate in rates)
    assert rates == sorted(rates)  # never down without a 429
    assert rates[0] == pytest.approx(BETA * 10, rel=0.02)
    assert min(rates) < 10 < max(rates)
    assert max(rates) > 12  # a raised limit is found


def test_fixed_rate_and_adaptation_off_never_move() -> None:
    """requests_per_second is kept whatever happens; adaptation off means no pacing."""
    fixed = RateController(fixed=3.0)
    off = RateController(adaptive=False)
    for controller in (fixed, off):
        now = steady(controller, 10, 2)
        controller.throttle(now, epoch=0)
    assert fixed.rate(100.0) == 3.0
    assert off.rate(100.0) is None
    assert (fixed.source, off.source) == ("fixed", "none")


def test_the_servers_stated_policy_sets_the_rate() -> None:
    """A RateLimit-Policy is paced at, without probing above it."""
    controller = RateController()
    controller.told(5.0)
    assert controller.rate(0.0) == 5.0
    assert controller.rate(1000.0) == 5.0
    assert controller.source == "server"


@pytest.mark.parametrize("limit", [1, 2, 5, 10, 20, 100], ids=lambda limit: f"R={limit}")
@pytest.mark.parametrize("latency", [0.05, 0.2], ids=lambda latency: f"latency={latency}")
@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda seed: f"seed={seed}")
async def test_converges_under_a_sliding_window_limit(
    limit: int, latency: float, seed: int
) -> None:
    """Every simulated minute (answers 0.05 or 0.2 s away, arrivals up to 20 ms late, enough
    workers to keep R in flight) runs at ≥ 0.9 R with ≤ 5 % of answers 429, not only the median."""
    workers = max(8, round(2 * limit * latency))
    server = SlidingWindowServer(limit)
    tally = await simulate(
        server, seconds=60, concurrency=workers, latency=latency, jitter=0.02, seed=seed
    )
    assert tally.rate_between(0, 60) >= 0.9 * limit
    assert tally.refused_share <= 0.05


@pytest.mark.parametrize("latency", [0.2, 0.5], ids=lambda latency: f"latency={latency}")
async def test_the_first_estimate_counts_admissions_still_in_flight(latency: float) -> None:
    """At R = 2 with answers slower than the slow-start burst, a minute runs at ≥ 0.9 R: the
    first 429's ceiling counts every request the server let in, not only those answered."""
    tally = await simulate(SlidingWindowServer(2), seconds=60, latency=latency, jitter=0.01)
    assert tally.rate_between(0, 60) >= 0.9 * 2
    assert tally.refused_share <= 0.06


async def test_without_adaptation_the_same_batch_bounces() -> None:
    """The control: unpaced, most answers are 429s."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(adaptive=False, clock=clock, sleep=clock.sleep)
    tally = await simulate(SlidingWindowServer(5), seconds=60, limiter=limiter, clock=clock)
    assert tally.refused_share > 0.3


async def test_a_doubled_limit_is_found_within_ten_seconds() -> None:
    """R goes from 10 to 20 at 30 s: by 40 s the client runs at ≥ 0.8 × 20."""
    tally = await simulate(SlidingWindowServer(10), seconds=60, change=(30, 20))
    assert tally.rate_between(40, 60) >= 0.8 * 20


@pytest.mark.parametrize("doubled_at", [20, 22, 24, 26, 28, 30, 32, 34, 36, 38])
async def test_a_limit_doubled_from_5_is_reached_within_ten_seconds(doubled_at: float) -> None:
    """R goes from 5 to 10 at any moment of the probing cycle (even just after a cut): within
    10 s, 2 s of successes come at ≥ 0.8 × 10 a second."""
    server = SlidingWindowServer(5)
    tally = await simulate(server, seconds=doubled_at + 12, change=(doubled_at, 10), jitter=0.01)
    assert tally.reached(0.8 * 10, doubled_at, within=10)


async def test_the_first_429_holds_everyone_a_later_one_only_cuts() -> None:
    """The first 429's Retry-After holds every caller; an isolated later one does not."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(clock=clock, sleep=clock.sleep)
    permit = await limiter.acquire()
    await limiter.release(permit, THROTTLED)
    assert limiter.state.held_for == pytest.approx(1.0)
    clock.now = 30.0
    permit = await limiter.acquire()
    await limiter.release(permit, THROTTLED)
    assert limiter.state.held_for == 0.0
    assert limiter.state.throttled == 2


async def test_slow_start_then_max_concurrency() -> None:
    """Before anything is known one request goes, one more per success; max_concurrency caps."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(max_concurrency=3, clock=clock, sleep=clock.sleep)
    first = await limiter.acquire()
    waiting = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    await limiter.release(first, OK)  # window 2: the waiter goes, one more may
    second = await waiting
    third = await limiter.acquire()
    await limiter.release(second, OK)
    await limiter.release(third, OK)
    permits = [await limiter.acquire() for _ in range(3)]
    blocked = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert not blocked.done()
    assert limiter.state.in_flight == 3
    blocked.cancel()
    for permit in permits:
        await limiter.release(permit, None)
    assert limiter.state.in_flight == 0


async def test_closing_wakes_waiters_with_an_error() -> None:
    """aclose() refuses new requests and fails the ones waiting for a slot."""
    limiter = AdaptiveLimiter(max_concurrency=1)
    held = await limiter.acquire()
    waiting = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    await limiter.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    with pytest.raises(RuntimeError, match="closed"):
        await limiter.acquire()
    await limiter.release(held, None)


async def test_a_big_change_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """Learning a rate logs it once; small moves after do not."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(clock=clock, sleep=clock.sleep)
    with caplog.at_level(logging.INFO, logger="rembg_async"):
        for _ in range(20):
            clock.now += 0.1
            await limiter.release(await limiter.acquire(), OK)
        await limiter.release(await limiter.acquire(), THROTTLED)
        await limiter.release(Permit(started_at=clock.now), OK)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "requests/s (learned; 1 short-term 429s" in messages[0]


def test_the_adaptive_limiter_is_a_limiter() -> None:
    """The in-process limiter implements the Limiter protocol (as a Redis one will)."""
    assert isinstance(AdaptiveLimiter(), Limiter)


@pytest.mark.parametrize(
    ("headers", "rate", "exhausted_for"),
    [
        pytest.param({"RateLimit-Policy": '"burst";q=100;w=1, "day";q=1000;w=86400'}, 100, None,
                     id="ietf-policy"),
        pytest.param({"RateLimit": '"burst";r=0;t=3', "RateLimit-Policy": '"burst";q=5;w=1'}, 5, 3,
                     id="ietf-spent"),
        pytest.param({"RateLimit": "limit=10, remaining=0, reset=4", "RateLimit-Policy": "10;w=2"},
                     5, 4, id="draft-07"),
        pytest.param({"RateLimit-Remaining": "0", "RateLimit-Reset": "7"}, None, 7, id="trio"),
        pytest.param({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
                      "X-RateLimit-Reset": str(1_000_000_000 + 9)}, None, 9, id="x-unix-time"),
        pytest.param({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "9"}, None, None,
                     id="x-not-spent"),
        pytest.param({"Content-Type": "image/webp"}, None, None, id="none"),
    ],
)  # fmt: skip
def test_rate_limit_headers_are_read(
    headers: dict[str, str], rate: float | None, exhausted_for: float | None
) -> None:
    """Each common form of rate-limit headers gives the rate and the spent-quota wait."""
    hint = read_hint(headers, now=1_000_000_000)
    assert (hint.rate, hint.exhausted_for) == (rate, exhausted_for)


@given(st.dictionaries(st.sampled_from(["RateLimit", "RateLimit-Policy", "X-RateLimit-Reset",
                                        "X-RateLimit-Remaining", "RateLimit-Reset"]),
                       st.text(max_size=40)))  # fmt: skip
def test_any_header_value_is_read_without_error(headers: dict[str, str]) -> None:
    """Garbage in rate-limit headers is ignored, never raised, never negative."""
    hint = read_hint(headers)
    assert hint.rate is None or hint.rate >= 0
    assert hint.exhausted_for is None or hint.exhausted_for >= 0
