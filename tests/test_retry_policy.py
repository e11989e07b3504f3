"""RetryPolicy's rules on their own: what is retried, how long to wait, when to give up."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rembg_async import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    InvalidInputError,
    RateLimitError,
    RetryPolicy,
)
from rembg_async._exceptions import RembgError, error_from_response


def status(code: int, headers: dict[str, str] | None = None, message: str = "x") -> RembgError:
    """The error a server answer with ``code`` becomes."""
    return error_from_response(
        code, f'{{"error": "{message}", "status": {code}}}'.encode(), headers or {}
    )


@pytest.mark.parametrize(
    "error",
    [
        APIConnectionError("reset"),
        APITimeoutError("slow", timeout="read"),
        APIResponseError("not an image"),
        status(408),
        status(409),
        status(429),
        status(500),
        status(502),
        status(503),
        status(599),
    ],
    ids=lambda error: type(error).__name__ + str(getattr(error, "status", "")),
)
def test_retried(error: RembgError) -> None:
    """Transport failures, unusable answers, 408, 409, 429 and 5xx are retried."""
    assert RetryPolicy().is_retryable(error)
    assert RetryPolicy().delay(error, 1) is not None


@pytest.mark.parametrize(
    "error",
    [status(400), status(401), status(402), status(403), status(404), InvalidInputError("bad")],
    ids=["400", "401", "402", "403", "404", "invalid-input"],
)
def test_never_retried(error: RembgError) -> None:
    """Refused requests would fail again: they are never retried."""
    assert RetryPolicy().delay(error, 1) is None


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """The server's wait is used as is; one beyond the cap is raised at once."""
    policy = RetryPolicy(max_retry_after=60)
    assert policy.delay(status(429, {"Retry-After": "7"}), 1) == 7
    assert policy.delay(status(503, {"retry-after-ms": "250"}), 1) == 0.25
    daily = status(
        429,
        {"Retry-After": "40000"},
        "You've reached your daily limit. Please sign up for more access.",
    )
    assert policy.delay(daily, 1) is None
    assert isinstance(daily, RateLimitError)
    assert daily.retry_after == 40000


@given(attempt=st.integers(1, 10), initial=st.floats(0.01, 2), maximum=st.floats(0.01, 30))
def test_backoff_grows_and_is_bounded(attempt: int, initial: float, maximum: float) -> None:
    """Without Retry-After: exponential, capped, jittered within the upper half."""
    policy = RetryPolicy(max_retries=10, initial_backoff=initial, max_backoff=maximum)
    ceiling = min(maximum, initial * 2 ** (attempt - 1))
    delay = policy.delay(APIConnectionError("x"), attempt)
    assert delay is not None
    assert ceiling / 2 <= delay <= ceiling


def test_gives_up_after_max_retries() -> None:
    """After max_retries retries, the next failure is final."""
    policy = RetryPolicy(max_retries=2)
    assert policy.delay(APIConnectionError("x"), 2) is not None
    assert policy.delay(APIConnectionError("x"), 3) is None


async def test_run_counts_attempts_and_can_skip_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """run() retries, the final error says how many attempts, and wait=False sleeps 0 s."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", record)
    calls: list[int] = []

    async def always_fails(attempt: int) -> None:
        calls.append(attempt)
        raise APIConnectionError("reset")

    with pytest.raises(APIConnectionError) as caught:
        await RetryPolicy(max_retries=3, wait=False).run(always_fails)
    assert calls == [1, 2, 3, 4]
    assert caught.value.attempts == 4
    assert str(caught.value) == "reset (after 4 attempts)"
    assert slept == [0, 0, 0]
