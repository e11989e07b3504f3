"""The one seam to the network: a `Call` (one image, and where its answer goes) and
`Exchange.send`/`stream`, used by `remove()`, `stream()` and the batch. Transport failures
become ours here alone (`_transport_errors`); a cache hit is served and sends nothing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import aiohttp
import attrs
from yarl import URL

from ._cache import CacheSeam, Entry, Turn
from ._contract import API_KEY_HEADER
from ._download import CHUNK_BYTES as DOWNLOAD_CHUNK
from ._download import (
    KeptTarget,
    body_length,
    read_whole,
    receive_base64,
    receive_bytes,
    receive_file,
)
from ._exceptions import (
    InvalidInputError,
    RateLimitError,
    error_from_response,
    error_from_transport,
    request_id,
)
from ._hits import answer_body, deliver_stream, one_piece
from ._inputs import Source, content_digest
from ._limits import Answer, Limiter, Outcome, limited
from ._progress import ProgressCallback, ProgressTracker
from ._request_line import RequestLine
from ._results import Base64Image, ImageBytes, ImageFile, discard_temporary
from ._retry import RetryPolicy
from ._storage._sinks import RemoteTarget, put_result
from ._storage._stores import Stores
from ._stream_output import StreamedImage, end_of_block, open_streamed
from ._timeouts import Timeout
from ._upload import CHUNK_BYTES, UploadBody, build_form
from ._version import __version__

T = TypeVar("T")
#: Error bodies are small; a proxy's HTML page is cut to this.
MAX_ERROR_BODY: Final = 64 * 1024

Result = ImageFile | Base64Image | ImageBytes
#: Where an answer goes: a temporary file (None), a path, a batch's path or remote object with
#: a "then" that records it once in place.
Output = Path | KeptTarget | RemoteTarget | None
#: How the batch reaches the network: `Exchange.send` with its storage options.
Sender = Callable[["Call", RetryPolicy], Awaitable[Result]]

MSG_OTHER_LOOP: Final = (
    "this AsyncRembg client was first used in another event loop (each asyncio.run() makes a "
    "new one), and its connections and locks belong to that loop: make one client per loop, "
    "inside 'async with AsyncRembg() as client' in the coroutine you run, or use the sync "
    "client rembg_async.Rembg, which can be shared by any code and thread"
)


@attrs.frozen(kw_only=True)
class Call:
    """What stays the same across the attempts of one image's request."""

    source: Source  # opened and checked; closed by `Exchange.send` once the call is over
    fields: Mapping[str, str]
    output: Output = None
    returns: Literal["file", "base64", "bytes"] = "file"
    on_upload: ProgressCallback | None = None
    on_download: ProgressCallback | None = None
    extra_headers: Mapping[str, str] | None = None  # after the client's; never over the key
    timeout: Timeout | None = None  # None: the client's
    #: Awaited once before the call first goes to the network (never on a cache hit): a batch
    #: reserves its credit there.
    admit: Callable[[], Awaitable[object]] | None = None


