"""The one place failures become our exceptions, rule by rule (pure functions, no server)."""

from __future__ import annotations

import asyncio
import email.utils
import errno
import os
import socket
import ssl

import aiohttp
import pytest
import yarl
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from multidict import CIMultiDict, CIMultiDictProxy

from rembg_async import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidInputError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from rembg_async._contract import MSG_RATE_DAILY, MSG_RATE_MONTHLY, MSG_RATE_SHORT_TERM
from rembg_async._exceptions import (
    MAX_KEPT_BODY,
    error_from_message,
    error_from_response,
    error_from_transport,
    rate_limit_scope,
    request_id,
    retry_after_seconds,
)

URL = "http://127.0.0.1:1/rmbg"
URL_ = yarl.URL(URL)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (429, RateLimitError),
        (404, APIStatusError),
        (499, APIStatusError),
        (500, ServerError),
        (504, ServerError),
    ],
)
def test_each_status_has_its_class(status: int, kind: type[APIStatusError]) -> None:
    """A status maps to its class; other 4xx are plain APIStatusError, 5xx ServerError."""
    error = error_from_response(status, b'{"error": "x"}', {})
    assert type(error) is kind
    assert error.status == status


def test_a_json_error_keeps_message_details_and_body() -> None:
    """The server's error, its field details (odd items skipped), the parsed body, the headers."""
    body = (
        b'{"error": "Multiple validation errors", "details": '
        b'[{"field": "format", "message": "bad"}, {"message": "no field"}, "junk"]}'
    )
    error = error_from_response(400, body, {"X-Request-Id": "r1"})
    assert error.message == "Multiple validation errors"
    assert error.details == (("format", "bad"), ("", "no field"))
    assert isinstance(error.body, dict)
    assert error.request_id == "r1"
    assert error_from_response(400, b'{"error": "x", "details": "nope"}', {}).details == ()


def test_any_other_body_is_kept_short_and_stripped() -> None:
    """A non-JSON body: its first MAX_KEPT_BODY bytes, stripped; an empty one: "HTTP <status>"."""
    assert MAX_KEPT_BODY == 2048
    page = b"  <html>" + b"x" * 5000
    error = error_from_response(502, page, {})
    assert error.message == ("<html>" + "x" * 5000)[: MAX_KEPT_BODY - 2]
    assert error.body is None
    assert error_from_response(503, b"", {}).message == "HTTP 503"
    assert error_from_response(503, b'{"status": 503}', {}).message == '{"status": 503}'


def test_a_message_from_another_process_makes_the_same_error() -> None:
    """error_from_message rebuilds the error the original answer made."""
    error = error_from_message(429, MSG_RATE_DAILY, {"Retry-After": "9"})
    assert isinstance(error, RateLimitError)
    assert (error.message, error.scope, error.retry_after) == (MSG_RATE_DAILY, "daily", 9)


def test_str_and_repr() -> None:
    """str() is status and message, with the attempts when more than one; repr names the class."""
    error = error_from_response(503, b'{"error": "down"}', {})
    assert str(error) == "503 down"
    error.attempts = 2
    assert str(error) == "503 down (after 2 attempts)"
    assert repr(error) == "ServerError(status=503, message='down')"
    invalid = InvalidInputError("too big")
    assert str(invalid) == "too big"
    invalid.attempts = 3
    assert str(invalid) == "too big (after 3 attempts)"


@pytest.mark.parametrize(
    ("message", "scope"),
    [
        (MSG_RATE_SHORT_TERM, "short_term"),
        (MSG_RATE_DAILY, "daily"),
        (MSG_RATE_MONTHLY, "monthly"),
        ("Your DAILY quota is gone", "daily"),
        ("monthly cap", "monthly"),
        ("Slow down, too quickly!", "short_term"),
        ("busy", None),
    ],
)
def test_the_scope_of_a_429_is_read_from_its_words(message: str, scope: str | None) -> None:
    """The API's exact wordings, then its key words in any case; else unknown."""
    assert rate_limit_scope(message) == scope


def test_rate_limit_headers_any_case_finite_only() -> None:
    """X-RateLimit-* read in any case; a non-finite or unreadable value is None."""
    error = error_from_response(
        429,
        b'{"error": "x"}',
        {"x-ratelimit-limit": "10", "X-RATELIMIT-REMAINING": "inf", "X-RateLimit-Reset": "z"},
    )
    assert isinstance(error, RateLimitError)
    assert (error.limit, error.remaining, error.reset) == (10, None, None)
    counted = error_from_response(429, b'{"error": "x"}', {"X-RateLimit-Reset": "30"})
    assert isinstance(counted, RateLimitError)
    assert (counted.limit, counted.reset) == (None, 30)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"retry-after-ms": "0", "Retry-After": "9"}, 0),
        ({"retry-after-ms": "-1", "Retry-After": "9"}, 9),
        ({"retry-after-ms": "nan", "Retry-After": "9"}, 9),
        ({"Retry-After": "0"}, 0),
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_values(headers: dict[str, str], seconds: float | None) -> None:
    """retry-after-ms first when usable, then Retry-After; bad numbers say nothing."""
    assert retry_after_seconds(headers, now=0) == seconds


