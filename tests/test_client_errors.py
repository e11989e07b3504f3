"""Every error class, built from the server's answer; the API key never shows."""

from __future__ import annotations

import logging
import socket

import aiohttp
import pytest
from conftest import make_image

from rembg_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncRembg,
    AuthenticationError,
    BadRequestError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RembgError,
    RetryPolicy,
    ServerError,
    Timeout,
)
from rembg_async._exceptions import error_from_response, retry_after_seconds
from rembg_async.server import FAULT_HEADER, Account, LocalServer, RateLimits, ServerConfig

SECRET = "sk-very-secret-key-0123456789"


@pytest.fixture
def server(rembg_server_factory) -> LocalServer:
    """A server with faults, a secret-keyed account and an unverified one."""
    accounts = [Account(api_key=SECRET), Account(api_key="unverified", email_verified=False)]
    return rembg_server_factory(ServerConfig(faults=True, accounts=accounts))


#: No retry at all: a short-term 429 too is raised at once (it has its own allowance otherwise).
NO_RETRY = RetryPolicy(max_retries=0, rate_limited_for=0)


async def call(server: LocalServer, *, key: str | None = SECRET, fault: str | None = None) -> None:
    """One remove() through ``server``, asking for ``fault``."""
    headers = {FAULT_HEADER: fault} if fault else {}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        AsyncRembg(key, base_url=server.url, session=session, retry=NO_RETRY) as client,
    ):
        await (await client.remove(make_image())).cleanup()


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        pytest.param("status=402", PaymentRequiredError, 402, id="402"),
        pytest.param("status=500", ServerError, 500, id="500"),
        pytest.param("status=503", ServerError, 503, id="503"),
        pytest.param("status=418", APIStatusError, 418, id="other-status"),
    ],
)
async def test_status_classes(
    server: LocalServer, fault: str, kind: type[APIStatusError], status: int
) -> None:
    """Each status maps to its class, with the server's JSON message."""
    with pytest.raises(kind) as caught:
        await call(server, fault=fault)
    assert caught.value.status == status
    assert caught.value.message.endswith("(injected fault)")
    assert caught.value.body == {"error": caught.value.message, "status": status}


async def test_html_error_page(server: LocalServer) -> None:
    """A proxy's HTML 502 is a ServerError whose message is the page's start; body is None."""
    with pytest.raises(ServerError) as caught:
        await call(server, fault="status=502")
    assert caught.value.message.startswith("<html>")
    assert caught.value.body is None


async def test_invalid_key(server: LocalServer) -> None:
    """A wrong key is an AuthenticationError carrying 'invalid api key'."""
    with pytest.raises(AuthenticationError) as caught:
        await call(server, key="wrong")
    assert (caught.value.status, caught.value.message) == (401, "invalid api key")


async def test_unverified_email(server: LocalServer) -> None:
    """An unverified account is a PermissionDeniedError."""
    with pytest.raises(PermissionDeniedError, match="Email address not verified"):
        await call(server, key="unverified")


async def test_bad_request_from_the_server(server: LocalServer) -> None:
    """A 400 only the server can find (a corrupt image body) is a BadRequestError."""
    corrupt = make_image()[:60]  # a PNG header with its data cut off
    async with AsyncRembg(SECRET, base_url=server.url) as client:
        with pytest.raises(BadRequestError, match="invalid file signature") as caught:
            await client.remove(corrupt)
    assert caught.value.details == ()


@pytest.mark.parametrize(
    ("scope", "expected"),
    [("short_term", "short_term"), ("daily", "daily"), ("monthly", "monthly")],
)
async def test_rate_limit_scope_and_retry_after(
    server: LocalServer, scope: str, expected: str
) -> None:
    """A 429 says which limit, and how long to wait."""
    with pytest.raises(RateLimitError) as caught:
        await call(server, fault=f"status=429,retry_after=42,scope={scope}")
    assert (caught.value.scope, caught.value.retry_after) == (expected, 42.0)


async def test_real_short_term_limit(rembg_server_factory) -> None:
    """The server's own short-term limit reaches the client as a RateLimitError."""
    limits = RateLimits(short_term_requests=1, short_term_window=3600)
    server = rembg_server_factory(ServerConfig(rate_limits=limits))
    await call(server, key=server.api_key)
    with pytest.raises(RateLimitError) as caught:
        await call(server, key=server.api_key)
    assert caught.value.scope == "short_term"
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 3000


