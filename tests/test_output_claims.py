"""An output folder remembers a batch's claims per folder, lets go of the folders the batch
has left, and still refuses a clash in any order of inputs: the claims of folders let go are
looked up on disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image
from hypothesis import given, settings
from hypothesis import strategies as st

from rembg_async import AsyncRembg
from rembg_async._files import run_to_completion
from rembg_async._inputs import RemoteInputs
from rembg_async._outputs import (
    INDEX_NAME,
    OutputClashError,
    OutputTree,
    Provenance,
    RemoteOutputTree,
    Verdict,
    output_folder,
)
from rembg_async._outputs import _folders as folders_module
from rembg_async._storage._stores import Stores
from rembg_async.server import LocalServer

#: Inputs in three folders; ``x.png`` and ``x.jpg`` of a folder make one output.
NAMES = [f"{folder}/{stem}.{ext}" for folder in "abc" for stem in "xy" for ext in ("png", "jpg")]


@pytest.fixture
def keep_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders keep the state of one folder left behind only: the others go to disk."""
    monkeypatch.setattr(folders_module, "KEEP_FOLDERS", 1)


def expected(order: list[str]) -> dict[int, str]:
    """What the rule says of each claim in ``order``: the first input of an output has it, the
    same input again is done once, another is a clash."""
    owner: dict[str, str] = {}
    outcome = {}
    for number, name in enumerate(order):
        output = name.rsplit(".", 1)[0]
        owner.setdefault(output, name)
        outcome[number] = (
            "first" if owner[output] == name and name not in order[:number] else "again"
        )
        if owner[output] != name:
            outcome[number] = "clash"
    return outcome


@settings(max_examples=60, deadline=None)
@given(order=st.lists(st.sampled_from(NAMES), min_size=1, max_size=30))
async def test_a_clash_is_refused_in_any_order(order: list[str]) -> None:
    """Whatever the order (folders left and come back to, their claims on disk meanwhile),
    the first input of an output has it, the same again is done once, another clashes."""
    folders_module.KEEP_FOLDERS = 1  # hypothesis: no function-scoped fixture
    try:
        tree = OutputTree(Path("/out"), "/in", "webp", overwrite=False)  # claims: nothing made
        seen: dict[int, str] = {}
        for number, name in enumerate(order):
            target = tree.target(f"/in/{name}", number)
            try:
                seen[number] = "first" if await tree.claim(target, f"/in/{name}") else "again"
            except OutputClashError:
                seen[number] = "clash"
            finally:
                tree.release(target)  # the batch leaves it: maybe for another folder
        await tree.close()
    finally:
        folders_module.KEEP_FOLDERS = 16
    assert seen == expected(order)


async def test_a_batch_refuses_a_clash_in_a_folder_it_left(
    keep_one: None, rembg_server: LocalServer, tmp_path: Path
) -> None:
    """An async iterator of inputs: ``a/x.png`` made, then other folders, then ``a/x.jpg``
    fails with OutputClashError, unsent, though the batch had let go of folder ``a``."""
    names = ["a/x.png", "b/y.png", "c/y.png", "d/y.png", "a/x.jpg"]
    for name in names:
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(make_image((20, 20)))

    async def inputs() -> AsyncIterator[Path]:
        for name in names:
            yield tmp_path / "in" / name

    async with AsyncRembg(rembg_server.api_key, base_url=rembg_server.url) as client:
        run = client.remove_many(
            inputs(), concurrency=1, output_dir=tmp_path / "out", root=tmp_path / "in"
        )
        items = {
            Path(item.input).relative_to(tmp_path / "in").as_posix(): item async for item in run
        }
    assert [items[name].status for name in names] == ["ok"] * 4 + ["failed"]
    assert isinstance(items["a/x.jpg"].error, OutputClashError)
    assert items["a/x.jpg"].attempts == 0


@pytest.fixture
def memory_out() -> Iterator[tuple[Any, str]]:
    """A memory:// output folder of this test's own, deleted after it."""
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    name = f"claims-{secrets.token_hex(4)}"
    yield memory, name
    if memory.exists(f"/{name}"):
        memory.rm(f"/{name}", recursive=True)


