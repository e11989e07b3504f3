"""Batches never misdirect work and never pay for nothing: mirrored outputs that know their
provenance, stops on failures every image would meet, a credit budget."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image
from PIL import Image

from rembg_async import (
    AsyncRembg,
    AuthenticationError,
    BatchItem,
    BudgetExhaustedError,
    RemoveOptions,
    RetryPolicy,
    failed_inputs,
)
from rembg_async.server import Account, Fault, LocalServer, RateLimits, ServerConfig

NO_WAIT = RetryPolicy(max_retries=2, wait=False)
#: Nested folders with repeated names; each image has a size of its own, to tell outputs apart.
TREE = ["img.png", "a/img.png", "b/img.png", "a/deep/img.png", "b/img2.jpg", "a/cat.png"]


def make_tree(root: Path, names: list[str] = TREE) -> dict[Path, tuple[int, int]]:
    """The tree's files under ``root``; their sizes, each different."""
    sizes = {}
    for number, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (20 + number, 14 + number)
        path.write_bytes(make_image(size, "JPEG" if name.endswith(".jpg") else "PNG"))
        sizes[path] = size
    return sizes


def size_of(path: Path) -> tuple[int, int]:
    """An image file's size in pixels."""
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return image.size


def outputs(folder: Path) -> set[Path]:
    """The image files under ``folder`` (not the indexes)."""
    return {path for path in folder.rglob("*") if path.is_file() and path.suffix == ".webp"}


async def used(client: AsyncRembg) -> int:
    """Credits the account has used, from the server's usage endpoint."""
    return (await client.membership_usage()).api_usage


async def collect(run: Any) -> list[BatchItem]:
    """Every item of a batch."""
    return [item async for item in run]


@pytest.fixture
async def client(rembg_server_factory: Any) -> AsyncIterator[AsyncRembg]:
    """A client of a fresh server (its own credit count) with faults enabled."""
    config = ServerConfig(
        accounts=[Account(api_key="key", credits=10**6)],
        rate_limits=RateLimits(short_term_requests=0),
        faults=True,
    )
    server = rembg_server_factory(config)
    async with AsyncRembg("key", base_url=server.url, retry=NO_WAIT) as api:
        api.server = server  # type: ignore[attr-defined]
        yield api


async def test_outputs_mirror_the_tree_and_resume_on_subfolders(
    client: AsyncRembg, tmp_path: Path
) -> None:
    """Whole tree, then sub-folders with any -o: each input gets its own output, paid once."""
    tree, out = tmp_path / "tree", tmp_path / "out"
    sizes = make_tree(tree)
    first = await collect(client.remove_many(sorted(sizes), output_dir=out, root=tree))
    assert all(item.status == "ok" for item in first)
    for path, size in sizes.items():
        mine = out / path.relative_to(tree).with_suffix(".webp")
        assert size_of(mine) == size
    assert len(outputs(out)) == len(sizes)

    # The sub-folder, into its own part of the output tree: all done, nothing sent.
    sub = sorted(path for path in sizes if path.is_relative_to(tree / "a"))
    again = await collect(
        client.remove_many(sub, output_dir=out / "a", root=tree / "a", skip_existing=True)
    )
    assert {item.status for item in again} == {"skipped"}
    # The sub-folder into the top of the output tree: those names belong to other inputs.
    wrong = await collect(
        client.remove_many(sub, output_dir=out, root=tree / "a", skip_existing=True)
    )
    by_input = {item.input: item for item in wrong}
    assert by_input[tree / "a" / "img.png"].status == "failed"  # out/img.webp is tree/img.png's
    assert "not made from this input" in str(by_input[tree / "a" / "img.png"].error)
    assert size_of(out / "img.webp") == sizes[tree / "img.png"]  # not overwritten
    assert await used(client) == len(sizes) + 2  # a/cat.png and a/deep/img.png were new there


