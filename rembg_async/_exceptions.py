"""The exception tree, and the one place where transport and HTTP failures become ours. Errors
matching a built-in inherit it too (``ValueError``, ``TimeoutError``) for generic handlers; none
holds the API key (they are made from the server's answer and the URL)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

RateLimitScope = Literal["short_term", "daily", "monthly"]
FieldDetail = tuple[str, str]

#: How much of a non-JSON error body is kept (an HTML page from a proxy can be large).
MAX_KEPT_BODY: Final = 2048


class RembgError(Exception):
    """The base of every error this library raises.

    ``attempts`` is how many attempts were made before giving up (retries included).
    """

    attempts: int = 1

    def _with_attempts(self, text: str) -> str:
        return text if self.attempts <= 1 else f"{text} (after {self.attempts} attempts)"

    def __str__(self) -> str:
        return self._with_attempts(super().__str__())


class InvalidInputError(RembgError, ValueError):
    """Refused before sending: the server would refuse it with the same message. Also raised
    while sending when the input itself fails (a file that shrank, or is gone before a retry):
    never retried, since the input is at fault.

    ``details`` lists every ``(field, message)`` problem; ``str()`` is the message the server
    would give (the single problem's, or "Multiple validation errors").
    """

    def __init__(self, message: str, details: Sequence[FieldDetail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: tuple[FieldDetail, ...] = tuple(details)


class APIStatusError(RembgError):
    """The server answered with an error status.

    ``message`` is the server's ``error`` text (or the start of a non-JSON body), ``details``
    its field problems, ``body`` the parsed JSON (or None), ``headers`` the response headers,
    ``request_id`` the server's id of the request (``x-request-id``), if it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        details: Sequence[FieldDetail] = (),
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details: tuple[FieldDetail, ...] = tuple(details)
        self.body = body
        self.headers: Mapping[str, str] = dict(headers or {})

    @property
    def request_id(self) -> str | None:
        """The server's id of this request (``x-request-id``), for its operators; or None."""
        return request_id(self.headers)

    def __str__(self) -> str:
        return self._with_attempts(f"{self.status} {self.message}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class BadRequestError(APIStatusError):
    """400: the server refused the request's content."""


class AuthenticationError(APIStatusError):
    """401: no valid API key (``invalid api key``)."""


class PaymentRequiredError(APIStatusError):
    """402: the hosted API may use it when credits run out."""


class PermissionDeniedError(APIStatusError):
    """403: the key's account may not do this (an unverified e-mail, for one)."""


class RateLimitError(APIStatusError):
    """429: too many requests.

    ``retry_after`` is the seconds to wait (from ``Retry-After`` or ``retry-after-ms``; None if
    the server did not say), ``scope`` which limit (``short_term``, ``daily``, ``monthly``), and
    ``limit``, ``remaining``, ``reset`` the ``X-RateLimit-*`` headers when the server sends them.
    """

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait, from ``retry-after-ms`` or ``Retry-After``; None if not said."""
        return retry_after_seconds(self.headers)

    @property
    def scope(self) -> RateLimitScope | None:
        """Which limit was hit, read from the message; None if the wording is unknown."""
        return rate_limit_scope(self.message)

    @property
    def limit(self) -> float | None:
        """The ``X-RateLimit-Limit`` header, when sent."""
        return self._header_number("x-ratelimit-limit")

    @property
    def remaining(self) -> float | None:
        """The ``X-RateLimit-Remaining`` header, when sent."""
        return self._header_number("x-ratelimit-remaining")

    @property
    def reset(self) -> float | None:
        """The ``X-RateLimit-Reset`` header, when sent."""
        return self._header_number("x-ratelimit-reset")

    def _header_number(self, name: str) -> float | None:
        lowered = {key.lower(): value for key, value in self.headers.items()}
        return finite_number(lowered.get(name))


class ServerError(APIStatusError):
    """5xx: the server, or a proxy before it, failed."""


class APIConnectionError(RembgError):
    """The exchange failed below HTTP: connection refused or dropped, a truncated body.

    ``retryable`` is False for a failure that another attempt would meet again identically
    (an answer whose headers are over the parser's limit).
    """

    retryable: bool = True


class APIResponseError(APIConnectionError):
    """The server said 200 but its answer is unusable: a body that is no image."""


TimeoutKind = Literal["connect", "read", "attempt"]


class APITimeoutError(APIConnectionError, TimeoutError):
    """No answer in time; ``timeout`` names the limit that fired (see `Timeout`)."""

    def __init__(self, message: str, *, timeout: TimeoutKind) -> None:
        super().__init__(message)
        self.timeout: TimeoutKind = timeout


_STATUS_CLASSES: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    429: RateLimitError,
}

# The word that names each limit in the API's messages (``MSG_RATE_*``), so that a message
# whose wording changes a little still names its limit.
_SCOPE_WORDS: Final[dict[str, RateLimitScope]] = {
    "daily": "daily",
    "monthly": "monthly",
    "too quickly": "short_term",
}


def rate_limit_scope(message: str) -> RateLimitScope | None:
    """Which limit a 429 message speaks of, by the API's wording (tolerant of small changes)."""
    lowered = message.lower()
    return next((scope for word, scope in _SCOPE_WORDS.items() if word in lowered), None)


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    A value that is negative, not a number (``nan``, ``inf``) or unparsable says nothing: it is
    ignored (None, so backoff applies) rather than taken for "retry now", which would let one
    bad header turn every retry into an instant storm. A date in the past means now.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    milliseconds = finite_number(lowered.get("retry-after-ms"), minimum=0)
    if milliseconds is not None:
        return milliseconds / 1000
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)  # a number, good or bad, is never read as a date
    except ValueError:
        return _seconds_until(value, time.time() if now is None else now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until(date: str, now: float) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, moment.timestamp() - now)


def finite_number(value: str | None, *, minimum: float = -math.inf) -> float | None:
    """A finite number not below ``minimum``, or None (``float()`` also takes ``nan`` and
    ``inf``): a header value that says nothing usable."""
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= minimum else None


def request_id(headers: Mapping[str, str]) -> str | None:
    """The request id among response headers (``x-request-id`` or ``request-id``, any case)."""
    names = ("x-request-id", "request-id")
    return next((value for name, value in headers.items() if name.lower() in names), None)


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> APIStatusError:
    """The exception for an error answer: JSON with or without details, or any other body."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        message = parsed["error"]
        details = _details(parsed.get("details"))
    else:
        text = body[:MAX_KEPT_BODY].decode("utf-8", errors="replace").strip()
        message = text or f"HTTP {status}"
        details = []
    kind = _STATUS_CLASSES.get(status, ServerError if status >= 500 else APIStatusError)
    return kind(message, status=status, details=details, body=parsed, headers=headers)


def error_from_message(status: int, message: str, headers: Mapping[str, str]) -> APIStatusError:
    """The exception for the server's ``message`` passed on by another process (a fleet member,
    a Dask worker) that received it."""
    return error_from_response(status, json.dumps({"error": message}).encode(), headers)


def _details(raw: object) -> list[FieldDetail]:
    items = raw if isinstance(raw, list) else []
    return [
        (str(item.get("field", "")), str(item.get("message", "")))
        for item in items
        if isinstance(item, dict)
    ]


def _unparsable(cause: HttpProcessingError, url: str) -> APIResponseError:
    """An answer aiohttp's parser refused. aiohttp reports it as a ``ClientResponseError``
    with ``status=400``, which reads like the API's own 400: say what it is instead."""
    reason = cause.message.strip() or type(cause).__name__
    error = APIResponseError(f"the answer from {url} is not HTTP this client can read: {reason}")
    # aiohttp's protocol re-wraps the parser's own exception: its class is one level down.
    original = cause.__cause__ if isinstance(cause.__cause__, HttpProcessingError) else cause
    if isinstance(original, LineTooLong) or "too many headers" in reason.lower():
        error.retryable = False  # over the parser's limits: the same answer comes again
    return error


def error_from_transport(error: BaseException, *, url: str) -> APIConnectionError:
    """Our exception for an aiohttp or socket failure talking to ``url``."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return APITimeoutError(f"timed out connecting to {url}", timeout="connect")
    if isinstance(error, aiohttp.SocketTimeoutError):
        return APITimeoutError(
            f"{url} went silent for longer than the read timeout ({error})", timeout="read"
        )
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):  # two classes on 3.10
        return APITimeoutError(f"the attempt on {url} passed its deadline", timeout="attempt")
    if isinstance(error, aiohttp.ClientResponseError) and isinstance(
        error.__cause__, HttpProcessingError
    ):
        return _unparsable(error.__cause__, url)
    if isinstance(error, aiohttp.ClientPayloadError):
        return APIConnectionError(f"the answer from {url} was cut short: {error}")
    if isinstance(error, aiohttp.ClientConnectorError) and not isinstance(
        error, aiohttp.ClientSSLError
    ):
        # aiohttp's own text names its TLS setting ("ssl:default") even for a plain http://
        # URL, and asyncio's says "Connect call failed": the system's reason says more.
        return APIConnectionError(f"connection to {url} failed: {_refusal(error.os_error)}")
    return APIConnectionError(f"connection to {url} failed: {error}")


def _refusal(error: OSError) -> str:
    """Why a connection could not be made, in the system's words ("Connection refused")."""
    if isinstance(error, socket.gaierror) or not error.errno or error.errno < 0:
        return error.strerror or str(error) or type(error).__name__
    return os.strerror(error.errno)