async def test_a_remote_folder_is_listed_one_folder_at_a_time(
    keep_one: None, memory_out: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote output folder of 30 subfolders is never listed whole: each subfolder is
    listed when the batch first needs it, its state let go once the batch has left it, and
    its outputs are found done all the same."""
    memory, name = memory_out
    url = f"memory://{name}"
    made = {
        f"{folder:02d}/{number}": Provenance(
            source=f"/in/{folder}/{number}", stamp="1", options="o"
        )
        for folder in range(30)
        for number in range(3)
    }
    writer = output_folder(RemoteInputs(stores=Stores()), url, None, "webp", overwrite=False)
    assert isinstance(writer, RemoteOutputTree)
    for relative, provenance in made.items():
        memory.pipe_file(f"/{name}/{relative}.webp", b"made")
        await writer.record(f"{url}/{relative}.webp", provenance)
    await writer.close()

    def never(self: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"listed whole: {path}")

    with monkeypatch.context() as patched:  # undone before the fixture deletes the folder
        patched.setattr(type(memory), "find", never)
        tree = output_folder(RemoteInputs(stores=Stores()), url, None, "webp", overwrite=False)
        assert isinstance(tree, RemoteOutputTree)
        await tree.open()
        held = []
        for relative, provenance in made.items():
            target = f"{url}/{relative}.webp"
            assert await tree.claim(target, provenance.source)
            assert await tree.verdict(target, provenance) is Verdict.DONE
            tree.release(target)
            held.append(len(tree._folders.live))
        await tree.close()
    assert max(held) <= 2  # the folder the batch is in, and the one kept


def open_files() -> dict[int, str]:
    """What this process holds open: descriptor -> path (Linux's /proc)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to see open files")
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


async def made_in(tree: OutputTree, source: Path, number: int) -> None:
    """``source``'s output claimed, indexed (its folder's index opened for appending), and
    left by the batch."""
    target = tree.target(source, number)
    assert await tree.claim(target, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    tree.record(target, Provenance(source=str(source), stamp="1", options="o"))
    tree.release(target)


async def test_a_folder_let_go_closes_its_index(keep_one: None, tmp_path: Path) -> None:
    """A batch through 12 folders holds only the indexes of the folders it keeps (the one it
    is in, the one left last) open, not one per folder it went through; closed, none."""
    tree = OutputTree(tmp_path / "out", tmp_path / "in", "webp", overwrite=False)
    await tree.open()

    def indexes() -> set[str]:
        return {
            Path(path).parent.name
            for path in open_files().values()
            if path.endswith(INDEX_NAME) and Path(path).parent != tmp_path / "out"
        }

    for number in range(12):
        await made_in(tree, tmp_path / "in" / f"{number:02d}" / "x.png", number)
        assert indexes() == {f"{max(number - 1, 0):02d}", f"{number:02d}"}  # the oldest goes
    await tree.close()
    assert indexes() == set()


async def test_a_closed_output_folder_holds_no_file_open(keep_one: None, tmp_path: Path) -> None:
    """Closed, an output folder has closed every file it opened: the indexes of the folders
    it still held, and the file the claims of the folders it let go were spilled to."""
    before = open_files()
    tree = OutputTree(tmp_path / "out", tmp_path / "in", "webp", overwrite=False)
    await tree.open()
    long = "n" * 150  # 10,000 long claims: more than SQLite keeps in memory
    sources = [tmp_path / "in" / "a" / f"{number}{long}.png" for number in range(10_000)]
    for number, source in enumerate(sources):
        assert await tree.claim(tree.target(source, number), source)
    for number, source in enumerate(sources):
        tree.release(tree.target(source, number))
    for number, folder in enumerate("bc"):  # folder "a" let go: its claims to disk
        await made_in(tree, tmp_path / "in" / folder / "x.png", number)
    opened = {number: path for number, path in open_files().items() if number not in before}
    assert any(path.endswith(INDEX_NAME) for path in opened.values())
    assert any(not path.startswith(str(tmp_path)) for path in opened.values())  # the spill
    await tree.close()
    assert open_files() == before


async def test_releasing_what_is_not_held_does_nothing(tmp_path: Path) -> None:
    """A target released though never claimed, or released twice, changes nothing: the
    claim made after still holds, and a clash is still refused."""
    tree = OutputTree(tmp_path / "out", tmp_path / "in", "webp", overwrite=False)
    target = tree.target(tmp_path / "in" / "x.png", 0)
    tree.release(target)
    assert await tree.claim(target, tmp_path / "in" / "x.png")
    tree.release(target)
    tree.release(target)
    with pytest.raises(OutputClashError):
        await tree.claim(target, tmp_path / "in" / "x.jpg")
    await tree.close()


async def test_claims_on_disk_are_read_from_any_file_thread(keep_one: None, tmp_path: Path) -> None:
    """The claims one file thread spilled to disk are looked up by another (the first busy
    meanwhile): a clash in a folder let go is still refused, not a thread error."""
    tree = OutputTree(tmp_path / "out", tmp_path / "in", "webp", overwrite=False)
    for number, folder in enumerate("abc"):  # at the claim in "c", "a" is let go: to disk
        source = tmp_path / "in" / folder / "x.png"
        assert await tree.claim(tree.target(source, number), source)
        tree.release(tree.target(source, number))
    loop = asyncio.get_running_loop()
    running, done = asyncio.Event(), threading.Event()

    def busy() -> None:  # the thread that spilled is the one woken next: it stays busy
        loop.call_soon_threadsafe(running.set)
        done.wait()

    busy_call = asyncio.ensure_future(run_to_completion(busy))
    try:
        await running.wait()
        other = tmp_path / "in" / "a" / "x.jpg"
        with pytest.raises(OutputClashError):
            await tree.claim(tree.target(other, 3), other)
    finally:
        done.set()
        await busy_call
    await tree.close()
