"""Answers as real networks and real servers deliver them: split, malformed, or hostile.

Each test runs the client against a misbehaving server of raw asyncio sockets on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from conftest import (
    RawHandler,
    RawServer,
    connections_to,
    make_image,
    read_request,
    read_whole_request,
)

from rembg_async import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    AsyncRembg,
    BadRequestError,
    InvalidInputError,
    RateLimitError,
    RetryPolicy,
    Timeout,
)
from rembg_async._contract import MSG_RATE_DAILY

StartRaw = Callable[..., Awaitable[RawServer]]
PACE = 0.02  # between pieces, so that each reaches the client on its own
IMAGE = make_image((8, 8), "PNG")


@contextlib.asynccontextmanager
async def hang_guard(seconds: float) -> AsyncIterator[None]:
    """Fail the test, rather than hang, when the code under test would wait for ever (a guard
    far above what the test needs; ``asyncio.timeout`` is not in Python 3.10)."""
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def fire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, fire)
    try:
        yield
    except asyncio.CancelledError:
        if fired:
            raise TimeoutError(f"still waiting after {seconds} s: it would hang") from None
        raise
    finally:
        handle.cancel()


def head(status: str, length: int, content_type: str, extra: str = "") -> bytes:
    """A response head with ``Content-Length``."""
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode("latin-1")


def answering(
    status: str, body: bytes, content_type: str, *, pieces: list[int] = (), extra: str = ""
) -> RawHandler:
    """A handler that reads the request whole, then answers ``body``: first in pieces of the
    given sizes, each sent on its own, then the rest."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_whole_request(reader)
        writer.write(head(status, len(body), content_type, extra))
        await writer.drain()
        sent = 0
        for size in pieces:
            writer.write(body[sent : sent + size])
            await writer.drain()
            sent += size
            await asyncio.sleep(PACE)
        writer.write(body[sent:])
        await writer.drain()

    return handler


def client_of(server: RawServer, **kwargs: object) -> AsyncRembg:
    """A client of ``server`` that does not retry (unless told), takes no 429 for flow control
    (these servers answer 429 for ever) and ignores proxies."""
    if "retry" not in kwargs:
        retries = kwargs.pop("max_retries", 0)
        kwargs["retry"] = RetryPolicy(max_retries=retries, rate_limited_for=0)  # type: ignore[arg-type]
    return AsyncRembg("key", base_url=server.url, trust_env=False, **kwargs)  # type: ignore[arg-type]


# 1. A 200 that arrives in small pieces is a success.


@pytest.mark.parametrize(
    ("image_format", "pieces"),
    [
        pytest.param("PNG", [1] * 16, id="png-byte-by-byte"),
        pytest.param("WEBP", [3], id="webp-3-then-rest"),
        pytest.param("WEBP", [1] * 13, id="webp-byte-by-byte"),
    ],
)
@pytest.mark.parametrize("return_base64", [False, True], ids=["file", "base64"])
async def test_image_trickled_in_small_pieces_is_a_success(
    raw_server: StartRaw, image_format: str, pieces: list[int], return_base64: bool
) -> None:
    """An image whose first bytes come one (or three) at a time is the image, not "no image"."""
    answer = make_image((30, 20), image_format)
    mime = f"image/{image_format.lower()}"
    server = await raw_server(answering("200 OK", answer, mime, pieces=pieces))
    async with client_of(server) as client:
        if return_base64:
            encoded = await client.remove(make_image(), return_base64=True)
            assert encoded.content_type == mime
            assert encoded.size == len(answer)
        else:
            async with await client.remove(make_image()) as result:
                assert result.content_type == mime
                assert result.output_image_path.read_bytes() == answer
    assert server.connections == 1  # no retry