async def test_failed_inputs_fed_back_redo_only_the_failures(
    client: AsyncRembg, tmp_path: Path
) -> None:
    """Failures (a 500 with no retries) fed back through failed_inputs land in their own place."""
    tree, out, manifest = tmp_path / "tree", tmp_path / "out", tmp_path / "m.jsonl"
    sizes = make_tree(tree)
    client.server.faults.push(Fault(status=500), times=3)  # type: ignore[attr-defined]
    run = client.remove_many(
        sorted(sizes), output_dir=out, root=tree, manifest=manifest, concurrency=1
    )
    items = await collect(run)
    failed = failed_inputs(manifest)
    assert 1 <= len(failed) == sum(not item.ok for item in items)
    await collect(client.remove_many(sorted(sizes), output_dir=out, root=tree, skip_existing=True))
    redo = await collect(
        client.remove_many(failed, output_dir=out, root=tree, skip_existing=True, manifest=manifest)
    )
    assert {item.status for item in redo} == {"skipped"}  # the whole-tree re-run made them
    for path, size in sizes.items():
        assert size_of(out / path.relative_to(tree).with_suffix(".webp")) == size
    assert failed_inputs(manifest) == []
    assert await used(client) == len(sizes)  # a 500 costs nothing; nothing was made twice


async def test_foreign_output_is_never_done_nor_overwritten(
    client: AsyncRembg, tmp_path: Path
) -> None:
    """An output this input did not make is refused unsent; overwrite=True replaces it."""
    (tmp_path / "cat.png").write_bytes(make_image((30, 20)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "cat.webp").write_bytes(b"someone else's file")
    inputs = [tmp_path / "cat.png"]
    for skip in (True, False):
        [item] = await collect(
            client.remove_many(inputs, output_dir=out, root=tmp_path, skip_existing=skip)
        )
        assert isinstance(item.error, FileExistsError)
        assert "--overwrite" in str(item.error)
    assert (out / "cat.webp").read_bytes() == b"someone else's file"
    assert await used(client) == 0
    [item] = await collect(
        client.remove_many(inputs, output_dir=out, root=tmp_path, overwrite=True)
    )
    assert item.ok
    assert size_of(out / "cat.webp") == (30, 20)


async def test_changed_input_or_options_are_made_again(client: AsyncRembg, tmp_path: Path) -> None:
    """Done means: this input, unchanged, with these options; otherwise it is made again."""
    source, out = tmp_path / "cat.png", tmp_path / "out"
    source.write_bytes(make_image((30, 20)))
    run_args: dict[str, Any] = {"output_dir": out, "root": tmp_path, "skip_existing": True}
    statuses = []
    for options in (None, None, RemoveOptions(w=15), RemoveOptions(w=15)):
        [item] = await collect(client.remove_many([source], options, **run_args))
        statuses.append(item.status)
    source.write_bytes(make_image((40, 20)))
    os.utime(source, ns=(1, 1))  # a different stamp even on a coarse clock
    [item] = await collect(client.remove_many([source], RemoveOptions(w=15), **run_args))
    statuses.append(item.status)
    assert statuses == ["ok", "skipped", "ok", "skipped", "ok"]
    assert size_of(out / "cat.webp") == (15, 8)


async def test_clashing_names_are_refused_up_front(client: AsyncRembg, tmp_path: Path) -> None:
    """x.png and x.jpg would both make x.webp: refused before anything is sent, not numbered."""
    (tmp_path / "x.png").write_bytes(make_image((20, 20)))
    (tmp_path / "x.jpg").write_bytes(make_image((20, 20), "JPEG"))
    inputs = [tmp_path / "x.png", tmp_path / "x.jpg"]
    with pytest.raises(ValueError, match="would both make"):
        client.remove_many(inputs, output_dir=tmp_path / "out", root=tmp_path)

    async def lazily() -> AsyncIterator[Path]:
        for path in inputs:
            yield path

    items = await collect(
        client.remove_many(lazily(), output_dir=tmp_path / "out", root=tmp_path, concurrency=1)
    )
    items.sort(key=lambda item: item.index)  # they come in completion order
    assert [item.status for item in items] == ["ok", "failed"]
    assert "would both make" in str(items[1].error)
    assert await used(client) == 1


async def test_dict_options_and_real_attempts(client: AsyncRembg, tmp_path: Path) -> None:
    """remove_many takes rembg.js option dicts; the manifest's attempts are the real count."""
    manifest = tmp_path / "m.jsonl"
    client.server.faults.push(Fault(status=503))  # type: ignore[attr-defined]
    items = await collect(
        client.remove_many(
            [make_image((20, 10))],
            {"format": "png"},
            output_dir=tmp_path / "out",
            manifest=manifest,
        )
    )
    assert items[0].ok
    assert items[0].output_path.suffix == ".png"  # type: ignore[union-attr]
    assert json.loads(manifest.read_text())["attempts"] == 2
    [b64] = await collect(client.remove_many([make_image((20, 10))], {"returnBase64": True}))
    assert b64.result.base64_image.startswith("data:image/webp;base64,")  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="exclude each other"):
        client.remove_many([b""], {"returnBase64": True}, output_dir=tmp_path)


