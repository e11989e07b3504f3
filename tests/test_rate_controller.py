"""The rate controller's estimators and curve on their own, under a fake clock (no I/O)."""

from __future__ import annotations

import pytest

from rembg_async._limits import RateController
from rembg_async._limits._control import (
    BETA,
    MEMORY,
    MIN_RATE,
    PLATEAU,
    PROBE_GAIN,
    PROBE_SECONDS,
    RECOVERY_REQUESTS,
    RECOVERY_SECONDS,
    SLOW_RECOVERY,
    WINDOW,
)


def cut_at(ceiling: float, now: float = 100.0) -> RateController:
    """A controller whose first cut, at ``now``, set ``ceiling`` (with no success known)."""
    controller = RateController()
    controller.throttle(now, epoch=0)
    controller.ceiling = ceiling
    return controller


def test_the_constants_the_design_states() -> None:
    """BETA 0.88, a plateau at 0.97, a window of 1 s, 10 s of memory, a probe 3 times as steep
    over 3 s, 1 per 30 s floor; the way back max(4 s, 28 requests, 80 / ceiling² s)."""
    assert (BETA, PLATEAU, WINDOW, MEMORY, PROBE_GAIN, PROBE_SECONDS, MIN_RATE) == (
        0.88,
        0.97,
        1.0,
        10.0,
        3.0,
        3.0,
        1 / 30,
    )
    assert (RECOVERY_SECONDS, RECOVERY_REQUESTS, SLOW_RECOVERY) == (4.0, 28.0, 80.0)


def test_the_first_seconds_count_a_window_already_let_through() -> None:
    """Early on, n successes over t seconds are a rate of n / (t + 1), not n / t."""
    controller = RateController()
    assert controller.accepted_rate(0.0) is None
    for tick in range(5):
        controller.succeeded(tick * 0.1)
    assert controller.accepted_rate(0.4) == pytest.approx(5 / 1.4)
    assert controller.accepted_rate(9.9) == pytest.approx(5 / 10.9)
    assert controller.accepted_rate(10.0) == pytest.approx(4 / 10)  # MEMORY in: the plain rate


def test_later_the_rate_is_the_successes_of_the_last_memory() -> None:
    """After MEMORY seconds, the successes of the last MEMORY seconds over MEMORY."""
    controller = RateController()
    for tick in range(160):
        controller.succeeded(tick / 8)  # 8 a second for 20 s
    assert controller.accepted_rate(19.875) == pytest.approx(8.0)
    assert (controller.answered, controller.throttled) == (160, 0)
    assert controller.accepted_rate(25.0) == pytest.approx(3.9)


def test_after_a_cut_the_rate_is_measured_over_half_the_way_back() -> None:
    """With a ceiling of 10 (4 s back to it), successes count over the last 2 s, not 10 s."""
    controller = RateController()
    for tick in range(160):
        controller.succeeded(tick / 8)
    controller.ceiling = 10.0
    assert controller.accepted_rate(21.0) == pytest.approx(7 / 2)
    controller.ceiling = 5.0  # 28 requests at 5/s: 5.6 s back to it, so 2.8 s
    assert controller.accepted_rate(21.0) == pytest.approx(14 / 2.8)


def test_a_429_with_nothing_known_starts_at_one_a_second() -> None:
    """No success and no rate yet: the cut starts from 1 request a second."""
    controller = RateController()
    assert controller.throttle(0.0, epoch=0)
    assert controller.ceiling == 1.0
    assert controller.rate(0.0) == pytest.approx(BETA)
    assert (controller.epoch, controller.cut_at, controller.source) == (1, 0.0, "learned")


def test_the_source_is_learned_only_while_learning_with_a_ceiling() -> None:
    """The source is "learned" only with learning on and a ceiling known; else "none"."""
    assert RateController().source == "none"
    assert RateController(adaptive=False, ceiling=5.0).source == "none"
    assert RateController(ceiling=5.0).source == "learned"


def test_a_paced_429_takes_the_middle_of_sent_and_accepted() -> None:
    """Paced at R and refused with a lower accepted rate A: the new ceiling is (R + A) / 2."""
    controller = RateController()
    for tick in range(100):
        controller.succeeded(tick * 0.25)  # 4 a second for 25 s
    controller.throttle(25.0, epoch=0)  # unpaced: the ceiling is what was accepted
    assert controller.ceiling == pytest.approx(3.9)
    for tick in range(10):
        controller.succeeded(79.0 + tick / 10)
    later = 80.0  # far above the old ceiling by now: the probe overflowed
    sent, accepted = controller.rate(later), controller.accepted_rate(later)
    assert sent is not None
    assert accepted is not None
    assert 0 < accepted < sent
    assert controller.throttle(later, epoch=1, sent_at=later - 1)
    assert controller.ceiling == pytest.approx((sent + accepted) / 2)


def test_the_ceiling_never_falls_under_the_floor() -> None:
    """However little was accepted, the ceiling stays at MIN_RATE / BETA at least."""
    controller = cut_at(MIN_RATE)
    assert controller.throttle(200.0, epoch=1, sent_at=150.0)
    assert controller.ceiling is not None
    assert controller.ceiling >= MIN_RATE / BETA
    assert controller.rate(200.0) == pytest.approx(MIN_RATE)