def test_rate_limit_headers_when_present() -> None:
    """X-RateLimit-* headers, when a server sends them, are read; absent ones are None."""
    headers = {"X-RateLimit-Limit": "60", "x-ratelimit-remaining": "0", "Retry-After": "3"}
    error = error_from_response(429, b'{"error": "slow down", "status": 429}', headers)
    assert isinstance(error, RateLimitError)
    assert (error.limit, error.remaining, error.reset, error.retry_after) == (60, 0, None, 3)
    assert error.scope is None  # a message the API never used: scope unknown


def test_multiple_errors_become_details() -> None:
    """The multiple-errors body keeps every (field, message)."""
    body = (
        b'{"error": "Multiple validation errors", "status": 400, "details": ['
        b'{"field": "w", "message": "bad w"}, {"field": "angle", "message": "bad angle"}]}'
    )
    error = error_from_response(400, body, {})
    assert isinstance(error, BadRequestError)
    assert error.details == (("w", "bad w"), ("angle", "bad angle"))


def test_unexpected_json_fields_are_tolerated() -> None:
    """Extra fields, odd details and a missing status do not break the mapping."""
    error = error_from_response(
        400, b'{"error": "x", "code": 7, "details": [1, {"field": "w"}]}', {}
    )
    assert (error.message, error.details) == ("x", (("w", ""),))


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, 60.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
    ids=["seconds", "milliseconds-first", "http-date", "garbage", "absent"],
)
def test_retry_after_forms(headers: dict[str, str], seconds: float | None) -> None:
    """Retry-After in seconds or as an HTTP date, and retry-after-ms, are understood."""
    now = 1792567620.0  # 2026-10-21 07:27:00 UTC
    assert retry_after_seconds(headers, now=now) == seconds


async def test_connection_refused() -> None:
    """Nobody listening is an APIConnectionError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncRembg("k", base_url=f"http://127.0.0.1:{port}", max_retries=0) as client:
        with pytest.raises(APIConnectionError, match="connection to"):
            await client.remove(make_image())


@pytest.mark.parametrize(
    ("timeout", "kind"),
    [(Timeout(read=0.2), "read"), (Timeout(attempt=0.3), "attempt")],
    ids=["read", "attempt"],
)
async def test_timeout_is_a_timeout_error(server: LocalServer, timeout: Timeout, kind: str) -> None:
    """A server slower than a timeout raises APITimeoutError (a TimeoutError too), naming it."""
    async with (
        aiohttp.ClientSession(headers={FAULT_HEADER: "latency=5"}) as session,
        AsyncRembg(SECRET, base_url=server.url, session=session, max_retries=0) as client,
    ):
        with pytest.raises(APITimeoutError) as caught:
            await client.remove(make_image(), timeout=timeout)
    assert caught.value.timeout == kind
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, RembgError)


async def test_session_timeout_is_respected(server: LocalServer) -> None:
    """With no timeout= given, a user's own session keeps its own timeouts."""
    session_timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with (
        aiohttp.ClientSession(
            headers={FAULT_HEADER: "latency=5"}, timeout=session_timeout
        ) as session,
        AsyncRembg(SECRET, base_url=server.url, session=session, max_retries=0) as client,
    ):
        with pytest.raises(APITimeoutError):
            await client.remove(make_image())


async def test_the_key_never_shows(server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    """Not in messages, reprs, error bodies' text or log lines."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for fault in ("status=401", "status=502", "truncate"):
        try:
            await call(server, fault=fault)
        except RembgError as error:
            seen += [str(error), repr(error), str(getattr(error, "headers", ""))]
    client = AsyncRembg(SECRET, base_url=server.url)
    seen.append(repr(client))
    seen += [record.getMessage() for record in caplog.records]
    assert seen
    assert not [text for text in seen if SECRET in text]


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (aiohttp.ConnectionTimeoutError(), "connect"),
        (aiohttp.SocketTimeoutError(), "read"),
        (TimeoutError(), "attempt"),
    ],
    ids=["connect", "read", "attempt"],
)
def test_each_timeout_is_named(failure: BaseException, kind: str) -> None:
    """aiohttp's timeouts map to APITimeoutError naming the limit (a real connect timeout
    needs an address that does not answer, which these tests may not send traffic to)."""
    from rembg_async._exceptions import error_from_transport

    error = error_from_transport(failure, url="http://127.0.0.1:1")
    assert isinstance(error, APITimeoutError)
    assert error.timeout == kind