async def test_short_answer_that_is_no_image_is_still_refused(raw_server: StartRaw) -> None:
    """A body shorter than a signature, trickled, is judged when it ends: no image."""
    server = await raw_server(answering("200 OK", b"\x89PN", "image/png", pieces=[1, 1]))
    async with client_of(server) as client:
        with pytest.raises(APIResponseError, match="no image"):
            await client.remove(make_image())


# 2. Error bodies are read whole.


@pytest.mark.parametrize("split", [1, 2, 20])
async def test_error_body_in_pieces_keeps_its_message_and_scope(
    raw_server: StartRaw, split: int
) -> None:
    """A daily 429 whose JSON arrives in two pieces keeps its message and scope="daily"."""
    body = json.dumps({"error": MSG_RATE_DAILY, "status": 429}).encode()
    server = await raw_server(
        answering("429 Too Many Requests", body, "application/json", pieces=[split])
    )
    async with client_of(server) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.remove(make_image())
    assert caught.value.message == MSG_RATE_DAILY
    assert caught.value.scope == "daily"


# 3. An upload the server stops reading cannot hang for ever.

BIG_UPLOAD = make_image() + bytes(20 * 1024 * 1024)  # a PNG's signature, then 20 MB


def reading_then_stopping(after: int) -> RawHandler:
    """A handler that reads the request's head and ``after`` bytes of its body, then nothing
    more (its buffers fill, then the client's) until the test ends."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.readexactly(after)
        await asyncio.Event().wait()

    return handler


@pytest.mark.parametrize("after", [0, 3 * 1024 * 1024])
@pytest.mark.parametrize("how", ["Timeout", "number"])
async def test_upload_the_server_stops_reading_times_out_and_aborts(
    raw_server: StartRaw, after: int, how: str
) -> None:
    """A 20 MB upload to a server that stops reading ends after ``read`` seconds with a read
    timeout, and leaves no connection open."""
    server = await raw_server(reading_then_stopping(after))
    timeout = Timeout(read=0.5) if how == "Timeout" else 0.5
    # hang_guard: without the fix, this hangs for ever
    async with hang_guard(20), client_of(server, timeout=timeout) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.remove(BIG_UPLOAD)
        assert connections_to(server.port) == 0  # aborted at once, not at close
    assert caught.value.timeout == "read"
    assert "upload" in str(caught.value)


def never_reading(accepted: asyncio.Event) -> RawHandler:
    """A handler that accepts the connection, says so, and never reads a byte of it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await asyncio.Event().wait()

    return handler


async def test_a_deadline_during_a_stalled_upload_leaves_no_socket(raw_server: StartRaw) -> None:
    """``Timeout(attempt=...)`` ends a 20 MB upload the server stopped reading with
    APITimeoutError, and the connection is aborted (not left for the server to drain)."""
    server = await raw_server(never_reading(asyncio.Event()))
    assert connections_to(server.port) == 0
    async with hang_guard(20), client_of(server, timeout=Timeout(attempt=1)) as client:
        with pytest.raises(APITimeoutError):
            await client.remove(BIG_UPLOAD)
    assert connections_to(server.port) == 0


async def test_a_cancelled_stalled_upload_leaves_no_socket(raw_server: StartRaw) -> None:
    """A call cancelled while its upload waits for a server that never reads leaves no socket."""
    accepted = asyncio.Event()
    server = await raw_server(never_reading(accepted))
    async with hang_guard(20), client_of(server) as client:
        call = asyncio.create_task(client.remove(BIG_UPLOAD))
        await accepted.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert connections_to(server.port) == 0


async def test_an_early_refusal_of_a_stalled_upload_leaves_no_socket(raw_server: StartRaw) -> None:
    """A server that answers 400 after the request's head, keeps the connection and reads none
    of the 20 MB body: the call fails with the 400 and its connection is aborted."""
    refusal = b'{"error": "refused"}'

    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head("400 Bad Request", len(refusal), "application/json", extra="") + refusal)
        await writer.drain()
        await asyncio.Event().wait()

    server = await raw_server(refusing)
    async with hang_guard(20), client_of(server) as client:
        with pytest.raises(BadRequestError):
            await client.remove(BIG_UPLOAD)
    assert connections_to(server.port) == 0


