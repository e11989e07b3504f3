"""The exchange's rules: which API keys are refused up front, the headers a call cannot
replace, the ``timeout=`` given to aiohttp, the DEBUG line each request logs, and how much of
an error answer is read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_image
from yarl import URL

from rembg_async import (
    AdaptiveLimiter,
    APIStatusError,
    AsyncRembg,
    BadRequestError,
    ProgressEvent,
    RetryPolicy,
    Timeout,
    __version__,
)
from rembg_async._exchange import RequestLine, _key_headers, _timeout_argument, check_api_key
from rembg_async._limits import Answer, Permit
from rembg_async.server import FAULT_HEADER, LocalServer, ServerConfig

URL_ = URL("https://user:pw@api.example/rmbg?x=1")


class Failure(Exception):
    """An error of the test's own, raised inside a request's line."""


@pytest.mark.parametrize(
    ("key", "position"),
    [
        ("abc", None),
        ("with space", None),
        ("é~", None),
        ("tab\tin", 3),
        ("del\x7f", 3),
        ("nl\n", 2),
        ("\x00", 0),
        ("\x1f", 0),
    ],
)
def test_keys_with_a_control_character_are_refused(key: str, position: int | None) -> None:
    """Below 0x20 and DEL are refused, with their place; a space and anything else pass."""
    if position is None:
        check_api_key(key, from_env=False)
        return
    where = rf"\(.* at position {position} of {len(key)}\)"
    with pytest.raises(ValueError, match=rf"^the API key contains a control character {where}"):
        check_api_key(key, from_env=False)
    with pytest.raises(ValueError, match=r"^the API key from \$REMBG_API_KEY contains"):
        check_api_key(key, from_env=True)


def test_no_key_is_no_error() -> None:
    """An anonymous client (no key) is not refused."""
    check_api_key(None, from_env=True)


def test_the_headers_a_call_cannot_replace() -> None:
    """The User-Agent always, and the key when there is one."""
    assert _key_headers(None) == {"User-Agent": f"rembg-async/{__version__}"}
    assert _key_headers("k")["x-api-key"] == "k"


def test_a_timeout_is_given_to_aiohttp_only_when_set() -> None:
    """None leaves a user's session its own; a `Timeout` becomes aiohttp's."""
    assert _timeout_argument(None) == {}
    assert _timeout_argument(Timeout(read=5)) == {"timeout": Timeout(read=5).to_aiohttp()}


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The DEBUG lines logged, their time replaced by ``T``."""
    return [
        re.sub(r" in \d+\.\d{3} s ", " in T s ", record.getMessage())
        for record in caplog.records
        if record.levelno == logging.DEBUG
    ]


def answer(status: int, **headers: str) -> Any:
    """What `RequestLine.answered` reads of a response: its status and headers."""
    return SimpleNamespace(status=status, headers=headers)


def test_the_request_line_of_each_ending(caplog: pytest.LogCaptureFixture) -> None:
    """One line per request: its answer's status, how it failed, or cancelled; the body's
    size (or that it is unknown); no user nor query in the URL."""
    caplog.set_level(logging.DEBUG, logger="rembg_async")
    with RequestLine("POST", URL_, 2, 123) as line:
        line.answered(answer(200, **{"x-request-id": "r1"}))
    with contextlib.suppress(Failure), RequestLine("POST", URL_, 1, None) as line:
        line.answered(answer(500))
        raise Failure  # after the answer: the line was said already
    with contextlib.suppress(Failure), RequestLine("GET", URL_, 3):
        raise Failure
    with contextlib.suppress(asyncio.CancelledError), RequestLine("GET", URL_, 1):
        raise asyncio.CancelledError
    with RequestLine("GET", URL_, 1):
        pass  # ended with no answer and no error: nothing to say
    assert lines(caplog) == [
        "POST https://api.example/rmbg 200 in T s (attempt 2, a body of 123 bytes, request id r1)",
        "POST https://api.example/rmbg 500 in T s "
        "(attempt 1, a body of unknown length, request id none)",
        "GET https://api.example/rmbg failed (Failure) in T s (attempt 3)",
        "GET https://api.example/rmbg cancelled in T s (attempt 1)",
    ]


def test_the_request_line_is_timed_from_the_with(caplog: pytest.LogCaptureFixture) -> None:
    """The time is the seconds since the ``with``: small, not the clock's reading."""
    caplog.set_level(logging.DEBUG, logger="rembg_async")
    with RequestLine("GET", URL_, 1) as line:
        line.answered(answer(200))
    (text,) = [record.getMessage() for record in caplog.records]
    seconds = float(re.findall(r" in (\d+\.\d{3}) s ", text)[0])
    assert 0 <= seconds < 60


def test_nothing_is_logged_unless_debug_is_on(caplog: pytest.LogCaptureFixture) -> None:
    """At INFO the line is not even formatted."""
    caplog.set_level(logging.INFO, logger="rembg_async")
    with RequestLine("GET", URL_, 1) as line:
        line.answered(answer(200))
    assert caplog.records == []