async def test_unwritable_output_folder_stops_before_any_request(
    client: AsyncRembg, tmp_path: Path
) -> None:
    """An output folder under a file: zero requests, zero credits, every input left."""
    (tmp_path / "file").write_bytes(b"x")
    inputs = [make_image((20, 10))] * 5
    run = client.remove_many(inputs, output_dir=tmp_path / "file" / "out")
    assert await collect(run) == []
    assert isinstance(run.stopped, NotADirectoryError)
    assert "a file is in the way of the folder" in str(run.stopped)
    assert len([value async for value in run.remaining]) == 5
    assert await used(client) == 0


async def test_bad_key_stops_after_one_request(client: AsyncRembg, tmp_path: Path) -> None:
    """A refused key: one request (the first image goes alone), no credit, the rest left."""
    server: LocalServer = client.server  # type: ignore[attr-defined]
    async with AsyncRembg("wrong", base_url=server.url, retry=NO_WAIT) as wrong:
        run = wrong.remove_many([make_image((20, 10))] * 20, concurrency=8)
        items = await collect(run)
    assert len(items) == 1
    assert isinstance(run.stopped, AuthenticationError)
    assert len([value async for value in run.remaining]) == 19
    assert await used(client) == 0


async def test_budget_is_never_passed(client: AsyncRembg, tmp_path: Path) -> None:
    """max_credits=3: exactly three made; refused inputs give their credit back; the rest left."""
    inputs: list[Any] = [b"not an image"] * 2 + [make_image((20, 10 + n)) for n in range(8)]
    run = client.remove_many(inputs, max_credits=3, concurrency=4)
    items = await collect(run)
    assert sum(item.status == "ok" for item in items) == 3
    assert isinstance(run.stopped, BudgetExhaustedError)
    assert len([value async for value in run.remaining]) == 5
    assert run.credits == await used(client) == 3
    for item in items:
        if item.result is not None:
            await item.result.cleanup()  # type: ignore[union-attr]


async def test_budget_counts_a_charged_loss_and_does_not_retry_it(
    client: AsyncRembg, tmp_path: Path
) -> None:
    """A 200 cut short was charged: with a budget it is not retried, and it is counted."""
    client.server.faults.push(Fault(truncate=True))  # type: ignore[attr-defined]
    run = client.remove_many([make_image((200, 100))], max_credits=1)
    [item] = await collect(run)
    assert not item.ok
    assert (item.attempts, item.credits) == (1, 1)
    assert run.credits == await used(client) == 1