def test_retry_after_as_a_date() -> None:
    """An HTTP date: the seconds until it; one in the past: now."""
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds({"Retry-After": later}, now=now) == pytest.approx(30)
    earlier = email.utils.formatdate(now - 30, usegmt=True)
    assert retry_after_seconds({"Retry-After": earlier}, now=now) == 0.0


def test_request_id_either_name_any_case() -> None:
    """x-request-id or request-id, in any case; none: None."""
    assert request_id({"Request-Id": "a"}) == "a"
    assert request_id({"X-REQUEST-ID": "b"}) == "b"
    assert request_id({"X-Other": "c"}) is None


def test_transport_failures_become_connection_errors() -> None:
    """Each aiohttp failure its class and words: timeouts named, a cut body, anything else."""
    mapped = [
        error_from_transport(failure, url=URL)
        for failure in (
            aiohttp.ConnectionTimeoutError(),
            aiohttp.SocketTimeoutError(),
            asyncio.TimeoutError(),
            aiohttp.ClientPayloadError("short"),
            ConnectionResetError("reset"),
        )
    ]
    kinds = [getattr(error, "timeout", None) for error in mapped]
    assert kinds == ["connect", "read", "attempt", None, None]
    assert all(isinstance(error, APITimeoutError) for error in mapped[:3])
    assert "cut short" in str(mapped[3])
    assert str(mapped[4]) == f"connection to {URL} failed: reset"
    assert all(error.retryable for error in mapped)
    info = aiohttp.RequestInfo(URL_, "POST", CIMultiDictProxy(CIMultiDict()), URL_)
    plain = aiohttp.ClientResponseError(info, (), status=400)
    assert type(error_from_transport(plain, url=URL)) is APIConnectionError  # no parser cause


def unparsable(cause: Exception) -> APIConnectionError:
    """What an answer aiohttp's parser refused with ``cause`` becomes."""
    failure = aiohttp.ClientResponseError(None, (), status=400)  # type: ignore[arg-type]
    failure.__cause__ = cause
    return error_from_transport(failure, url=URL)


def test_an_unparsable_answer_is_not_a_400() -> None:
    """A parser failure is an APIResponseError, retried unless over the parser's limits."""
    bad = unparsable(BadHttpMessage("bad status line"))
    assert type(bad) is APIResponseError
    assert bad.retryable
    assert str(bad).endswith("not HTTP this client can read: bad status line")
    assert not unparsable(LineTooLong("header", "8190")).retryable
    assert not unparsable(BadHttpMessage("Too many headers")).retryable
    blank = unparsable(BadHttpMessage(""))
    assert str(blank).endswith("can read: BadHttpMessage")
    wrapped = BadHttpMessage("outer")
    wrapped.__cause__ = LineTooLong("header", "8190")
    assert not unparsable(wrapped).retryable


def connector_error(os_error: OSError, *, tls: bool = False) -> aiohttp.ClientConnectorError:
    """aiohttp's failure to connect to example.test:443 because of ``os_error``."""
    unset = [None] * (len(ConnectionKey._fields) - 4)  # proxy and the like: none
    key = ConnectionKey._make(["example.test", 443, True, True, *unset])
    kind = aiohttp.ClientConnectorSSLError if tls else aiohttp.ClientConnectorError
    return kind(key, os_error)


def connection_failure(os_error: OSError, *, tls: bool = False) -> str:
    """Why the connection failed, in the words of the error it becomes."""
    error = error_from_transport(connector_error(os_error, tls=tls), url=URL)
    assert type(error) is APIConnectionError
    return str(error).removeprefix(f"connection to {URL} failed: ")


def test_a_failed_connection_says_the_systems_reason() -> None:
    """An errno is said in the system's words ("Connection refused"), not asyncio's; a name
    that does not resolve (a negative code) or an error with no errno keeps its own words (or
    its class's name); a TLS failure keeps aiohttp's text."""
    refused = OSError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)")
    assert connection_failure(refused) == os.strerror(errno.ECONNREFUSED)
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert connection_failure(unknown) == "Name or service not known"
    assert connection_failure(OSError(-3, "Try again")) == "Try again"
    assert connection_failure(OSError("no errno here")) == "no errno here"
    assert connection_failure(OSError()) == "OSError"
    certificate = ssl.SSLError(1, "CERTIFICATE_VERIFY_FAILED")
    assert connection_failure(certificate, tls=True).startswith("Cannot connect to host")