@pytest.mark.parametrize(
    ("ceiling", "recovery"),
    [(100.0, 4.0), (5.0, 5.6), (1.0, 80.0), (0.5, 80.0), (0.1, 280.0)],
    ids=str,
)
def test_the_curve_after_a_cut(ceiling: float, recovery: float) -> None:
    """BETA × ceiling at the cut, PLATEAU × ceiling after max(4 s, 28 / ceiling, 80 /
    ceiling²), then a steeper probe over at most PROBE_SECONDS."""
    controller = cut_at(ceiling)
    assert controller.rate(100.0) == pytest.approx(BETA * ceiling)
    halfway = ceiling * (PLATEAU - (PLATEAU - BETA) / 8)
    assert controller.rate(100.0 + recovery / 2) == pytest.approx(halfway)
    assert controller.rate(100.0 + recovery) == pytest.approx(PLATEAU * ceiling)
    probe = min(recovery, PROBE_SECONDS)
    early = ceiling * (PLATEAU + (1 - BETA) * PROBE_GAIN * (0.5 / probe) ** 3)
    assert controller.rate(100.0 + recovery + 0.5) == pytest.approx(early)  # probing at once
    assert controller.rate(100.0 + recovery + probe) == pytest.approx(
        ceiling * (PLATEAU + (1 - BETA) * PROBE_GAIN)
    )


def test_a_429_lowers_a_stated_rate_for_a_while() -> None:
    """Paced at the server's stated rate, a 429 still cuts it; the rate returns to it, no higher."""
    controller = RateController()
    controller.told(5.0)
    assert controller.rate(0.0) == 5.0
    assert controller.throttle(10.0, epoch=0)
    lowered = controller.rate(10.0)
    assert lowered is not None
    assert lowered < 5.0
    assert controller.rate(1000.0) == 5.0
    assert controller.source == "server"


def test_a_stated_rate_is_ignored_when_not_learning() -> None:
    """A fixed rate or adaptation off: the server's stated rate changes nothing."""
    fixed, off = RateController(fixed=2.0), RateController(adaptive=False)
    for controller in (fixed, off):
        controller.told(5.0)
        assert controller.server_rate is None
    assert (fixed.rate(0.0), off.rate(0.0)) == (2.0, None)


def test_a_stated_rate_keeps_a_learned_ceiling() -> None:
    """Told a rate after a cut, the ceiling learned stays (the curve goes on from it)."""
    controller = cut_at(3.0)
    controller.told(5.0)
    assert controller.ceiling == 3.0
    assert controller.rate(100.0) == pytest.approx(BETA * 3.0)


def test_a_new_event_starts_a_window_after_the_cut() -> None:
    """A 429 to a request sent a whole WINDOW after the cut is news; one just before is not."""
    controller = cut_at(10.0)
    assert controller.throttle(105.0, epoch=1, sent_at=100.0 + WINDOW - 0.01) is False
    assert controller.throttle(105.0, epoch=1, sent_at=100.0 + WINDOW) is True
    assert controller.throttle(106.0, epoch=1, sent_at=105.5) is False  # an older epoch
    assert (controller.answered, controller.throttled) == (4, 4)


def test_answers_that_say_nothing_are_counted() -> None:
    """An error that says nothing of the rate counts as answered, not as a 429."""
    controller = RateController()
    controller.answered_otherwise()
    assert (controller.answered, controller.throttled) == (1, 0)


def test_successes_after_a_cut_raise_a_ceiling_set_too_low() -> None:
    """Answers still coming back after a cut, faster than the ceiling / BETA, raise it."""
    controller = RateController()
    controller.succeeded(100.0)
    controller.throttle(100.5, epoch=0)  # the ceiling: 1 success over 1.5 s
    assert controller.ceiling == pytest.approx(1 / 1.5)
    for tick in range(1, 11):
        controller.succeeded(100.5 + tick / 10)  # 10 more within a second
    # the last rise: 10 successes over 1.4 s + 1 (at 1.5 s, 11 / 2.5 × BETA is under it)
    assert controller.ceiling == pytest.approx(10 / 2.4)


def test_successes_long_after_a_cut_leave_the_ceiling() -> None:
    """Once back at the ceiling, successes no longer move it (only a 429 does)."""
    controller = cut_at(2.0)
    for tick in range(100):
        controller.succeeded(200.0 + tick * 0.01)
    assert controller.ceiling == 2.0
    controller = cut_at(10.0)  # back at the ceiling 4 s after the cut, to the instant
    for _ in range(20):
        controller.succeeded(104.0)
    assert controller.ceiling == 10.0


def test_requests_admitted_a_window_before_the_refused_one_set_a_floor() -> None:
    """Six requests admitted in the window before the refused one: a ceiling of six at least."""
    controller = RateController()
    controller.succeeded(-100.0)  # long ago: the accepted rate lately is about nothing
    assert controller.throttle(0.875, epoch=0, sent_at=0.75)
    assert controller.ceiling is not None
    assert controller.ceiling < 1
    for sent in (-0.25, -0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875):
        controller.succeeded(1.0, sent_at=sent)  # the window is (-0.25, 0.75]
    assert controller.ceiling == pytest.approx(6.0)


def test_admissions_memory_seconds_old_are_forgotten() -> None:
    """A request sent MEMORY seconds before an answer no longer counts as admitted."""
    controller = RateController()
    controller.succeeded(-100.0)
    controller.succeeded(10.0, sent_at=0.0)  # forgotten at once
    controller.succeeded(10.0, sent_at=0.25)
    assert controller.throttle(10.0, epoch=0, sent_at=0.5)
    assert controller.ceiling == pytest.approx(1.0)