async def test_upload_stall_on_a_user_session_uses_its_read_timeout(raw_server: StartRaw) -> None:
    """With a session of the user's own, its ``sock_read`` bounds a stalled upload too."""
    import aiohttp

    server = await raw_server(reading_then_stopping(0))
    async with (
        hang_guard(20),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=0.5)) as session,
        AsyncRembg("key", base_url=server.url, session=session, max_retries=0) as client,
    ):
        with pytest.raises(APITimeoutError):
            await client.remove(BIG_UPLOAD)
        assert connections_to(server.port) == 0


async def test_slow_steady_reader_is_not_cut(raw_server: StartRaw) -> None:
    """A server that reads slowly but never pauses for ``read`` seconds gets the whole upload,
    although a 1 MiB write then takes longer than ``read`` to drain, and its last megabytes
    sit in the socket's queue for longer than ``read`` after aiohttp has written them."""
    body = make_image() + bytes(3 * 1024 * 1024)
    answer = make_image((8, 8), "PNG")

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers = await read_request(reader)
        left = int(headers["content-length"])
        while left:
            left -= len(await reader.readexactly(min(left, 16 * 1024)))
            await asyncio.sleep(0.02)  # ~0.8 MB/s: a 1 MiB write drains in over a second
        writer.write(head("200 OK", len(answer), "image/png") + answer)
        await writer.drain()

    server = await raw_server(slow, receive_buffer=64 * 1024)
    async with hang_guard(120), client_of(server, timeout=Timeout(read=0.5)) as client:
        encoded = await client.remove(body, return_base64=True)
    assert encoded.size == len(answer)


# 4. An input that changes under us fails fast and names itself.


