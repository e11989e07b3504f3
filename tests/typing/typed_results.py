"""The types of results, options, callbacks and adapters; `mypy --strict` and pyright strict.

Each ``assert_type`` states what a checker must infer. Each line that must be *rejected* carries
both checkers' ignore comments: mypy (``warn_unused_ignores``) and pyright
(``reportUnnecessaryTypeIgnoreComment``) fail the run if that line were accepted.
Not collected by pytest, and never run: a type-checking test.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from rich.progress import Progress
from tqdm import tqdm
from typing_extensions import assert_type

from rembg_async import (
    AsyncRembg,
    Base64Image,
    BatchProgress,
    FolderCache,
    FsspecCache,
    ImageBytes,
    ImageFile,
    ProgressEvent,
    Rembg,
    RemoveOptions,
    ResultCache,
    SyncBatchItem,
    SyncImageFile,
    rembg,
    rembg_sync,
    rich_progress,
    tqdm_progress,
)


async def results_follow_the_options(
    client: AsyncRembg, flag: bool, dynamic: dict[str, Any]
) -> None:
    """remove(): ImageFile, Base64Image, or the union when only the run time knows."""
    assert_type(await client.remove("cat.jpg"), ImageFile)
    assert_type(await client.remove("cat.jpg", RemoveOptions(format="png")), ImageFile)
    assert_type(await client.remove("cat.jpg", {"format": "png", "returnMask": True}), ImageFile)
    assert_type(await client.remove("cat.jpg", {"returnBase64": False}), ImageFile)
    assert_type(await client.remove("cat.jpg", {"returnBase64": True}), Base64Image)
    assert_type(await client.remove("cat.jpg", {"returnBase64": True, "w": 80}), Base64Image)
    assert_type(await client.remove("cat.jpg", return_base64=True), Base64Image)
    assert_type(await client.remove("cat.jpg", RemoveOptions(), return_base64=True), Base64Image)
    assert_type(await client.remove("cat.jpg", return_base64=flag), ImageFile | Base64Image)
    assert_type(await client.remove("cat.jpg", dynamic), ImageFile | Base64Image)
    assert_type(await client.remove("cat.jpg", output_path="out/cat.png"), ImageFile)


async def rembg_follows_the_options(dynamic: dict[str, Any]) -> None:
    """rembg(): the same rules as remove()."""
    assert_type(await rembg(input_image="cat.jpg"), ImageFile)
    assert_type(await rembg(input_image="cat.jpg", options={"format": "png"}), ImageFile)
    assert_type(await rembg(input_image="cat.jpg", options=RemoveOptions(w=8)), ImageFile)
    assert_type(
        await rembg(api_key="k", input_image=b"...", options={"returnBase64": True}), Base64Image
    )
    assert_type(await rembg(input_image="cat.jpg", options=dynamic), ImageFile | Base64Image)


def an_unknown_format_is_rejected() -> None:
    """RemoveOptions's format is checked statically (a dict's only at run time)."""
    RemoveOptions(format="gif")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def callbacks_may_return_anything(client: AsyncRembg, bar: tqdm[Any]) -> None:
    """A sync callback's value is ignored: lambdas calling methods that return values fit."""
    client.remove("cat.jpg", on_upload_progress=lambda e: bar.update(e.bytes)).close()
    client.remove("cat.jpg", on_download_progress=lambda e: e.loaded).close()

    def on_batch(progress: BatchProgress) -> bool:
        return progress.finished > 0

    client.remove_many(["a.jpg"], on_progress=on_batch, on_item_progress=lambda i, x, e: i)


def format_is_a_literal() -> None:
    """The format field reads back as the literal type (None: not given)."""
    options = RemoveOptions(format="jpg")
    fmt = options.format
    assert_type(fmt, Literal["png", "jpeg", "jpg", "webp", "bmp"] | None)


def adapters_are_typed(progress: Progress, bar: tqdm[Any], event: ProgressEvent) -> None:
    """The adapters take real rich and tqdm objects, and refuse what is not one."""
    task = progress.add_task("cat.jpg", total=None)
    rich_progress(progress, task)(event)
    tqdm_progress(bar)(event)
    rich_progress(progress, "cat.jpg")  # type: ignore[misc]  # pyright: ignore[reportArgumentType]
    tqdm_progress(object())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def sync_results_clean_up_without_await(client: Rembg, dynamic: dict[str, Any]) -> None:
    """The sync client's files: SyncImageFile, whose cleanup() is a plain call."""
    result = client.remove("cat.jpg")
    assert_type(result, SyncImageFile)
    result.cleanup()
    assert_type(client.remove("cat.jpg", output_path="cut.png"), SyncImageFile)
    assert_type(client.remove("cat.jpg", return_base64=True), Base64Image)
    assert_type(client.remove("cat.jpg", {"returnBase64": True}), Base64Image)
    assert_type(client.remove("cat.jpg", return_bytes=True), ImageBytes)
    assert_type(client.remove("cat.jpg", dynamic), SyncImageFile | Base64Image)
    one = rembg_sync(input_image="cat.jpg")
    assert_type(one, SyncImageFile)
    one.cleanup()
    assert_type(rembg_sync(input_image="cat.jpg", options={"returnBase64": True}), Base64Image)
    for item in client.remove_many(["a.jpg"]):
        assert_type(item, SyncBatchItem)
        if isinstance(item.result, SyncImageFile):
            item.result.cleanup()
    kept: ImageFile = client.remove("cat.jpg")  # still an ImageFile: close(), with, paths
    kept.close()


async def sync_results_are_not_awaited(client: Rembg) -> None:
    """Awaiting a sync result's cleanup() is flagged: it returns None, there is nothing to wait."""
    result = client.remove("cat.jpg")
    await result.cleanup()  # type: ignore[func-returns-value,misc]  # pyright: ignore[reportGeneralTypeIssues]


async def async_results_are_awaited(client: AsyncRembg) -> None:
    """The async client's cleanup() without await is flagged: the file would stay."""
    result = await client.remove("cat.jpg")
    result.cleanup()  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]
    await result.cleanup()


class DictCache:
    """A user's cache: any class with the two methods is a ResultCache."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.entries.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.entries[key] = value


async def caches_and_cached_results() -> None:
    """cache= takes a folder, a URL, a FolderCache, an FsspecCache or a user's ResultCache;
    every result says whether it was cached."""
    mine: ResultCache = DictCache()
    for cache in ("cache/", Path("cache"), FolderCache("cache", max_bytes=10**9, max_age=3600),
                  FsspecCache("memory://c", max_age=timedelta(days=30)), mine, None):  # fmt: skip
        async with AsyncRembg(cache=cache) as client:
            assert_type((await client.remove("cat.jpg")).cached, bool)
            assert_type((await client.remove("cat.jpg", return_bytes=True)).cached, bool)
            async with client.stream("cat.jpg") as streamed:
                assert_type(streamed.cached, bool)
    with Rembg(cache="cache/") as sync_client:
        assert_type(sync_client.remove("cat.jpg").cached, bool)
    assert_type((await rembg(input_image="cat.jpg", cache=mine)).cached, bool)
    AsyncRembg(cache=42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
