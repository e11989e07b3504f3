"""AsyncRembg: one aiohttp session, the background-removal call and the usage calls."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Final, Literal, overload

import aiohttp
import attrs
from yarl import URL

from ._batch import BatchProgressCallback, BatchRun, ItemProgressCallback, RemoveOne
from ._budget import CreditBudget, LocalCreditBudget
from ._closing import AsyncClosing
from ._contract import API_KEY_HEADER
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
)
from ._inputs import ImageInput, Source
from ._limits import AdaptiveLimiter, Answer, Limiter, Outcome, RateLimitState, limited
from ._options import Base64Options, ImageFileOptions, RemoveOptions, resolve_options
from ._outputs import manifest_place, output_folder
from ._paths import format_for_output
from ._progress import DEFAULT_INTERVAL, ProgressCallback, ProgressTracker
from ._request_log import logged_request
from ._results import Base64Image, ImageBytes, ImageFile, discard_temporary
from ._retry import RetryPolicy
from ._storage._sinks import put_result, remote_target
from ._storage._sources import RemoteInputs, open_input
from ._storage._stores import Stores
from ._stream_output import StreamedImage, end_of_block, open_streamed
from ._timeouts import Timeout, TimeoutLike, as_timeout
from ._upload import CHUNK_BYTES, UploadBody, build_form
from ._urls import checked_url, proxy_arguments
from ._usage import (
    BillingCycleSummary,
    MembershipUsage,
    billing_cycles_from_json,
    usage_json,
    usage_params,
)
from ._version import __version__

logger = logging.getLogger("rembg_async")

API_BASE_URL: Final = "https://api.rembg.com"
ACCOUNT_BASE_URL: Final = "https://www.rembg.com"
MSG_BASE64_WITH_OUTPUT_PATH: Final = "return_base64 and output_path exclude each other"
MSG_BYTES_WITH_OTHERS: Final = "return_bytes excludes return_base64 and output_path"
#: Error bodies are small; a proxy's HTML page is cut to this.
MAX_ERROR_BODY: Final = 64 * 1024
#: A usage answer is a few hundred bytes; a list of billing cycles, a few per month of history.
MAX_USAGE_BODY: Final = 4 * 1024 * 1024


MSG_OTHER_LOOP: Final = (
    "this AsyncRembg client was first used in another event loop (each asyncio.run() makes a "
    "new one), and its connections and locks belong to that loop: make one client per loop, "
    "inside 'async with AsyncRembg() as client' in the coroutine you run, or use the sync "
    "client rembg_async.Rembg, which can be shared by any code and thread"
)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@attrs.frozen(kw_only=True)
class _RemoveCall:
    """What stays the same across the attempts of one remove() call."""

    source: Source
    fields: dict[str, str]
    target: Path | None
    then: Callable[[], object] | None  # once the target is in place (a batch's index line)
    return_base64: bool
    return_bytes: bool
    on_upload: ProgressCallback | None
    on_download: ProgressCallback | None
    timeout: Timeout | None  # None: the session's own
    headers: Mapping[str, str]  # the client's, with the call's extra_headers


class AsyncRembg(AsyncClosing):
    """A client of the RemBG API: ``async with AsyncRembg() as client: await client.remove(...)``.

    ``api_key`` defaults to ``$REMBG_API_KEY``; with none, calls are anonymous (small daily
    limit). ``base_url`` (or ``$REMBG_BASE_URL``) points both the API and the account host at
    one server, such as the local one; ``account_base_url`` sets the account host alone. Plain
    ``http://`` is refused for any host but loopback unless ``allow_insecure_http``.
    A ``session`` you pass is used and left open; otherwise the client owns one.

    Failures worth it are retried (``max_retries``, or a whole `RetryPolicy` as
    ``retry``); ``timeout`` is a `Timeout`, or a number of seconds meaning
    ``Timeout(read=...)`` (the longest silence); both can be overridden per call.
    ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (read when the client is
    made) are honoured as requests and httpx do, unless ``trust_env=False``; a ``session`` you
    pass keeps its own ``trust_env`` instead.
    Every call of the client shares one `Limiter`: by default an
    `AdaptiveLimiter` that learns the API's short-term rate limit from its answers
    (``client.rate_limit`` shows it); ``requests_per_second`` fixes the rate instead,
    ``adaptive_rate_limit=False`` turns learning off, ``max_concurrency`` caps the requests in
    flight; ``limiter`` passes one of your own (shared by several clients, say).
    ``storage_options`` go to fsspec for remote inputs and outputs (``s3://``…): credentials,
    ``client_kwargs={"endpoint_url": ...}``; a call's own ``storage_options`` replace them.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        account_base_url: str | None = None,
        timeout: TimeoutLike | None = None,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        requests_per_second: float | None = None,
        max_concurrency: int | None = None,
        adaptive_rate_limit: bool = True,
        limiter: Limiter | None = None,
        session: aiohttp.ClientSession | None = None,
        progress_interval: float = DEFAULT_INTERVAL,
        allow_insecure_http: bool = False,
        trust_env: bool = True,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        # First, so that __del__ finds a consistent object even if a check below fails.
        self._state = _State.UNOPENED
        self._owns_session = session is None
        self._stores = Stores(storage_options)  # remote inputs and outputs' filesystems
        self._api_key = api_key if api_key is not None else os.environ.get("REMBG_API_KEY") or None
        _check_api_key(self._api_key, from_env=api_key is None)
        shared = base_url or os.environ.get("REMBG_BASE_URL")
        self._api_url = checked_url(shared or API_BASE_URL, allow_insecure_http)
        self._rmbg_url = self._api_url / "rmbg"
        self._account_url = checked_url(
            account_base_url or shared or ACCOUNT_BASE_URL, allow_insecure_http
        )
        self._usage_url = self._account_url / "api" / "membership-usage"
        self._timeout = as_timeout(timeout)  # None: the session's own (ours: Timeout()'s defaults)
        # Read now, like httpx: what a request needs to reach each host through a proxy.
        self._proxies = {
            url: proxy_arguments(url) if trust_env and session is None else {}
            for url in (self._rmbg_url, self._usage_url)
        }
        self._retry = retry or RetryPolicy(max_retries=max_retries)
        if limiter is not None and (requests_per_second or max_concurrency):
            raise ValueError("pass requests_per_second and max_concurrency to your limiter")
        # A limiter kept per API key (shared through Redis) gives each client its key's own.
        for_api_key = getattr(limiter, "for_api_key", None)
        self._owns_limiter = limiter is None or for_api_key is not None
        self._limiter = limiter or AdaptiveLimiter(
            requests_per_second=requests_per_second,
            max_concurrency=max_concurrency,
            adaptive=adaptive_rate_limit,
            max_hold=self._retry.max_retry_after,
        )
        if for_api_key is not None:
            self._limiter = for_api_key(self._api_key)
        self._session = session
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop its session belongs to
        self._progress_interval = progress_interval
        # The same for every request; extra_headers cannot replace the key (api_key does).
        self._headers = {**(extra_headers or {}), **_request_headers(self._api_key)}
        if self._api_key is None:
            logger.warning("no RemBG API key given: calls are anonymous, with a small daily limit")

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none (anonymous)"
        return f"<AsyncRembg {self._state.value} api={self._api_url} api_key={key}>"

    async def __aenter__(self) -> AsyncRembg:
        self._open()
        return self

    async def _close_on_exit(self) -> None:
        await self.aclose()

    @property
    def limiter(self) -> Limiter:
        """The limiter every request of this client goes through."""
        return self._limiter

    @property
    def rate_limit(self) -> RateLimitState:
        """The limiter's state: the rate in force (learned or set) and the 429s seen."""
        return self._limiter.state

    async def aclose(self) -> None:
        """Close the client (and its session and limiter, if it made them). Safe to call twice."""
        if self._state is _State.OPENED and self._owns_session and self._session is not None:
            await self._session.close()
        if self._state is _State.OPENED and self._owns_limiter:
            await self._limiter.aclose()
        await self._stores.aclose()
        self._state = _State.CLOSED

    def __del__(self) -> None:
        if self._state is _State.OPENED and self._owns_session:
            warnings.warn(
                "AsyncRembg was never closed: use 'async with' or 'await client.aclose()'",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    def _open(self) -> aiohttp.ClientSession:
        if self._state is _State.CLOSED:
            raise RuntimeError("this AsyncRembg client is closed; make a new one")
        self._check_loop()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=(self._timeout or Timeout()).to_aiohttp())
        self._state = _State.OPENED
        return self._session

    def _call_headers(self, extra: Mapping[str, str] | None) -> Mapping[str, str]:
        """The client's headers, then a call's ``extra_headers``; never over the key."""
        if not extra:
            return self._headers
        return {**self._headers, **extra, **_request_headers(self._api_key)}

    def _check_loop(self) -> None:
        """Refuse a second event loop: the session and the limiter's lock belong to the first."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop: nothing is bound yet
            return
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(MSG_OTHER_LOOP)

    # The result's type follows the options: an ImageFile unless base64 is asked for, by
    # return_base64=True or by a dict literal with "returnBase64": True; when that is only
    # known at run time (a bool, a dict[str, Any]), the union. return_bytes=True: ImageBytes.
    @overload
    async def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | ImageFileOptions | None = None,
        *,
        return_bytes: Literal[True],
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> ImageBytes: ...

    @overload
    async def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | ImageFileOptions | None = None,
        *,
        return_base64: Literal[False] = False,
        output_path: str | os.PathLike[str] | None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> ImageFile: ...

    @overload
    async def remove(
        self,
        input_image: ImageInput,
        options: Base64Options,
        *,
        return_base64: bool = False,
        output_path: None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Base64Image: ...

    @overload
    async def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | Mapping[str, Any] | None = None,
        *,
        return_base64: Literal[True],
        output_path: None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Base64Image: ...

    @overload
    async def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | Mapping[str, Any] | None = None,
        *,
        return_base64: bool = False,
        output_path: str | os.PathLike[str] | None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> ImageFile | Base64Image: ...

    async def remove(
        self,
        input_image: ImageInput,
        options: RemoveOptions | Mapping[str, Any] | None = None,
        *,
        return_base64: bool = False,
        output_path: str | os.PathLike[str] | None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        size: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        return_bytes: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> ImageFile | Base64Image | ImageBytes:
        """Remove the background of ``input_image``.

        ``input_image`` is a path, bytes, ``{"base64": ...}`` (a ``data:`` prefix is fine), a
        seekable binary file, or a stream: an async iterable of bytes or anything with an async
        ``read(n)`` (aiohttp's ``StreamReader`` and multipart parts, Starlette's ``UploadFile``),
        sent as it is read, with ``Content-Length`` when ``size`` gives its exact length (chunked
        otherwise). A stream's first bytes are checked before sending, and what is read of it is
        spooled to an anonymous temporary file so a retry can resend it; the file is deleted
        when the call returns or fails. The result is a temporary `ImageFile` (``cleanup()`` it),
        the file at ``output_path``, with ``return_base64`` a `Base64Image`, or with
        ``return_bytes`` an `ImageBytes` (the image in memory: for small results).
        With no format given, ``output_path``'s extension chooses it (``cut.png``: PNG), as
        Pillow's ``save()`` does. Bad input raises `InvalidInputError` before anything is
        sent, and so does an ``output_path`` whose extension names another format than the
        one given (an ``OSError`` when it is a folder or its folder cannot be written).
        Each retry sends the image afresh and restarts progress, its events carrying the new
        ``attempt``.
        ``extra_headers`` are sent with this call's request (after the client's own).

        ``input_image`` and ``output_path`` may also be URLs that fsspec knows (``s3://``,
        ``gs://``, ``memory://``, ``https://``…; the ``fsspec`` extra, plus s3fs or gcsfs):
        the object is streamed up with its exact size, checked first as a file is, and the
        result is received locally, then put in the store whole (its `ImageFile` has the
        ``url``). ``storage_options`` (else the client's) go to fsspec: credentials, endpoint.
        """
        remove_options, return_base64 = resolve_options(options, return_base64)
        if return_base64 and output_path is not None:
            raise ValueError(MSG_BASE64_WITH_OUTPUT_PATH)
        if return_bytes and (return_base64 or output_path is not None):
            raise ValueError(MSG_BYTES_WITH_OTHERS)
        remote = remote_target(output_path)
        target = Path(output_path) if output_path is not None and remote is None else None
        if output_path is not None:
            named = PurePosixPath(remote.url) if remote is not None else Path(output_path)
            chosen = format_for_output(named, remove_options.format)
            if chosen != remove_options.format:
                remove_options = attrs.evolve(remove_options, format=chosen)
        remote_inputs = RemoteInputs(stores=self._stores, options=storage_options)
        source = await open_input(remote_inputs, input_image, target, size)
        try:
            call = _RemoveCall(
                source=source,
                headers=self._call_headers(extra_headers),
                fields=remove_options.form_fields(),
                target=target,
                then=output_path.then if isinstance(output_path, KeptTarget) else None,
                return_base64=return_base64,
                return_bytes=return_bytes,
                on_upload=on_upload_progress,
                on_download=on_download_progress,
                timeout=as_timeout(timeout) or self._timeout,
            )
            self._open()
            policy = retry or self._retry
            result = await policy.run(lambda attempt: self._remove_once(call, attempt))
        finally:
            source.close()
        if remote is not None:
            assert isinstance(result, ImageFile)
            store = self._stores.store(remote.url, storage_options)
            return await put_result(store, result, remote)
        return result

    async def _remove_once(
        self, call: _RemoveCall, attempt: int
    ) -> ImageFile | Base64Image | ImageBytes:
        result: ImageFile | Base64Image | ImageBytes | None = None
        try:
            async with self._exchange(call, attempt) as (response, download):
                if call.return_base64:
                    result = await receive_base64(response, download)
                elif call.return_bytes:
                    result = await receive_bytes(response, download)
                else:
                    result = await receive_file(response, call.target, download, call.then)
        except BaseException:
            # Cancelled while closing the exchange, after the file was whole: nobody will
            # receive it, so a temporary one must go now.
            discard_temporary(result)
            raise
        assert result is not None
        return result

    @contextlib.asynccontextmanager
    async def _exchange(
        self, call: _RemoveCall, attempt: int
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, ProgressTracker]]:
        """One request of ``call``: its answer once the head says an image follows, with the
        download's tracker. Failures of the transport, in the block too, become ours."""
        session = self._open()
        form = build_form(call.source, call.fields, CHUNK_BYTES)
        upload = self._tracker(call.on_upload, form.size, attempt, upload=True)
        body = UploadBody(form, upload, _read_limit(call.timeout, session))
        async with limited(self._limiter) as outcome:
            with (
                logged_request("POST", self._rmbg_url, attempt, body=form.size) as line,
                _transport_errors(self._rmbg_url),
                body.aborted_on_failure(),
            ):
                async with session.post(
                    self._rmbg_url,
                    data=body,
                    headers=call.headers,
                    allow_redirects=False,
                    **self._proxies[self._rmbg_url],
                    **_timeout_argument(call.timeout),
                ) as response:
                    line.answered(response)
                    await self._raise_for_status(response, outcome)
                    total = body_length(response)
                    yield response, self._tracker(call.on_download, total, attempt, upload=False)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        input_image: ImageInput,
        options: RemoveOptions | Mapping[str, Any] | None = None,
        *,
        size: int | None = None,
        on_upload_progress: ProgressCallback | None = None,
        on_download_progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike | None = None,
        extra_headers: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[StreamedImage]:
        """Remove the background, and hand the cut-out over as it arrives, with no file.

        ``async with client.stream(image) as result:`` then ``result.content_type``,
        ``result.size`` (None when unknown) and ``async for chunk in result.iter_chunks()``.
        Arguments as for `remove` (no base64, no ``output_path``; a remote URL is an input, with
        ``storage_options``). Failures are retried until the
        block is entered (its first bytes are read by then); a failure later is raised to it.
        The connection is held until the block ends: read the image inside it (reading it
        later raises `RuntimeError`; for a web framework's streaming response, see the
        services guide).
        """
        remove_options, return_base64 = resolve_options(options, False)
        if return_base64:
            raise ValueError("stream() hands over the image's bytes: returnBase64 is for remove()")
        remote_inputs = RemoteInputs(stores=self._stores, options=storage_options)
        source = await open_input(remote_inputs, input_image, None, size)
        try:
            call = _RemoveCall(
                source=source,
                headers=self._call_headers(extra_headers),
                fields=remove_options.form_fields(),
                target=None,
                then=None,
                return_base64=False,
                return_bytes=False,
                on_upload=on_upload_progress,
                on_download=on_download_progress,
                timeout=as_timeout(timeout) or self._timeout,
            )
            self._open()
            async with contextlib.AsyncExitStack() as held:
                policy = retry or self._retry
                result = await policy.run(lambda attempt: self._stream_once(call, attempt, held))
                held.callback(end_of_block, result)  # first of the exits: reading stops, clearly
                yield result
        finally:
            source.close()

    async def _stream_once(
        self, call: _RemoveCall, attempt: int, held: contextlib.AsyncExitStack
    ) -> StreamedImage:
        async with contextlib.AsyncExitStack() as stack:
            response, download = await stack.enter_async_context(self._exchange(call, attempt))
            errors = functools.partial(_transport_errors, self._rmbg_url)
            result = await open_streamed(response, download, errors)
            held.push_async_exit(stack.pop_all())  # held open until the caller's block ends
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _tracker(
        self, callback: ProgressCallback | None, total: int | None, attempt: int, *, upload: bool
    ) -> ProgressTracker:
        return ProgressTracker(
            callback, total=total, upload=upload, interval=self._progress_interval, attempt=attempt
        )

    def remove_many(
        self,
        inputs: Iterable[Any] | AsyncIterable[Any],
        options: RemoveOptions | Mapping[str, Any] | None = None,
        *,
        concurrency: int = 8,
        output_dir: str | os.PathLike[str] | None = None,
        root: str | os.PathLike[str] | Callable[[Any], PurePath] | None = None,
        on_progress: BatchProgressCallback | None = None,
        on_item_progress: ItemProgressCallback | None = None,
        skip_existing: bool = False,
        overwrite: bool = False,
        manifest: str | os.PathLike[str] | None = None,
        max_credits: int | None = None,
        budget: CreditBudget | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> BatchRun:
        """Remove many backgrounds, ``concurrency`` at a time, yielding `BatchItem` objects.

        ``inputs`` (any iterable or async iterable, consumed lazily) are what `remove`
        takes; ``options`` too (a dict with ``returnBase64`` gives base64 results). Results go
        to temporary files, or under ``output_dir`` mirroring each input's path relative to
        ``root`` (default: the current folder; a path outside it keeps its whole path), its
        extension changed to the format's. Two listed inputs that would make one file
        (``x.png`` and ``x.jpg``) raise `ValueError` before anything is sent.

        Each output folder keeps an index of what it was made from: ``skip_existing`` skips an
        input whose output was made from it with these options; an output of unknown or other
        provenance fails its item unsent, unless ``overwrite``. ``manifest`` appends one JSON
        line per outcome; ``on_progress`` gets a `BatchProgress` after each item, and
        ``on_item_progress(index, input, event)`` each item's own transfer events.

        ``max_credits`` (or a shared ``budget``) never lets an image start that could take the
        spend past it; the batch then stops with `BudgetExhaustedError`. Errors that
        every image would meet also stop it: see `BatchRun.stopped`.
        Use ``async with client.remove_many(...) as run: async for item in run: ...`` to have
        work in flight cancelled as soon as you stop iterating.

        Inputs, ``output_dir`` and ``manifest`` may be remote URLs (``s3://bucket/out/``), with
        ``storage_options`` for fsspec. A remote ``output_dir`` keeps its provenance in index
        segments under ``.rembg-async-index/``, written every 100 outputs or 10 s and at the
        end, and is listed once at the start (no lock); a remote ``manifest`` is kept in a
        local file and put whole into its store every 10 s and at the end.
        """
        resolved, return_base64 = resolve_options(options, False)
        if return_base64 and output_dir is not None:
            raise ValueError(MSG_BASE64_WITH_OUTPUT_PATH.replace("output_path", "output_dir"))
        if max_credits is not None and budget is not None:
            raise ValueError("give max_credits or budget, not both")
        extension = "jpg" if resolved.output_format == "jpeg" else resolved.output_format
        remote = RemoteInputs(stores=self._stores, options=storage_options)
        outputs = output_folder(remote, output_dir, root, extension, overwrite=overwrite)
        return BatchRun(
            self._remover(storage_options),
            inputs,
            resolved,
            retry=self._retry,
            return_base64=return_base64,
            concurrency=concurrency,
            outputs=outputs,
            on_progress=on_progress,
            on_item_progress=on_item_progress,
            skip_existing=skip_existing,
            manifest=manifest_place(manifest),
            budget=LocalCreditBudget(max_credits) if max_credits is not None else budget,
            remote=remote,
        )

    def _remover(self, storage_options: Mapping[str, Any] | None) -> RemoveOne:
        """`remove` for a batch: the batch's storage_options reach each image's input and put."""
        if storage_options is None:
            return self.remove

        async def remove(input_image: Any, options: RemoveOptions, **more: Any) -> Any:
            return await self.remove(input_image, options, storage_options=storage_options, **more)

        return remove

    async def membership_usage(
        self,
        *,
        year: int | None = None,
        month: int | None = None,
        period_start: int | None = None,
        billing_cycle: bool = False,
    ) -> MembershipUsage:
        """The plan, credits and usage of a UTC month (default: this one) or a billing period.

        ``period_start`` (Unix seconds, from `billing_cycles`) cannot go with
        ``year``/``month``; ``billing_cycle=True`` adds the current (or chosen) window.
        """
        params = usage_params(year, month, period_start)
        if billing_cycle:
            params["expand"] = "billing_cycle"
        return MembershipUsage.from_json(await self._get_usage(params))

    async def billing_cycles(self) -> list[BillingCycleSummary]:
        """Every known billing period, newest first."""
        return billing_cycles_from_json(await self._get_usage({"listBillingCycles": "1"}))

    async def _get_usage(self, params: dict[str, str]) -> dict[str, Any]:
        self._open()
        return await self._retry.run(lambda attempt: self._get_usage_once(params, attempt))

    async def _get_usage_once(self, params: dict[str, str], attempt: int) -> dict[str, Any]:
        session = self._open()
        url = self._usage_url
        # Usage answers come from the account host and cost no credit: /rmbg's limiter (its
        # rate, its slots, its credit budget) is not theirs.
        with logged_request("GET", url, attempt) as line, _transport_errors(url):
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
                body = await read_whole(response, MAX_USAGE_BODY + 1)
        return usage_json(body, MAX_USAGE_BODY)

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
            throttled = isinstance(error, RateLimitError) and self._retry.is_retryable(error)
            outcome.answer = Answer(
                status=error.status,
                headers=error.headers,
                throttled=throttled,
                message=error.message,
            )
        raise error


def _read_limit(timeout: Timeout | None, session: aiohttp.ClientSession) -> float | None:
    """The longest silence allowed: the call's or client's ``read``, else the session's own."""
    return timeout.read if timeout is not None else session.timeout.sock_read


def _timeout_argument(timeout: Timeout | None) -> dict[str, aiohttp.ClientTimeout]:
    """``timeout=`` for aiohttp when one was set, so a user's own session keeps its own."""
    return {} if timeout is None else {"timeout": timeout.to_aiohttp()}


def _check_api_key(api_key: str | None, *, from_env: bool) -> None:
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


def _request_headers(api_key: str | None) -> Mapping[str, str]:
    headers = {"User-Agent": f"rembg-async/{__version__}"}
    if api_key:
        headers[API_KEY_HEADER] = api_key
    return headers


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