async def test_file_that_shrinks_while_sent_fails_at_once(
    raw_server: StartRaw, tmp_path: Path
) -> None:
    """A file cut short during its upload raises InvalidInputError naming it, not a timeout
    blaming the server, and is not retried; no connection stays open."""
    photo = tmp_path / "shrinking.png"
    photo.write_bytes(make_image() + bytes(20 * 1024 * 1024))

    async def truncating(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        os.truncate(photo, 1024 * 1024)  # before the client can have read past ~5 MB
        await reader.read()  # everything, until the client goes

    server = await raw_server(truncating, receive_buffer=64 * 1024)
    retry = RetryPolicy(max_retries=2, wait=False)
    async with AsyncRembg("key", base_url=server.url, trust_env=False, retry=retry) as client:
        with pytest.raises(InvalidInputError, match=r"shrinking\.png changed while") as caught:
            await client.remove(photo, timeout=Timeout(read=3))
        assert connections_to(server.port) == 0
    assert caught.value.attempts == 1
    assert server.connections == 1


async def test_file_deleted_before_a_retry_is_an_input_error(
    raw_server: StartRaw, tmp_path: Path
) -> None:
    """A file deleted while the first attempt failed is an InvalidInputError on the retry,
    naming it, and not retried further."""
    photo = tmp_path / "vanishing.png"
    photo.write_bytes(make_image() + bytes(1024 * 1024))  # large: read when sent, not before
    error = b'{"error": "Internal server error", "status": 500}'

    async def failing_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_whole_request(reader)
        photo.unlink()
        writer.write(head("500 Internal Server Error", len(error), "application/json") + error)
        await writer.drain()

    server = await raw_server(failing_once)
    retry = RetryPolicy(max_retries=3, wait=False)
    async with AsyncRembg("key", base_url=server.url, trust_env=False, retry=retry) as client:
        with pytest.raises(
            InvalidInputError, match=r"vanishing\.png can no longer be read"
        ) as caught:
            await client.remove(photo)
    assert caught.value.attempts == 2
    assert server.connections == 2  # the first attempt, and the retry that found it gone


async def test_file_object_that_shrinks_while_sent_fails_at_once(
    raw_server: StartRaw, tmp_path: Path
) -> None:
    """The same for a file object given open: its name in the error, no timeout."""
    photo = tmp_path / "open.png"
    photo.write_bytes(make_image() + bytes(20 * 1024 * 1024))

    async def truncating(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        os.truncate(photo, 1024 * 1024)
        await reader.read()

    server = await raw_server(truncating, receive_buffer=64 * 1024)
    async with client_of(server) as client:
        with photo.open("rb") as file, pytest.raises(InvalidInputError, match=r"open\.png"):
            await client.remove(file, timeout=Timeout(read=3))


# 5. Malformed usage JSON is an APIResponseError.


async def usage_and_dates(client: AsyncRembg) -> object:
    """The usage with its billing window, and that window's dates (which a huge number breaks)."""
    usage = await client.membership_usage(billing_cycle=True)
    cycle = usage.billing_cycle
    return usage, cycle and (cycle.period_start, cycle.period_end)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"credits": "many"}', id="string-for-number"),
        pytest.param(b'{"credits": [1]}', id="list-for-number"),
        pytest.param(b'{"credits": 1e400}', id="infinite"),
        pytest.param(b'{"credits": NaN}', id="nan"),
        pytest.param(b'{"credits": ' + b"9" * 5000 + b"}", id="5000-digits"),
        pytest.param(
            b'{"billingCycle": {"periodStartUnix": 1e30, "periodEndUnix": 1}}', id="huge-time"
        ),
        pytest.param(b'{"billingCycle": {"periodEndUnix": 1}}', id="missing-field"),
        pytest.param(b'{"billingCycle": [1, 2]}', id="list-for-object"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-nesting"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="deep-objects"),
    ],
)
async def test_malformed_usage_json_is_a_response_error(raw_server: StartRaw, body: bytes) -> None:
    """Wrong types, huge numbers and deep nesting raise APIResponseError, nothing bare."""
    server = await raw_server(answering("200 OK", body, "application/json"))
    async with client_of(server) as client:
        with pytest.raises(APIResponseError):
            await usage_and_dates(client)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"billingCycles": {"a": 1}}', id="object-for-list"),
        pytest.param(b'{"billingCycles": [{"periodEndUnix": 1}]}', id="missing-field"),
        pytest.param(b'{"billingCycles": ["x"]}', id="string-for-object"),
        pytest.param(
            b'{"billingCycles": [{"periodStartUnix": "x", "periodEndUnix": 1}]}', id="text"
        ),
    ],
)
async def test_malformed_billing_cycles_are_a_response_error(
    raw_server: StartRaw, body: bytes
) -> None:
    """A list of billing cycles of the wrong shape raises APIResponseError."""
    server = await raw_server(answering("200 OK", body, "application/json"))
    async with client_of(server) as client:
        with pytest.raises(APIResponseError):
            await client.billing_cycles()


async def test_usage_json_in_pieces_is_read_whole(raw_server: StartRaw) -> None:
    """A usage answer that arrives a few bytes at a time is parsed whole."""
    body = json.dumps({"membership": "pro", "credits": 12, "api_usage": 3}).encode()
    server = await raw_server(answering("200 OK", body, "application/json", pieces=[1, 5, 5]))
    async with client_of(server) as client:
        usage = await client.membership_usage()
    assert (usage.membership, usage.credits, usage.api_usage) == ("pro", 12, 3)


# 6. A Retry-After that says nothing sensible is ignored.


