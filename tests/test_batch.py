"""remove_many: bounded, lazy, resumable, never stopped by one bad item."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image

from rembg_async import (
    AsyncRembg,
    BatchItem,
    BatchProgress,
    RateLimitError,
    RemoveOptions,
    RetryPolicy,
    failed_inputs,
)
from rembg_async._batch import BatchRun
from rembg_async._batch._run import READ_AHEAD
from rembg_async._exchange import Call
from rembg_async._files import _FILE_THREADS
from rembg_async.server import LocalServer, RateLimits, ServerConfig

SMALL = make_image((24, 18))


def write_inputs(folder: Path, count: int, *, bad_every: int = 0) -> list[Path]:
    """``count`` image files; every ``bad_every``-th is broken in a rotating way."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        broken = bad_every and number % bad_every == 0
        kind = number // bad_every % 3 if broken else -1
        content = {0: b"", 1: b"not an image at all", 2: make_image((12001, 1))}.get(kind, SMALL)
        path = folder / f"img-{number:04d}.png"
        path.write_bytes(content)
        paths.append(path)
    return paths


def manifest_lines(path: Path) -> list[dict[str, object]]:
    """The manifest's entries."""
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_five_hundred_images_every_outcome_recorded_and_rerun(
    flaky_server: LocalServer, tmp_path: Path
) -> None:
    """500 inputs, some bad, through faults: one manifest line each; a re-run does only failures."""
    inputs = write_inputs(tmp_path / "in", 500, bad_every=25)
    inputs.append(tmp_path / "in" / "missing.png")  # a path that does not exist
    out, manifest = tmp_path / "out", tmp_path / "manifest.jsonl"
    policy = RetryPolicy(max_retries=0)  # let the faults through as failures
    progress: list[BatchProgress] = []
    async with AsyncRembg(flaky_server.api_key, base_url=flaky_server.url, retry=policy) as client:
        items = [
            item
            async for item in client.remove_many(
                inputs,
                concurrency=16,
                output_dir=out,
                root=tmp_path / "in",
                manifest=manifest,
                on_progress=progress.append,
            )
        ]
    lines = manifest_lines(manifest)
    assert len(items) == len(lines) == len(inputs)
    assert sorted(line["input"] for line in lines) == sorted(str(path) for path in inputs)
    failed = {line["input"] for line in lines if line["status"] == "failed"}
    assert len(failed) >= 21  # 20 bad files + the missing one, plus whatever the faults broke
    assert all(line["error"] for line in lines if line["status"] == "failed")
    assert {path.name for path in out.iterdir() if not path.name.startswith(".")} == {
        Path(str(line["output"])).name for line in lines if line["status"] == "ok"
    }
    assert progress[-1].finished == len(inputs)
    assert progress[-1].bytes_up > 0

    # The re-run: what was made is skipped; only the failures are attempted again.
    async with AsyncRembg(flaky_server.api_key, base_url=flaky_server.url, retry=policy) as client:
        rerun = [
            item
            async for item in client.remove_many(
                inputs, concurrency=16, output_dir=out, root=tmp_path / "in", skip_existing=True
            )
        ]
    attempted = {str(item.input) for item in rerun if not item.skipped}
    assert attempted == failed
    assert set(failed_inputs(manifest)) == failed


@pytest.mark.parametrize("into_a_folder", [True, False])
async def test_local_inputs_are_read_ahead_several_per_thread_call(
    rembg_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, into_a_folder: bool
) -> None:
    """A thread hop costs more than a small image's HTTP exchange: the batch reads its inputs
    ahead of their turn, in groups that share a hand-over to the file threads."""
    inputs = []
    for number in range(48):
        inputs.append(tmp_path / "in" / f"image-{number}.png")
        inputs[-1].parent.mkdir(exist_ok=True)
        inputs[-1].write_bytes(make_image((20 + number % 5, 16)))
    reads_per_hand_over: list[int] = []
    hand_over = _FILE_THREADS._hand_over

    def reads_in(call: Any) -> int:
        """The inputs a thread call reads: a group's planning reads each of its own."""
        name = call[0].__name__
        if name == "_inspect_all":
            return len(call[1][0])
        return int(name in ("_inspect", "read_local_or_none"))

    def counted(loop: asyncio.AbstractEventLoop) -> None:
        calls = _FILE_THREADS._this_turn.get(loop, [])
        reads = sum(reads_in(call) for call in calls)
        if reads:
            reads_per_hand_over.append(reads)
        hand_over(loop)

    monkeypatch.setattr(_FILE_THREADS, "_hand_over", counted)
    output_dir = tmp_path / "out" if into_a_folder else None
    async with (
        AsyncRembg(rembg_server.api_key, base_url=rembg_server.url) as client,
        client.remove_many(inputs, concurrency=8, output_dir=output_dir) as run,
    ):
        items = [item async for item in run]
        for item in items:
            assert item.result is not None
            if output_dir is None:
                await item.result.cleanup()  # type: ignore[union-attr]
    assert sum(reads_per_hand_over) == len(inputs)  # each input read once, by the batch
    assert len(reads_per_hand_over) <= len(inputs) / 3


