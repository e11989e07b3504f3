"""RetryPolicy's rules on their own: what is retried, how long to wait, when to give up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_image
from hypothesis import given
from hypothesis import strategies as st

from rembg_async import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    AsyncRembg,
    InvalidInputError,
    RateLimitError,
    RetryPolicy,
)
from rembg_async._contract import MSG_RATE_SHORT_TERM
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
    assert RetryPolicy().is_retryable(error) is False


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
    assert policy.is_retryable(daily) is False
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


def short_term(headers: dict[str, str] | None = None) -> RateLimitError:
    """A short-term 429, with ``headers`` (none: no Retry-After)."""
    error = status(429, headers, MSG_RATE_SHORT_TERM)
    assert isinstance(error, RateLimitError)
    return error


def test_the_documented_defaults() -> None:
    """The defaults the reference states: 2 retries, 0.5 s to 8 s backoff, 60 s cap, 600 s."""
    policy = RetryPolicy()
    assert (policy.max_retries, policy.initial_backoff, policy.max_backoff) == (2, 0.5, 8.0)
    assert (policy.max_retry_after, policy.rate_limited_for, policy.wait) == (60.0, 600.0, True)
    assert policy.delay(APIConnectionError("x"), 2) is not None
    assert policy.delay(APIConnectionError("x"), 3) is None
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]  # keyword-only


def test_the_jitter_spans_the_upper_half() -> None:
    """Backoff waits spread over the whole upper half of their ceiling, never below it."""
    # Not under hypothesis, which seeds ``random`` alike for every example.
    policy = RetryPolicy(max_retries=10, initial_backoff=4, max_backoff=4)
    for draw in (
        lambda: policy.delay(APIConnectionError("x"), 1),
        lambda: policy.flow_control_delay(short_term(), 0.0, 1),
    ):
        delays = [draw() for _ in range(200)]
        assert all(delay is not None and 2 <= delay <= 4 for delay in delays)
        assert min(d for d in delays if d is not None) < 2.2
        assert max(d for d in delays if d is not None) > 3.8


def test_a_wait_of_exactly_the_cap_is_honoured() -> None:
    """Retry-After equal to max_retry_after is waited, on a failure and on a short-term 429."""
    policy = RetryPolicy(max_retry_after=7)
    assert policy.delay(status(503, {"Retry-After": "7"}), 1) == 7
    assert policy.delay(status(503, {"Retry-After": "8"}), 1) is None
    assert policy.flow_control_delay(short_term({"Retry-After": "7"}), 0, 1) == 7
    assert policy.flow_control_delay(short_term({"Retry-After": "8"}), 0, 1) is None


@given(count=st.integers(1, 12), initial=st.floats(0.01, 2), maximum=st.floats(0.01, 30))
def test_a_429_without_retry_after_backs_off(count: int, initial: float, maximum: float) -> None:
    """A short-term 429 with no Retry-After: exponential backoff, capped, in the upper half."""
    policy = RetryPolicy(initial_backoff=initial, max_backoff=maximum)
    ceiling = min(maximum, initial * 2 ** (count - 1))
    delay = policy.flow_control_delay(short_term(), 0.0, count)
    assert delay is not None
    assert ceiling / 2 <= delay <= ceiling


def test_a_short_term_429_waits_what_the_server_asks() -> None:
    """A short-term 429's Retry-After is its wait, however many came before."""
    assert RetryPolicy().flow_control_delay(short_term({"Retry-After": "3"}), 5.0, 9) == 3


def test_the_429_allowance_ends_at_rate_limited_for() -> None:
    """Short-term 429s are waited out until rate_limited_for seconds have been spent on them."""
    policy = RetryPolicy(rate_limited_for=20)
    assert policy.flow_control_delay(short_term(), 19.9, 1) is not None
    assert policy.flow_control_delay(short_term(), 20.0, 1) is None
    assert RetryPolicy(rate_limited_for=0).is_flow_control(short_term()) is False
    assert RetryPolicy(rate_limited_for=0.5).is_flow_control(short_term()) is True


async def test_429_waits_add_up_towards_the_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry-After waits count against rate_limited_for (even unslept), apart from max_retries."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", record)
    attempts: list[int] = []

    async def throttled(attempt: int) -> None:
        attempts.append(attempt)
        raise short_term({"Retry-After": "7"})

    policy = RetryPolicy(max_retries=0, rate_limited_for=21.5)
    with pytest.raises(RateLimitError) as caught:
        await policy.run(throttled)
    # waits planned: 7, 14, 21, 28 s: the fifth 429 comes after 28 s > 21.5 s, and is final
    assert attempts == [1, 2, 3, 4, 5]
    assert caught.value.attempts == 5
    assert slept == [7, 7, 7, 7]


async def test_429s_and_failures_have_separate_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """429s do not use up max_retries, nor failures the 429s' backoff steps."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", record)
    answers: list[RembgError | None] = [
        short_term(),
        short_term(),
        status(503),
        short_term(),
        status(503),
        None,
    ]

    async def attempt_once(attempt: int) -> int:
        answer = answers[attempt - 1]
        if answer is not None:
            raise answer
        return attempt

    policy = RetryPolicy(max_retries=2, initial_backoff=1, max_backoff=100)
    assert await policy.run(attempt_once) == 6
    # 429 backoff ceilings 1, 2, 4 (its own count); failures' 1, 2
    ceilings = [1, 2, 1, 4, 2]
    assert all(c / 2 <= s <= c for c, s in zip(ceilings, slept, strict=True))


@pytest.fixture
async def bare_429_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers its first two requests with a short-term 429 and no Retry-After."""
    seen: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append(1)
        if len(seen) <= 2:
            body = {"error": MSG_RATE_SHORT_TERM, "status": 429}
            return web.json_response(body, status=429)
        return web.Response(body=make_image(), content_type="image/png")

    app = web.Application()
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


async def test_a_429_without_retry_after_is_waited_out(
    bare_429_server: tuple[str, list[int]],
) -> None:
    """A server that gives no Retry-After: the client backs off and retries, it does not give up."""
    url, seen = bare_429_server
    policy = RetryPolicy(max_retries=0, initial_backoff=0.01, max_backoff=0.02)
    async with AsyncRembg("k", base_url=url, retry=policy) as client:
        result = await client.remove(make_image(), return_bytes=True)
    assert result.data
    assert len(seen) == 3


async def test_giving_up_after_a_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Giving up after two attempts says so at WARNING; a first failure that is final does not."""

    async def fails(attempt: int) -> None:
        raise APIConnectionError("reset")

    caplog.set_level(logging.INFO, logger="rembg_async")
    with pytest.raises(APIConnectionError):
        await RetryPolicy(max_retries=1, wait=False).run(fails)
    with pytest.raises(APIConnectionError):
        await RetryPolicy(max_retries=0, wait=False).run(fails)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["giving up after 2 attempts: reset (after 2 attempts)"]
