"""The exchange's pure rules: which API keys are refused up front, the headers a call cannot
replace, the ``timeout=`` given to aiohttp, and the DEBUG line each request logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from types import SimpleNamespace
from typing import Any

import pytest
from yarl import URL

from rembg_async import Timeout, __version__
from rembg_async._exchange import RequestLine, _key_headers, _timeout_argument, check_api_key

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