@pytest.mark.parametrize(
    "header",
    [
        "Retry-After: -1",
        "Retry-After: -0.5",
        "Retry-After: nan",
        "Retry-After: inf",
        "Retry-After: -inf",
        "retry-after-ms: -5000",
        "retry-after-ms: nan\r\nRetry-After: -3",
    ],
)
async def test_bad_retry_after_is_ignored_and_backoff_applies(
    raw_server: StartRaw, header: str
) -> None:
    """A negative, NaN or infinite Retry-After is no wait at all: backoff decides the delay."""
    body = b'{"error": "Too many requests", "status": 429}'
    server = await raw_server(
        answering("429 Too Many Requests", body, "application/json", extra=f"{header}\r\n")
    )
    async with client_of(server) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.remove(make_image())
    assert caught.value.retry_after is None
    policy = RetryPolicy(initial_backoff=0.5)
    delay = policy.delay(caught.value, 1)
    assert delay is not None
    assert 0.25 <= delay <= 0.5


# 7. Proxies from the environment are honoured, as requests and httpx do.

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without proxy variables (in either case), for the test to set."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def proxy_recording(lines: list[bytes]) -> RawHandler:
    """A proxy that records each request line and answers a plain request itself with an
    image (a CONNECT, it refuses)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first, headers = await read_request(reader)
        lines.append(first)
        if first.startswith(b"CONNECT "):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        await reader.readexactly(int(headers.get("content-length", "0")))
        writer.write(head("200 OK", len(IMAGE), "image/png") + IMAGE)
        await writer.drain()

    return handler


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
async def test_http_proxy_from_environment_is_used(
    raw_server: StartRaw, no_proxy_environment: pytest.MonkeyPatch, variable: str
) -> None:
    """With $HTTP_PROXY set, the request goes to the proxy, in absolute form."""
    lines: list[bytes] = []
    proxy = await raw_server(proxy_recording(lines))
    api = await raw_server(sending(b""))
    no_proxy_environment.setenv(variable, proxy.url)
    async with AsyncRembg("key", base_url=api.url, max_retries=0) as client:
        result = await client.remove(make_image(), return_base64=True)
    assert result.size == len(IMAGE)
    assert lines == [f"POST {api.url}/rmbg HTTP/1.1".encode()]
    assert api.connections == 0


async def test_proxy_credentials_go_to_the_proxy_only(
    raw_server: StartRaw, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    """Credentials in $HTTP_PROXY reach the proxy as Proxy-Authorization, and no ~/.netrc or
    other Authorization header is added beside the API key."""
    seen: list[dict[str, str]] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_whole_request(reader)
        seen.append(headers)
        writer.write(head("200 OK", len(IMAGE), "image/png") + IMAGE)
        await writer.drain()

    server = await raw_server(proxy)
    no_proxy_environment.setenv("HTTP_PROXY", server.url.replace("http://", "http://me:s3cret@"))
    async with AsyncRembg("key", base_url="http://127.0.0.1:9", max_retries=0) as client:
        await client.remove(make_image(), return_base64=True)
    assert seen[0]["proxy-authorization"] == "Basic bWU6czNjcmV0"  # me:s3cret
    assert "authorization" not in seen[0]


async def test_https_proxy_from_environment_is_used(
    raw_server: StartRaw, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    """With $HTTPS_PROXY set, an https API is reached through a CONNECT to the proxy."""
    lines: list[bytes] = []
    proxy = await raw_server(proxy_recording(lines))
    no_proxy_environment.setenv("HTTPS_PROXY", proxy.url)
    async with AsyncRembg("key", base_url="https://127.0.0.1:9", max_retries=0) as client:
        with pytest.raises(APIConnectionError):  # this proxy refuses every tunnel
            await client.remove(make_image())
    assert lines == [b"CONNECT 127.0.0.1:9 HTTP/1.1"]


@pytest.mark.parametrize("how", ["NO_PROXY", "trust_env=False"])
async def test_proxy_is_bypassed_when_told(
    raw_server: StartRaw, no_proxy_environment: pytest.MonkeyPatch, how: str
) -> None:
    """$NO_PROXY naming the host, or ``trust_env=False``, sends the request directly."""
    lines: list[bytes] = []
    proxy = await raw_server(proxy_recording(lines))
    api = await raw_server(answering("200 OK", IMAGE, "image/png"))
    no_proxy_environment.setenv("HTTP_PROXY", proxy.url)
    if how == "NO_PROXY":
        no_proxy_environment.setenv("NO_PROXY", "example.com,127.0.0.1")
    options = {"trust_env": False} if how == "trust_env=False" else {}
    async with AsyncRembg("key", base_url=api.url, max_retries=0, **options) as client:  # type: ignore[arg-type]
        result = await client.remove(make_image(), return_base64=True)
    assert result.size == len(IMAGE)
    assert lines == []
    assert api.connections == 1


# 8. The CLI shows the server's text and file names literally (no rich markup).


async def test_cli_shows_markup_in_names_and_messages_literally(
    raw_server: StartRaw, tmp_path: Path
) -> None:
    """In a terminal, a file named "[bold]…" and a server message with "[/red]" are printed
    as they are, and the run ends with its summary instead of a MarkupError."""
    from test_cli_remove import run_in_terminal

    message = "bad [/red] request [bold]here"
    body = json.dumps({"error": message, "status": 400}).encode()
    server = await raw_server(answering("400 Bad Request", body, "application/json"))
    good = tmp_path / "[red]photo.png"
    good.write_bytes(make_image())
    bad = tmp_path / "[bold]broken.png"
    bad.write_bytes(b"no image")
    code, screen = await asyncio.to_thread(
        run_in_terminal,
        "remove", str(good), str(bad), "--base-url", server.url, "--api-key", "k",
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    shown = bare(screen)
    assert "MarkupError" not in shown
    assert code == 1, screen  # two failed images, not a crash
    assert bare(f"{good}: 400 {message}") in shown
    assert bare(f"{bad}: File does not appear to be a valid image") in shown
    assert "made" in shown


def bare(text: str) -> str:
    """``text`` without terminal escape codes and white space (rich wraps long lines)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\s", "", text)