async def test_inputs_are_pulled_lazily_and_cancelling_stops_everything(
    rembg_server: LocalServer, private_tmp: Path
) -> None:
    """An endless generator is pulled at most `concurrency` plus the read-ahead in front of the
    work; cancelling leaves nothing."""
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        for _ in itertools.count():
            pulled += 1
            yield SMALL

    seen = 0
    tasks_before = asyncio.all_tasks() - {asyncio.current_task()}
    async with AsyncRembg(rembg_server.api_key, base_url=rembg_server.url) as client:

        async def consume() -> None:
            nonlocal seen
            async with client.remove_many(endless(), concurrency=4) as run:
                async for item in run:
                    seen += 1
                    assert item.ok
                    await item.result.cleanup()  # type: ignore[union-attr]

        task = asyncio.create_task(consume())
        while seen < 40:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert pulled <= seen + 4 + min(4, READ_AHEAD) + 1  # never more than that ahead
    await asyncio.sleep(0.05)
    assert list(private_tmp.iterdir()) == []  # work in flight was cancelled and cleaned
    assert asyncio.all_tasks() - {asyncio.current_task()} <= tasks_before


async def test_async_iterable_inputs(api: AsyncRembg) -> None:
    """Inputs may come from an async generator."""

    async def produce() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield SMALL

    items = [item async for item in api.remove_many(produce(), concurrency=2)]
    assert len(items) == 5
    for item in items:
        await item.result.cleanup()  # type: ignore[union-attr]


async def test_daily_limit_stops_new_work(rembg_server_factory) -> None:
    """After a daily 429, no new input is started; the rest stays in `remaining`."""
    server = rembg_server_factory(ServerConfig(rate_limits=RateLimits(daily_anonymous=3)))
    async with AsyncRembg(None, base_url=server.url, retry=RetryPolicy(max_retries=0)) as client:
        run = client.remove_many([SMALL] * 20, concurrency=1)
        items = [item async for item in run]
        remaining = [value async for value in run.remaining]
    assert [item.status for item in items] == ["ok", "ok", "ok", "failed"]
    assert isinstance(run.stopped, RateLimitError)
    assert run.stopped.scope == "daily"
    assert len(remaining) == 16
    for item in items[:3]:
        await item.result.cleanup()  # type: ignore[union-attr]


async def test_same_names_mirror_their_folders(api: AsyncRembg, tmp_path: Path) -> None:
    """a/cat.png and b/cat.png become out/a/cat.jpg and out/b/cat.jpg, whatever the order."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "cat.png").write_bytes(SMALL)
    inputs = [tmp_path / "b" / "cat.png", tmp_path / "a" / "cat.png"]
    out = tmp_path / "out"
    items = [
        item
        async for item in api.remove_many(
            inputs, RemoveOptions(format="jpeg"), output_dir=out, root=tmp_path
        )
    ]
    assert all(item.ok for item in items)
    assert {item.input: item.output_path for item in items} == {
        tmp_path / "a" / "cat.png": out / "a" / "cat.jpg",
        tmp_path / "b" / "cat.png": out / "b" / "cat.jpg",
    }


async def test_item_failure_is_recorded_not_raised(api: AsyncRembg) -> None:
    """A bad input is an item with its error; the others still succeed."""
    items: list[BatchItem] = [
        item async for item in api.remove_many([b"", SMALL, 42], concurrency=3)
    ]
    by_index = {item.index: item for item in items}
    assert by_index[1].ok
    assert not by_index[0].ok
    assert "empty" in str(by_index[0].error)
    assert isinstance(by_index[2].error, TypeError)
    await by_index[1].result.cleanup()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"concurrency": 0}, "concurrency"), ({"skip_existing": True}, "output_dir")],
)
def test_bad_arguments(api: AsyncRembg, kwargs: dict[str, object], message: str) -> None:
    """Nonsense settings are refused at once."""
    with pytest.raises(ValueError, match=message):
        api.remove_many([SMALL], **kwargs)  # type: ignore[arg-type]


async def test_a_batch_never_goes_through_the_public_remove(
    api: AsyncRembg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch sends its calls through the client's exchange: the public remove() is not used,
    for a path, bytes or an output folder alike."""

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the batch called the public remove()")

    monkeypatch.setattr(api, "remove", refused)
    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    path.write_bytes(SMALL)
    for output_dir in (None, tmp_path / "out"):
        items = [item async for item in api.remove_many([path, SMALL], output_dir=output_dir)]
        assert [item.error for item in items] == [None, None]
        if output_dir is None:  # temporary results
            for item in items:
                await item.result.cleanup()  # type: ignore[union-attr]


async def test_images_read_ahead_are_not_lost_when_a_batch_is_left() -> None:
    """Cancelled while the first image is being sent: the images read ahead of their turn were
    never started, and `remaining` still yields them, in order."""
    sending = asyncio.Event()
    images = [SMALL + bytes([number]) for number in range(20)]  # one PNG, told apart

    async def send(call: Call, retry: RetryPolicy) -> Any:
        sending.set()
        await asyncio.Event().wait()  # never answers

    run = BatchRun(
        send,
        images,
        RemoveOptions(),
        retry=RetryPolicy(max_retries=0),
        concurrency=8,
        outputs=None,
        on_progress=None,
        on_item_progress=None,
        skip_existing=False,
        manifest=None,
        budget=None,
    )
    consumer = asyncio.ensure_future(run.__anext__())
    await sending.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    await run.aclose()
    assert [value async for value in run.remaining] == images[1:]