async def test_stale_partial_files_are_removed_and_a_second_run_is_refused(
    client: AsyncRembg, tmp_path: Path
) -> None:
    """A run deletes the rembg-….part files a killed run left; two runs cannot share -o."""
    out = tmp_path / "out" / "a"
    out.mkdir(parents=True)
    (out / "rembg-0123456789abcdef.part").write_bytes(b"")
    (out / "keep.part").write_bytes(b"")
    first = client.remove_many([make_image((20, 10))], output_dir=tmp_path / "out")
    await first.__anext__()
    assert sorted(path.name for path in out.iterdir()) == ["keep.part"]
    second = client.remove_many([make_image((20, 10))], output_dir=tmp_path / "out")
    assert await collect(second) == []
    assert "another rembg-async run" in str(second.stopped)
    await first.aclose()


async def test_outputs_under_a_linked_subfolder_are_seen(
    client: AsyncRembg, tmp_path: Path
) -> None:
    """out/sub links elsewhere: a file of someone else's there is still never overwritten,
    and what a run made there is still skipped the next time."""
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    image = source / "sub" / "cat.png"
    image.write_bytes(make_image((30, 20)))
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cat.webp").write_bytes(b"someone else's")
    os.symlink(elsewhere, out / "sub")
    [item] = await collect(client.remove_many([image], output_dir=out, root=source))
    assert isinstance(item.error, FileExistsError)
    assert (elsewhere / "cat.webp").read_bytes() == b"someone else's"
    (elsewhere / "cat.webp").unlink()
    for _ in range(2):
        [item] = await collect(
            client.remove_many([image], output_dir=out, root=source, skip_existing=True)
        )
        assert item.ok
    assert item.skipped
    assert await used(client) == 1


async def test_what_a_run_into_a_subfolder_makes_meanwhile_is_seen(
    client: AsyncRembg, tmp_path: Path
) -> None:
    """Runs into out/ and out/a/ take different locks, so they may overlap: what the inner one
    made while the outer one ran is skipped by the outer one, not paid for again."""
    source = tmp_path / "in"
    (source / "a").mkdir(parents=True)
    names = ["z0.png", "z1.png", "z2.png", "z3.png", "a/cat.png"]
    for number, name in enumerate(names):
        (source / name).write_bytes(make_image((20 + number, 20)))
    out = tmp_path / "out"
    outer = client.remove_many(
        [source / name for name in names],
        output_dir=out,
        root=source,
        skip_existing=True,
        concurrency=1,
    )
    assert (await outer.__anext__()).ok  # the outer run holds out/ by now
    [inner] = await collect(
        client.remove_many(
            [source / "a" / "cat.png"], output_dir=out / "a", root=source / "a", skip_existing=True
        )
    )
    assert inner.ok
    rest = await collect(outer)
    [cat] = [item for item in rest if item.input.name == "cat.png"]
    assert cat.skipped
    assert await used(client) == 5


async def test_a_rerun_plans_its_images_a_group_per_thread_call(
    client: AsyncRembg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run with nothing to do plans its skipped images in groups, not a thread call each."""
    from rembg_async._outputs import _local

    tree, out = tmp_path / "tree", tmp_path / "out"
    make_tree(tree, [f"d{number % 3}/img{number}.png" for number in range(60)])
    inputs = sorted(tree.rglob("*.png"))
    first = await collect(client.remove_many(inputs, output_dir=out, root=tree))
    assert [item.status for item in first] == ["ok"] * 60
    calls = 0
    real = _local.run_to_completion

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(_local, "run_to_completion", counted)
    again = await collect(
        client.remove_many(iter(inputs), output_dir=out, root=tree, skip_existing=True)
    )
    assert [item.status for item in again] == ["skipped"] * 60
    assert sorted(item.index for item in again) == list(range(60))
    assert calls <= 12  # the folder opened and closed, and a few groups (60 calls and more before)
    assert await used(client) == 60
