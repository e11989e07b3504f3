"""Reading rate-limit headers, rule by rule: the shortest policy, spent quotas, odd values."""

from __future__ import annotations

import time

import pytest

from rembg_async._limits import read_hint
from rembg_async._limits._headers import UNIX_TIME_FLOOR, ServerHint

NOW = 1_700_000_000.0


def test_no_rate_limit_header_says_nothing() -> None:
    """Headers without any rate-limit field: an empty hint."""
    hint = read_hint({"Content-Type": "image/png"}, now=NOW)
    assert hint == ServerHint()
    assert hint.empty
    assert not ServerHint(rate=1.0).empty
    assert not ServerHint(exhausted_for=1.0).empty
    with pytest.raises(TypeError):
        ServerHint(1.0)  # type: ignore[misc]  # keyword-only


def test_names_are_read_whatever_their_case() -> None:
    """Header names are case-insensitive, and X-RateLimit-Policy counts as a policy."""
    assert read_hint({"ratelimit-policy": '"b";q=6;w=2'}).rate == 3
    assert read_hint({"X-RATELIMIT-POLICY": '"b";q=6;w=3'}).rate == 2


def test_the_shortest_window_is_the_short_term_policy() -> None:
    """Of several policies, the one with the shortest window sets the rate, in any order."""
    policy = '"day";q=1000;w=86400, "burst";q=10;w=2, "minute";q=60;w=60'
    assert read_hint({"RateLimit-Policy": policy}).rate == 5


@pytest.mark.parametrize(
    "policy", ['"burst";q=10', '"burst";q=10;w=0', '"burst";q=-1;w=1', '"b";q=x;w=1', ""]
)
def test_a_policy_without_a_usable_window_or_quota_sets_no_rate(policy: str) -> None:
    """No window, a zero window, a negative or unreadable quota: no rate."""
    assert read_hint({"RateLimit-Policy": policy}).rate is None


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_odd_reset_values_are_ignored(value: str) -> None:
    """A negative, NaN or unreadable reset says nothing."""
    headers = {"RateLimit-Remaining": "0", "RateLimit-Reset": value}
    assert read_hint(headers, now=NOW).exhausted_for is None


def test_the_longest_spent_quota_is_waited() -> None:
    """Several spent quotas: the wait is until the last comes back; an unspent one is ignored."""
    headers = {"RateLimit": '"burst";r=0;t=3, "day";r=0;t=50, "month";r=5;t=900'}
    assert read_hint(headers, now=NOW).exhausted_for == 50


def test_a_spent_quota_without_a_reset_says_nothing() -> None:
    """Remaining 0 but no reset: no wait is known."""
    assert read_hint({"X-RateLimit-Remaining": "0"}, now=NOW).exhausted_for is None


def test_a_reset_that_is_a_unix_time() -> None:
    """Above 1e9 a reset is a Unix time: seconds from now, never negative; at 1e9, seconds."""
    assert UNIX_TIME_FLOOR == 1e9

    def wait(reset: float, now: float | None = NOW) -> float | None:
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        return read_hint(headers, now=now).exhausted_for

    assert wait(NOW + 9) == 9
    assert wait(NOW + 9 + 100, now=NOW + 100) == 9
    assert wait(NOW - 30) == 0.0  # already past
    assert wait(1e9) == 1e9
    assert wait(time.time() + 30, now=None) == pytest.approx(30, abs=5)