@attrs.define(kw_only=True, eq=False, repr=False)
class Exchange:
    """A client's way to the network: its session (made at first use, unless given), limiter,
    headers, timeout and retries. ``state``: ``unopened``, ``opened``, ``closed``."""

    session: aiohttp.ClientSession | None
    _url: URL
    _proxies: Mapping[URL, Mapping[str, Any]]
    limiter: Limiter
    _owns_limiter: bool
    retry: RetryPolicy
    _timeout: Timeout | None  # None: the session's own
    _api_key: str | None
    _extra_headers: Mapping[str, str] | None
    _progress_interval: float
    _stores: Stores
    cache: CacheSeam | None = None
    state: str = attrs.field(default="unopened", init=False)
    owns_session: bool = attrs.field(init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _key_headers: dict[str, str] = attrs.field(init=False)  # what extra headers cannot replace
    _headers: dict[str, str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.owns_session = self.session is None
        self._key_headers = _key_headers(self._api_key)
        self._headers = {**(self._extra_headers or {}), **self._key_headers}

    def open(self) -> aiohttp.ClientSession:
        """The session, made at first use; refused once closed, or from another event loop."""
        if self.state == "closed":
            raise RuntimeError("this AsyncRembg client is closed; make a new one")
        self._check_loop()
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=(self._timeout or Timeout()).to_aiohttp())
        self.state = "opened"
        return self.session

    def _check_loop(self) -> None:
        """Refuse a second event loop: the session and the limiter's lock belong to the first."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop: nothing is bound yet
            return
        self._loop = self._loop or loop
        if self._loop is not loop:
            raise RuntimeError(MSG_OTHER_LOOP)

    async def aclose(self) -> None:
        """Close the session and the limiter, if they are ours. Safe to call twice."""
        if self.state == "opened" and self.owns_session and self.session is not None:
            await self.session.close()
        if self.state == "opened" and self._owns_limiter:
            await self.limiter.aclose()
        self.state = "closed"

    async def send(
        self,
        call: Call,
        retry: RetryPolicy | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Result:
        """Send ``call``, retried by ``retry`` (else the client's); its answer, in its sink."""
        try:
            self.open()
            if self.cache is None:  # the hot path: no context manager
                result = await self._fetch(
                    call, retry, functools.partial(self._send_once, call, None)
                )
            else:
                async with self._turn(call) as turn:
                    result = await self._serve_or_fetch(call, retry, turn)
        finally:
            call.source.close()
        if not isinstance(call.output, RemoteTarget):
            return result
        assert isinstance(result, ImageFile)
        store = self._stores.store(call.output.url, storage_options)
        stored = await put_result(store, result, call.output)
        return attrs.evolve(stored, cached=result.cached)

    async def _serve_or_fetch(
        self, call: Call, retry: RetryPolicy | None, turn: Turn | None
    ) -> Result:
        if turn is None or turn.entry is None:
            return await self._fetch(call, retry, functools.partial(self._send_once, call, turn))
        tracker = self._hit_tracker(call, turn.entry)
        body = one_piece(turn.entry.body)
        return await _receive(call, body, turn.entry.content_type, tracker, None, cached=True)

    async def _fetch(
        self, call: Call, retry: RetryPolicy | None, attempt_once: Callable[[int], Awaitable[T]]
    ) -> T:
        """Admit ``call`` (once), then run its attempts under ``retry`` (else the client's)."""
        if call.admit is not None:
            await call.admit()
        return await (retry or self.retry).run(attempt_once)

    @contextlib.asynccontextmanager
    async def _turn(self, call: Call) -> AsyncIterator[Turn | None]:
        """The call's turn at the cache (None: no cache), before any permit or credit is taken."""
        if self.cache is None:
            yield None
            return
        digest = await content_digest(call.source)
        async with self.cache.turn(digest, call.fields) as turn:
            yield turn

    def _hit_tracker(self, call: Call, entry: Entry) -> ProgressTracker:
        total = len(entry.body)
        return ProgressTracker(
            call.on_download, total=total, upload=False, interval=self._progress_interval
        )

    async def _send_once(self, call: Call, turn: Turn | None, attempt: int) -> Result:
        result: Result | None = None
        try:
            async with self._attempt(call, attempt) as (response, download):
                chunks = response.content.iter_chunked(DOWNLOAD_CHUNK)
                answer_id = request_id(response.headers)
                result = await _receive(call, chunks, response.content_type, download, answer_id)
                declared = response.content_type, body_length(response)
            if turn is not None:  # after the attempt: its permit is not held meanwhile
                await turn.store_read(functools.partial(answer_body, result), *declared)
        except BaseException:
            # Cancelled while closing the exchange, after the file was whole: nobody will
            # receive it, so a temporary one must go now.
            discard_temporary(result)
            raise
        assert result is not None
        return result

    @contextlib.asynccontextmanager
    async def stream(self, call: Call, retry: RetryPolicy | None) -> AsyncIterator[StreamedImage]:
        """``call``'s answer handed over as it arrives, its connection held for the block.
        Failures are retried until the block is entered; a failure later is raised to it."""
        try:
            self.open()
            async with contextlib.AsyncExitStack() as held:
                turn = await held.enter_async_context(self._turn(call))  # the last to exit
                if turn is not None and turn.entry is not None:
                    hit = turn.entry
                    result = await deliver_stream(hit.body, self._hit_tracker(call, hit))
                else:
                    once = functools.partial(self._stream_once, call, held, turn)
                    result = await self._fetch(call, retry, once)
                held.callback(end_of_block, result)  # first of the exits: reading stops, clearly
                yield result
        finally:
            call.source.close()

    async def _stream_once(
        self, call: Call, held: contextlib.AsyncExitStack, turn: Turn | None, attempt: int
    ) -> StreamedImage:
        async with contextlib.AsyncExitStack() as stack:
            response, download = await stack.enter_async_context(self._attempt(call, attempt))
            errors = functools.partial(_transport_errors, self._url)
            keep = None
            if turn is not None:  # the cache stores the body once the caller has read it all
                keep = functools.partial(
                    turn.store,
                    declared_type=response.content_type,
                    declared_length=body_length(response),
                )
            result = await open_streamed(response, download, errors, keep)
            held.push_async_exit(stack.pop_all())  # held open until the caller's block ends
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def _attempt(
        self, call: Call, attempt: int
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, ProgressTracker]]:
        """One request of ``call``: its answer once the head says an image follows, with the
        download's tracker. Failures of the transport, in the block too, become ours."""
        session = self.open()
        timeout = call.timeout or self._timeout
        form = build_form(call.source, call.fields, CHUNK_BYTES)
        track = functools.partial(
            ProgressTracker, interval=self._progress_interval, attempt=attempt
        )
        upload = track(call.on_upload, total=form.size, upload=True)
        read_limit = timeout.read if timeout is not None else session.timeout.sock_read
        body = UploadBody(form, upload, read_limit)
        async with limited(self.limiter) as outcome:
            with (
                RequestLine("POST", self._url, attempt, form.size) as line,
                _transport_errors(self._url),
                body.aborted_on_failure(),
            ):
                async with session.post(
                    self._url,
                    data=body,
                    headers=self._call_headers(call.extra_headers),
                    allow_redirects=False,
                    **self._proxies[self._url],
                    **_timeout_argument(timeout),
                ) as response:
                    line.answered(response)
                    await self._raise_for_status(response, outcome)
                    total = body_length(response)
                    yield response, track(call.on_download, total=total, upload=False)

    async def get(self, url: URL, params: Mapping[str, str], limit: int) -> bytes:
        """A GET of the account host (usage), retried; up to ``limit`` bytes of its body.
        Usage answers cost no credit: /rmbg's limiter (its rate, slots, budget) is not theirs."""
        self.open()
        return await self.retry.run(functools.partial(self._get_once, url, params, limit))

    async def _get_once(
        self, url: URL, params: Mapping[str, str], limit: int, attempt: int
    ) -> bytes:
        session = self.open()
        with RequestLine("GET", url, attempt) as line, _transport_errors(url):
            async with session.get(
                url,
                params=params,
                headers=self._headers,
                allow_redirects=False,
                **self._proxies[url],
                **_timeout_argument(self._timeout),
            ) as response:
                line.answered(response)
                await self._raise_for_status(response)
                return await read_whole(response, limit)

    def _call_headers(self, extra: Mapping[str, str] | None) -> Mapping[str, str]:
        """The client's headers, then a call's ``extra_headers``; never over the key."""
        if not extra:
            return self._headers
        return {**self._headers, **extra, **self._key_headers}

    async def _raise_for_status(
        self, response: aiohttp.ClientResponse, outcome: Outcome | None = None
    ) -> None:
        if response.status == 200:
            if outcome is not None:
                outcome.answer = Answer(status=200, headers=response.headers)
            return
        body = await read_whole(response, MAX_ERROR_BODY)  # all its pieces, not the first
        error = error_from_response(response.status, body, response.headers)
        if outcome is not None:
            # The limiter slows down on a short-term 429 and holds off as it sees fit.
            throttled = isinstance(error, RateLimitError) and self.retry.is_retryable(error)
            outcome.answer = Answer(
                status=error.status,
                headers=error.headers,
                throttled=throttled,
                message=error.message,
            )
        raise error


def _receive(
    call: Call,
    chunks: AsyncIterable[bytes],
    declared: str,
    tracker: ProgressTracker,
    answer_id: str | None,
    *,
    cached: bool = False,
) -> Awaitable[Result]:
    """The receiver of an answer's body (downloaded, or a cache hit's) into the call's sink."""
    if call.returns == "base64":
        return receive_base64(chunks, declared, tracker, answer_id, cached)
    if call.returns == "bytes":
        return receive_bytes(chunks, declared, tracker, answer_id, cached)
    path: Path | None = None  # a temporary file; a remote output's too, then put in its store
    then = None
    if isinstance(call.output, KeptTarget):
        path, then = call.output.path, call.output.then
    elif isinstance(call.output, Path):
        path = call.output
    return receive_file(chunks, declared, tracker, path, then, answer_id, cached)


def check_api_key(api_key: str | None, *, from_env: bool) -> None:
    """Refuse a key that cannot go in a header (a newline pasted with it, most often) now,
    rather than at the first request; the message says where the key came from, never what."""
    if api_key is None:
        return
    for position, char in enumerate(api_key):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            where = "the API key from $REMBG_API_KEY" if from_env else "the API key"
            raise ValueError(
                f"{where} contains a control character ({char!r} at position {position} of "
                f"{len(api_key)}); a line end copied with it? strip it"
            )


def _key_headers(api_key: str | None) -> dict[str, str]:
    """The headers a call's ``extra_headers`` cannot replace."""
    headers = {"User-Agent": f"rembg-async/{__version__}"}
    if api_key:
        headers[API_KEY_HEADER] = api_key
    return headers


def _timeout_argument(timeout: Timeout | None) -> dict[str, aiohttp.ClientTimeout]:
    """``timeout=`` for aiohttp when one was set, so a user's own session keeps its own."""
    return {} if timeout is None else {"timeout": timeout.to_aiohttp()}


@contextlib.contextmanager
def _transport_errors(url: URL) -> Iterator[None]:
    """Map aiohttp's failures to ours; the one place where that happens."""
    try:
        yield
    # asyncio.TimeoutError is TimeoutError from 3.11 on; on 3.10 it is a class of its own.
    except (aiohttp.ClientError, TimeoutError, asyncio.TimeoutError) as error:
        if isinstance(error.__cause__, InvalidInputError):
            # The input, read while the body was sent, failed (aiohttp wraps what a body's
            # writer raises): the fault is the input's, and no retry would mend it.
            raise error.__cause__ from None
        raise error_from_transport(error, url=str(url)) from error