async def test_cli_usage_shows_markup_from_the_server_literally(raw_server: StartRaw) -> None:
    """``usage`` prints a plan name holding rich markup as it is."""
    from test_cli_remove import run

    body = json.dumps({"membership": "[/bold]Pro[red]", "credits": 3}).encode()
    server = await raw_server(answering("200 OK", body, "application/json"))
    result = await asyncio.to_thread(run, "usage", "--base-url", server.url, "--api-key", "k")
    assert result.returncode == 0, result.stderr
    assert "membership: [/bold]Pro[red]" in result.stdout


# 9. An answer the HTTP parser refuses is an APIResponseError, not a 400 look-alike.


def sending(raw: bytes) -> RawHandler:
    """A handler that reads the request whole, then sends ``raw`` and closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_whole_request(reader)
        writer.write(raw)
        await writer.drain()

    return handler


@pytest.mark.parametrize(
    ("raw", "retried"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Big: "
            + b"a" * 9000
            + b"\r\n"
            + head("", len(IMAGE), "image/png")[12:]
            + IMAGE,
            False,
            id="header-over-limit",
        ),
        pytest.param(
            b"HTTP/1.1 200 "
            + b"O" * 9000
            + b"\r\n"
            + head("", len(IMAGE), "image/png")[12:]
            + IMAGE,
            False,
            id="status-line-over-limit",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"Content-Length: 0\r\n\r\n",
            False,
            id="too-many-headers",
        ),
        pytest.param(b"HELLO THERE\r\n\r\n", True, id="garbage-status-line"),
        pytest.param(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", True, id="bad-status-code"),
    ],
)
async def test_answer_the_parser_refuses_is_a_response_error(
    raw_server: StartRaw, raw: bytes, retried: bool
) -> None:
    """The error says the answer could not be read (no "400" that reads like the API's), and
    is retried only if another attempt could differ."""
    server = await raw_server(sending(raw))
    retry = RetryPolicy(max_retries=2, wait=False)
    async with client_of(server, retry=retry) as client:
        with pytest.raises(APIResponseError, match="not HTTP this client can read") as caught:
            await client.remove(make_image())
    assert "400," not in str(caught.value)  # aiohttp's "400, message=..."
    assert caught.value.__cause__ is not None  # aiohttp's own error stays as the cause
    assert server.connections == (3 if retried else 1)


# 10. A plain number is a Timeout: read=.


def silent_after_request() -> RawHandler:
    """A handler that reads the request whole, then says nothing until the client leaves."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_whole_request(reader)
        await reader.read()  # until the client closes

    return handler


@pytest.mark.parametrize("where", ["client", "call"])
async def test_number_as_timeout_is_the_read_timeout(raw_server: StartRaw, where: str) -> None:
    """``timeout=0.3`` on the client or on a call means Timeout(read=0.3)."""
    server = await raw_server(silent_after_request())
    on_client = {"timeout": 0.3} if where == "client" else {}
    on_call = {"timeout": 0.3} if where == "call" else {}
    async with hang_guard(30), client_of(server, **on_client) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.remove(make_image(), **on_call)  # type: ignore[call-overload]
    assert caught.value.timeout == "read"


@pytest.mark.parametrize("bad", ["5", True, -1, 0, float("nan")])
def test_timeout_that_is_no_number_is_refused(bad: object) -> None:
    """A timeout that is neither a Timeout nor a positive number is refused when given."""
    with pytest.raises((TypeError, ValueError), match="timeout"):
        AsyncRembg("key", timeout=bad)  # type: ignore[arg-type]


def test_number_as_timeout_keeps_the_other_defaults() -> None:
    """``timeout=5`` is ``Timeout(read=5)``: connect keeps its default, no attempt deadline."""
    from rembg_async._timeouts import as_timeout

    assert as_timeout(5) == Timeout(read=5.0)
    assert as_timeout(Timeout(attempt=3)) == Timeout(attempt=3)


# 11. An API key with a control character is refused when the client is made.


@pytest.mark.parametrize("key", ["sk-SECRET-1\n", "sk-SECRET-1\r\n", "sk-SE\x00CRET", "sk\tSECRET"])
def test_api_key_with_control_character_is_refused_at_once(key: str) -> None:
    """The client refuses the key when made, naming it without printing it."""
    with pytest.raises(ValueError, match="API key") as caught:
        AsyncRembg(key)
    assert "SECRET" not in str(caught.value)


def test_api_key_from_environment_with_newline_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key read from $REMBG_API_KEY with a line end is refused, naming the variable."""
    monkeypatch.setenv("REMBG_API_KEY", "sk-SECRET-2\n")
    with pytest.raises(ValueError, match=r"\$REMBG_API_KEY") as caught:
        AsyncRembg()
    assert "SECRET" not in str(caught.value)


async def test_a_refusal_read_whole_keeps_its_connection_for_the_next_call(
    raw_server: StartRaw,
) -> None:
    """A 400 whose body is read whole leaves a healthy kept-alive connection: the failure
    does not abort it, and the next call is sent on it (one connection for both)."""
    refusal = b'{"error": "refused"}'

    async def refusing_then_answering(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        for status, body, kind in [
            ("400 Bad Request", refusal, "application/json"),
            ("200 OK", IMAGE, "image/png"),
        ]:
            await read_whole_request(reader)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        await asyncio.Event().wait()

    server = await raw_server(refusing_then_answering)
    async with hang_guard(20), client_of(server) as client:
        with pytest.raises(BadRequestError):
            await client.remove(make_image())
        async with await client.remove(make_image()) as result:
            assert result.output_image_path.read_bytes() == IMAGE
    assert server.connections == 1
