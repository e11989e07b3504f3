"""AsyncRembg: configuration, lifecycle and the public methods; calls go through `_exchange`."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Final, Literal, overload

import aiohttp
import attrs

from ._batch import BatchProgressCallback, BatchRun, ItemProgressCallback
from ._budget import CreditBudget, LocalCreditBudget
from ._cache import CacheLike, CacheSeam, FsspecCache, ResultCache, as_cache
from ._closing import AsyncClosing
from ._exchange import Call, Exchange, check_api_key
from ._imageinfo import extension_for
from ._inputs import ImageInput, RemoteInputs, open_input
from ._limits import AdaptiveLimiter, Limiter, RateLimitState
from ._options import Base64Options, ImageFileOptions, RemoveOptions, resolve_options
from ._outputs import manifest_place, output_folder
from ._paths import format_for_output
from ._progress import DEFAULT_INTERVAL, ProgressCallback
from ._results import Base64Image, ImageBytes, ImageFile
from ._retry import RetryPolicy
from ._storage._sinks import RemoteTarget
from ._storage._stores import Stores, is_remote
from ._stream_output import StreamedImage
from ._timeouts import Timeout, TimeoutLike, as_timeout
from ._urls import checked_url, proxy_arguments
from ._usage import (
    BillingCycleSummary,
    MembershipUsage,
    billing_cycles_from_json,
    usage_json,
    usage_params,
)

logger = logging.getLogger("rembg_async")

API_BASE_URL: Final = "https://api.rembg.com"
ACCOUNT_BASE_URL: Final = "https://www.rembg.com"
MSG_BASE64_WITH_OUTPUT_PATH: Final = "return_base64 and output_path exclude each other"
#: A usage answer is a few hundred bytes; a list of billing cycles, a few per month of history.
MAX_USAGE_BODY: Final = 4 * 1024 * 1024


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

    ``cache`` keeps results, so that the same image with the same options is paid once: a
    folder (a `FolderCache`), an fsspec URL (an `FsspecCache`, with ``storage_options``), or
    any `ResultCache`; None (the default) keeps nothing. A hit sends nothing and takes no
    permit of the limiter; its result says ``cached=True``. Identical calls made at once
    send one request, the others wait for its answer. The key is the input's bytes (read
    once to digest them), the options and the API's URL.
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
        cache: CacheLike = None,
    ) -> None:
        self._stores = Stores(storage_options)  # remote inputs and outputs' filesystems
        self._api_key = api_key if api_key is not None else os.environ.get("REMBG_API_KEY") or None
        check_api_key(self._api_key, from_env=api_key is None)
        shared = base_url or os.environ.get("REMBG_BASE_URL")
        self._api_url = checked_url(shared or API_BASE_URL, allow_insecure_http)
        account_url = checked_url(
            account_base_url or shared or ACCOUNT_BASE_URL, allow_insecure_http
        )
        self._usage_url = account_url / "api" / "membership-usage"
        retry = retry or RetryPolicy(max_retries=max_retries)
        if limiter is not None and (requests_per_second or max_concurrency):
            raise ValueError("pass requests_per_second and max_concurrency to your limiter")
        # A limiter kept per API key (shared through Redis) gives each client its key's own.
        for_api_key = getattr(limiter, "for_api_key", None)
        owns_limiter = limiter is None or for_api_key is not None
        limiter = limiter or AdaptiveLimiter(
            requests_per_second=requests_per_second,
            max_concurrency=max_concurrency,
            adaptive=adaptive_rate_limit,
            max_hold=retry.max_retry_after,
        )
        rmbg_url = self._api_url / "rmbg"
        self._cache = as_cache(cache, storage_options)
        # A store made here from a URL is ours to close; a cache passed in is its owner's.
        self._owns_cache = isinstance(cache, str) and isinstance(self._cache, FsspecCache)
        self._exchange = Exchange(
            session=session,
            url=rmbg_url,
            # Read now, like httpx: what a request needs to reach each host through a proxy.
            proxies={
                url: proxy_arguments(url) if trust_env and session is None else {}
                for url in (rmbg_url, self._usage_url)
            },
            limiter=for_api_key(self._api_key) if for_api_key is not None else limiter,
            owns_limiter=owns_limiter,
            retry=retry,
            timeout=as_timeout(timeout),  # None: the session's own (ours: Timeout()'s defaults)
            api_key=self._api_key,
            extra_headers=extra_headers,
            progress_interval=progress_interval,
            stores=self._stores,
            cache=CacheSeam(self._cache, rmbg_url) if self._cache is not None else None,
        )
        if self._api_key is None:
            logger.warning("no RemBG API key given: calls are anonymous, with a small daily limit")

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none (anonymous)"
        return f"<AsyncRembg {self._exchange.state} api={self._api_url} api_key={key}>"

    async def __aenter__(self) -> AsyncRembg:
        self._exchange.open()
        return self

    async def _close_on_exit(self) -> None:
        await self.aclose()

    @property
    def cache(self) -> ResultCache | None:
        """The client's result cache (what ``cache=`` became), or None when it keeps none."""
        return self._cache

    @property
    def limiter(self) -> Limiter:
        """The limiter every request of this client goes through."""
        return self._exchange.limiter

    @property
    def rate_limit(self) -> RateLimitState:
        """The limiter's state: the rate in force (learned or set) and the 429s seen."""
        return self._exchange.limiter.state

    async def aclose(self) -> None:
        """Close the client (and its session and limiter, if it made them). Safe to call twice."""
        await self._exchange.aclose()
        await self._stores.aclose()
        if self._owns_cache and isinstance(self._cache, FsspecCache):
            await self._cache.aclose()

    def __del__(self) -> None:
        exchange = getattr(self, "_exchange", None)  # None: __init__ failed before making it
        if exchange is not None and exchange.state == "opened" and exchange.owns_session:
            warnings.warn(
                "AsyncRembg was never closed: use 'async with' or 'await client.aclose()'",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

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
            raise ValueError("return_bytes excludes return_base64 and output_path")
        output: Path | RemoteTarget | None = None
        if output_path is not None:
            if isinstance(output_path, str) and is_remote(output_path):
                output = RemoteTarget(url=output_path)
            else:
                output = Path(output_path)  # a TypeError for anything else
            named = PurePosixPath(output.url) if isinstance(output, RemoteTarget) else output
            chosen = format_for_output(named, remove_options.format)
            if chosen != remove_options.format:
                remove_options = attrs.evolve(remove_options, format=chosen)
        remote = RemoteInputs(stores=self._stores, options=storage_options)
        target = output if isinstance(output, Path) else None  # the input must not be it
        call = Call(
            source=await open_input(input_image, size=size, target=target, remote=remote),
            fields=remove_options.form_fields(),
            output=output,
            returns="base64" if return_base64 else "bytes" if return_bytes else "file",
            on_upload=on_upload_progress,
            on_download=on_download_progress,
            extra_headers=extra_headers,
            timeout=as_timeout(timeout),
        )
        return await self._exchange.send(call, retry, storage_options=storage_options)

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
        services guide). With a ``cache``, a hit is handed over the same way
        (``result.cached``), and a miss is stored once the block has read it whole.
        """
        remove_options, return_base64 = resolve_options(options, False)
        if return_base64:
            raise ValueError("stream() hands over the image's bytes: returnBase64 is for remove()")
        remote = RemoteInputs(stores=self._stores, options=storage_options)
        call = Call(
            source=await open_input(input_image, size=size, remote=remote),
            fields=remove_options.form_fields(),
            on_upload=on_upload_progress,
            on_download=on_download_progress,
            extra_headers=extra_headers,
            timeout=as_timeout(timeout),
        )
        async with self._exchange.stream(call, retry) as result:
            yield result

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
        segments under each folder's ``.rembg-async-index/``, written every 100 outputs or
        10 s and at the end, and each folder is listed when the batch first needs it (no
        lock); a remote ``manifest`` is kept in a local file and put whole into its store
        every 10 s and at the end. What the batch knows of each output folder is kept while
        it works there, then let go: memory stays flat however many inputs there are.
        """
        resolved, return_base64 = resolve_options(options, False)
        if return_base64 and output_dir is not None:
            raise ValueError(MSG_BASE64_WITH_OUTPUT_PATH.replace("output_path", "output_dir"))
        if max_credits is not None and budget is not None:
            raise ValueError("give max_credits or budget, not both")
        extension = extension_for(resolved.output_format)
        remote = RemoteInputs(stores=self._stores, options=storage_options)
        outputs = output_folder(remote, output_dir, root, extension, overwrite=overwrite)
        return BatchRun(
            functools.partial(self._exchange.send, storage_options=storage_options),
            inputs,
            resolved,
            retry=self._exchange.retry,
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
        body = await self._exchange.get(self._usage_url, params, MAX_USAGE_BODY + 1)
        return usage_json(body, MAX_USAGE_BODY)