@pytest.mark.parametrize(("size", "parsed"), [(64 * 1024, True), (64 * 1024 + 1, False)])
async def test_an_error_answer_is_read_up_to_64_kib(size: int, parsed: bool) -> None:
    """A JSON error of 64 KiB is read whole (its message kept); one byte more is cut there,
    and no longer parses: the error then carries the text's start."""
    message = "too big"
    padding = size - len(f'{{"error": "{message}", "pad": ""}}')
    body = f'{{"error": "{message}", "pad": "{"x" * padding}"}}'.encode()
    assert len(body) == size

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, status=400, content_type="application/json")

    app = web.Application()
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        async with AsyncRembg("k", base_url=url, max_retries=0) as client:
            with pytest.raises(BadRequestError) as caught:
                await client.remove(b"\x89PNG\r\n\x1a\n" + bytes(64))
    finally:
        await server.close()
    if parsed:
        assert caught.value.message == message
    else:
        assert caught.value.message.startswith('{"error": "too big", "pad": "xxx')


@pytest.fixture
def faulty(rembg_server_factory: Any) -> LocalServer:
    """A local server that answers the faults a request's header asks for."""
    server: LocalServer = rembg_server_factory(ServerConfig(faults=True))
    return server


async def test_progress_events_say_which_way(faulty: LocalServer) -> None:
    """Upload events are marked upload, download events download."""
    up: list[ProgressEvent] = []
    down: list[ProgressEvent] = []
    async with AsyncRembg(faulty.api_key, base_url=faulty.url, progress_interval=0) as client:
        await client.remove(
            make_image(),
            return_base64=True,
            on_upload_progress=up.append,
            on_download_progress=down.append,
        )
    assert {(event.upload, event.download) for event in up} == {(True, False)}
    assert {(event.upload, event.download) for event in down} == {(False, True)}


async def test_only_a_short_term_429_slows_the_limiter(faulty: LocalServer) -> None:
    """A 503 retried is no sign of a rate: the limiter counts no 429; a 429 it counts."""
    retry = RetryPolicy(max_retries=2, wait=False)
    async with AsyncRembg(faulty.api_key, base_url=faulty.url, retry=retry) as client:
        await client.remove(
            make_image(),
            return_base64=True,
            extra_headers={FAULT_HEADER: "status=503,retry_after=0,times=1"},
        )
        assert client.rate_limit.throttled == 0
        await client.remove(
            make_image(),
            return_base64=True,
            extra_headers={FAULT_HEADER: "status=429,retry_after=0,times=1"},
        )
        assert client.rate_limit.throttled == 1


async def test_the_clients_own_limiter_is_closed_with_it(faulty: LocalServer) -> None:
    """Closing a used client closes the limiter it made, never one it was given."""
    given = AdaptiveLimiter()
    async with AsyncRembg(faulty.api_key, base_url=faulty.url) as client:
        await client.remove(make_image(), return_base64=True)
        made = client.limiter
    async with AsyncRembg(faulty.api_key, base_url=faulty.url, limiter=given) as client:
        await client.remove(make_image(), return_base64=True)
    with pytest.raises(RuntimeError, match="this limiter is closed"):
        await made.acquire()
    await given.release(await given.acquire(), None)  # still open
    await given.aclose()


async def test_a_redirect_of_the_usage_call_is_not_followed() -> None:
    """A GET answered with a redirect is an error, not followed with the key."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/steal")

    app = web.Application()
    app.router.add_get("/api/membership-usage", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        async with AsyncRembg("k", base_url=url, max_retries=0) as client:
            with pytest.raises(APIStatusError) as caught:
                await client.membership_usage()
    finally:
        await server.close()
    assert caught.value.status == 302


class SlowToRelease(AdaptiveLimiter):
    """A limiter whose release waits (as one shared over the network may) until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.releasing = asyncio.Event()

    async def release(self, permit: Permit, answer: Answer | None) -> None:
        """Wait for ever, then free the slot anyway."""
        self.releasing.set()
        try:
            await asyncio.Event().wait()
        finally:
            await super().release(permit, answer)


async def test_a_result_cancelled_while_its_permit_is_released_leaves_no_file(
    faulty: LocalServer, private_tmp: Path
) -> None:
    """Cancelled after the answer was written whole but before the call returned it: the
    temporary file nobody will receive is deleted."""
    limiter = SlowToRelease()
    async with AsyncRembg(faulty.api_key, base_url=faulty.url, limiter=limiter) as client:
        task = asyncio.create_task(client.remove(make_image()))
        await limiter.releasing.wait()
        assert list(private_tmp.iterdir())  # the answer is in its temporary file
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await limiter.aclose()
    assert list(private_tmp.iterdir()) == []


class Recording(AdaptiveLimiter):
    """A limiter that notes every answer it is told of."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Answer | None] = []

    async def release(self, permit: Permit, answer: Answer | None) -> None:
        """Note the answer, then free the slot."""
        self.answers.append(answer)
        await super().release(permit, answer)


async def test_a_limiter_is_told_each_answer(faulty: LocalServer) -> None:
    """A limiter of one's own learns each answer's status (a fleet's counts a credit only on
    a 200), whether it was a short-term 429, and its headers."""
    limiter = Recording()
    retry = RetryPolicy(max_retries=2, wait=False)
    async with AsyncRembg(
        faulty.api_key, base_url=faulty.url, limiter=limiter, retry=retry
    ) as client:
        await client.remove(
            make_image(),
            return_base64=True,
            extra_headers={FAULT_HEADER: "status=429,retry_after=0,times=1"},
        )
    await limiter.aclose()
    told = [(a.status, a.throttled) if a is not None else None for a in limiter.answers]
    assert told == [(429, True), (200, False)]
    assert limiter.answers[1] is not None
    assert limiter.answers[1].headers["Content-Type"].startswith("image/")
