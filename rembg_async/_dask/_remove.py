"""``remove_many_dask``: the arguments checked, the plugin made, the run returned."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any

from distributed import Client

from .._imageinfo import extension_for
from .._inputs import RemoteInputs
from .._options import RemoveOptions, resolve_options
from .._outputs import manifest_place, output_folder
from .._storage._stores import Stores
from ._driver import DaskRun
from ._worker import ClientPlugin


def remove_many_dask(
    dask_client: Client,
    inputs: Iterable[Any] | AsyncIterable[Any],
    options: RemoveOptions | Mapping[str, Any] | None = None,
    *,
    output_dir: str | os.PathLike[str],
    root: str | os.PathLike[str] | Callable[[Any], PurePath] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    concurrency_per_worker: int = 16,
    client_options: Mapping[str, Any] | None = None,
    redis_url: str | None = None,
    limiter_options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> DaskRun:
    """Remove many backgrounds on a Dask cluster; ``async for item in run`` on the driver.

    ``dask_client`` is an asynchronous ``distributed.Client``. Each worker gets one
    `AsyncRembg` (made with ``client_options``: ``api_key``, ``base_url``, ``timeout``,
    ``cache`` (a folder or URL every worker reaches: items it serves say ``cached``), …;
    closed when the run ends) and runs at most ``concurrency_per_worker`` images at once;
    inputs (paths, URLs or bytes every worker can reach) are submitted lazily, and results go
    under ``output_dir`` (a folder every worker can write) mirroring their paths relative to
    ``root``, as with `AsyncRembg.remove_many`. Items come back in completion order.
    ``output_dir`` and ``manifest`` may be remote URLs (``s3://bucket/out/``), reached with
    ``storage_options`` (default: ``client_options["storage_options"]``, which the workers
    use). ``manifest`` gets one JSON line per input, written by the driver alone; a run given
    the manifest of an earlier one skips what it made. ``redis_url`` (and ``limiter_options``,
    such as ``max_credits``) gives every worker a `rembg_async.redis.RedisLimiter`: one rate,
    stop and budget for the whole cluster. A daily limit, a refused key or a spent budget
    stops the run from submitting more.
    """
    if not getattr(dask_client, "asynchronous", False):
        raise ValueError(
            "remove_many_dask needs an asynchronous client: Client(..., asynchronous=True)"
        )
    if concurrency_per_worker < 1:
        raise ValueError("concurrency_per_worker must be at least 1")
    resolved, return_base64 = resolve_options(options, False)
    if return_base64:
        raise ValueError("remove_many_dask writes files under output_dir: no base64")
    extension = extension_for(resolved.output_format)
    if storage_options is None:
        storage_options = (client_options or {}).get("storage_options")
    remote = RemoteInputs(stores=Stores(storage_options))
    folder = os.fspath(output_dir)
    outputs = output_folder(remote, folder, root, extension, overwrite=True)
    assert outputs is not None
    plugin = ClientPlugin(
        client_options or {}, concurrency_per_worker, redis_url, limiter_options or {}
    )
    return DaskRun(
        dask_client,
        inputs,
        resolved,
        outputs=outputs,
        manifest=manifest_place(manifest),
        remote=remote,
        plugin=plugin,
        concurrency_per_worker=concurrency_per_worker,
    )
