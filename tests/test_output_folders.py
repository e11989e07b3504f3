"""A batch's output folder, local or remote (memory://): what is made, skipped, refused or
failed unsent, what ``--dry-run`` counts there, and the index each keeps (a local one's file,
a remote one's segments)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image

from rembg_async import AsyncRembg, InvalidInputError, RemoveOptions
from rembg_async._inputs import RemoteInputs
from rembg_async._outputs import (
    INDEX_NAME,
    ForeignOutputError,
    OutputTree,
    Plan,
    Provenance,
    RemoteOutputTree,
    Verdict,
    dry_run_counts,
    options_key,
    output_folder,
)
from rembg_async._outputs import _remote as remote_module
from rembg_async._storage._stores import Stores
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer

PNG = make_image((24, 16), "PNG")
OPTIONS = options_key(RemoveOptions().form_fields())


@pytest.fixture
def place(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Remote inputs under a memory:// folder of this test's own (one to make, one whose
    output is someone else's, one not an image, one missing); deleted after the test with the
    memory:// output folder of the same name."""
    fsspec = pytest.importorskip("fsspec")  # the remote inputs' extra
    memory = fsspec.filesystem("memory")
    name = f"folders-{secrets.token_hex(4)}"
    for image in ("ok.png", "foreign.png"):
        memory.pipe_file(f"/{name}-in/{image}", PNG)
    memory.pipe_file(f"/{name}-in/bad.png", b"not an image at all")
    images = ("ok.png", "foreign.png", "bad.png", "gone.png")
    inputs = [f"memory://{name}-in/{image}" for image in images]
    yield {"memory": memory, "name": name, "inputs": inputs, "root": f"memory://{name}-in/"}
    for folder in (f"/{name}-in", f"/{name}-out"):
        if memory.exists(folder):
            memory.rm(folder, recursive=True)


def output_of(place: dict[str, Any], tmp_path: Path, remote: bool) -> Any:
    """The output folder, with someone else's ``foreign.webp`` in it."""
    if remote:
        place["memory"].pipe_file(f"/{place['name']}-out/foreign.webp", b"someone else's")
        return f"memory://{place['name']}-out"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "foreign.webp").write_bytes(b"someone else's")
    return tmp_path / "out"


@pytest.mark.parametrize("remote", [False, True], ids=["local-folder", "memory-folder"])
async def test_remote_inputs_made_skipped_refused_or_failed_unsent(
    rembg_server: LocalServer, tmp_path: Path, place: dict[str, Any], remote: bool
) -> None:
    """An object is made then skipped; another's output is refused; an object that is no
    image or is missing fails its item unsent; overwrite=True makes the foreign one again."""
    output_dir = output_of(place, tmp_path, remote)
    arguments = {"output_dir": output_dir, "root": place["root"], "skip_existing": True}
    ok, foreign, bad, gone = place["inputs"]
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        first = {
            item.input: item async for item in client.remove_many(place["inputs"], **arguments)
        }
        again = {
            item.input: item async for item in client.remove_many(place["inputs"], **arguments)
        }
        forced = [item async for item in client.remove_many([foreign], **arguments, overwrite=True)]
    assert first[ok].status == "ok"
    assert first[ok].attempts == 1
    assert isinstance(first[foreign].error, ForeignOutputError)
    assert isinstance(first[bad].error, InvalidInputError)
    assert isinstance(first[gone].error, FileNotFoundError)
    assert [first[value].attempts for value in (foreign, gone)] == [0, 0]
    assert again[ok].status == "skipped"
    assert again[ok].attempts == 0
    assert isinstance(again[foreign].error, ForeignOutputError)
    assert [item.status for item in forced] == ["ok"]


@pytest.mark.parametrize("remote", [False, True], ids=["local-folder", "memory-folder"])
async def test_dry_run_counts_of_remote_inputs(
    rembg_server: LocalServer, tmp_path: Path, place: dict[str, Any], remote: bool
) -> None:
    """Before a run every input would be sent but the foreign one; after it, the made ones
    (an object, a local file) are done (or sent again with ``redo``), and an input given
    twice is counted once."""
    output_dir = output_of(place, tmp_path, remote)
    (tmp_path / "local.png").write_bytes(PNG)
    made = [place["inputs"][0], tmp_path / "local.png"]
    inputs = [*place["inputs"], *made, place["inputs"][0]]

    async def counts(redo: bool = False) -> dict[str, Any]:
        folder = output_folder(
            RemoteInputs(stores=Stores()), output_dir, place["root"], "webp", overwrite=False
        )
        assert folder is not None
        return await dry_run_counts(folder, inputs, OPTIONS, redo)

    async def verdicts() -> list[Verdict]:
        folder: Any = output_folder(
            RemoteInputs(stores=Stores()), output_dir, place["root"], "webp", overwrite=False
        )
        assert folder is not None
        return [
            await folder.verdict_of(value, folder.target(value, index), OPTIONS)
            for index, value in enumerate(made)
        ]

    before = await counts()
    assert (before["send"], before["done"], before["refused"]) == (4, 0, 1)
    assert "foreign.webp exists" in before["why"]
    assert await verdicts() == [Verdict.TODO, Verdict.TODO]
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        run = client.remove_many(made, output_dir=output_dir, root=place["root"])
        assert [item.status async for item in run] == ["ok", "ok"]
    after = await counts()
    assert (after["send"], after["done"], after["refused"]) == (2, 2, 1)
    assert await verdicts() == [Verdict.DONE, Verdict.DONE]
    redo = await counts(redo=True)
    assert (redo["send"], redo["done"], redo["refused"]) == (4, 0, 1)


async def test_a_remote_input_is_read_only_when_it_is_sent(
    rembg_server: LocalServer,
    tmp_path: Path,
    place: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Into a local folder, a remote input is not read when it is skipped, nor when its
    output's place cannot be written: only its details are asked."""
    memory, name = place["memory"], place["name"]
    memory.pipe_file(f"/{name}-in/a/x.png", PNG)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_bytes(b"a file in the way")
    reads: list[str] = []
    real = memory.cat_file

    def cat_file(path: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(memory, "cat_file", cat_file)
    inputs = [place["inputs"][0], f"memory://{name}-in/a/x.png"]
    arguments = {"output_dir": tmp_path / "out", "root": place["root"], "skip_existing": True}
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        first = [item async for item in client.remove_many(inputs, **arguments)]
        read_first, reads[:] = list(reads), []
        again = [item async for item in client.remove_many(inputs, **arguments)]
    assert sorted(item.status for item in first) == ["failed", "ok"]
    assert read_first == [f"/{name}-in/ok.png"]
    assert sorted(item.status for item in again) == ["failed", "skipped"]
    assert reads == []


async def test_outputs_that_cannot_be_written_fail_unsent(
    rembg_server: LocalServer, tmp_path: Path
) -> None:
    """A file where an output's folder should be, or a folder where the output should be:
    that item fails before sending (no credit spent), the others are made."""
    for name in ("a/x.png", "b.png", "c.png"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(PNG)
    (tmp_path / "out" / "b.webp").mkdir(parents=True)
    (tmp_path / "out" / "a").write_bytes(b"a file in the way")
    inputs = [tmp_path / "in" / name for name in ("a/x.png", "b.png", "c.png")]
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        run = client.remove_many(
            inputs, output_dir=tmp_path / "out", root=tmp_path / "in", overwrite=True
        )
        items = {item.input: item async for item in run}
        spent = (await client.membership_usage()).api_usage
    assert isinstance(items[inputs[0]].error, NotADirectoryError)
    assert isinstance(items[inputs[1]].error, IsADirectoryError)
    assert items[inputs[2]].status == "ok"
    assert spent == 1


async def test_the_output_folder_and_its_indexes(rembg_server: LocalServer, tmp_path: Path) -> None:
    """A missing output folder is made with its parents; each subfolder gets an index made as
    any new file (0o666 less the umask), and none is left open after the run."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "sub" / "x.png").write_bytes(PNG)
    out = tmp_path / "new" / "deeper" / "out"
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        run = client.remove_many(
            [tmp_path / "in" / "sub" / "x.png"], output_dir=out, root=tmp_path / "in"
        )
        assert [item.status async for item in run] == ["ok"]
    index = out / "sub" / ".rembg-async-index.jsonl"
    umask = os.umask(0)
    os.umask(umask)
    assert index.stat().st_mode & 0o777 == 0o666 & ~umask
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert str(index) not in open_files


class FakeClock:
    """``time`` for `_outputs._remote`: its own monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        """The fake clock's reading."""
        return self.now

    def time_ns(self) -> int:
        """The real wall clock (the run's name)."""
        return time.time_ns()


def segments(memory: Any, folder: str) -> dict[str, list[str]]:
    """The index segments under the memory:// ``folder``: name -> their outputs."""
    found = memory.find(f"/{folder}/.rembg-async-index") if memory.exists(f"/{folder}") else []
    return {
        path.rsplit("/", 1)[1]: [
            json.loads(line)["output"] for line in memory.cat_file(path).decode().splitlines()
        ]
        for path in found
    }


async def test_remote_index_segments_every_100_outputs_or_10_seconds(
    monkeypatch: pytest.MonkeyPatch, place: dict[str, Any]
) -> None:
    """A segment is written at the 100th output waiting, or once the oldest has waited 10 s,
    and at close; each names its run and its number; a new tree reads them all back."""
    clock = FakeClock()
    monkeypatch.setattr(remote_module, "time", clock)
    memory, folder = place["memory"], f"{place['name']}-out"
    url = f"memory://{folder}"
    tree = output_folder(RemoteInputs(stores=Stores()), url, None, "webp", overwrite=False)
    assert isinstance(tree, RemoteOutputTree)
    await tree.open()
    made = [Provenance(source=f"/in/{n}.png", stamp="1:2", options="o") for n in range(104)]
    for number in range(99):
        await tree.record(f"{url}/{number}.webp", made[number])
    assert segments(memory, folder) == {}
    await tree.record(f"{url}/99.webp", made[99])
    first = segments(memory, folder)
    assert len(first) == 1
    assert next(iter(first.values())) == [f"{n}.webp" for n in range(100)]
    (name,) = first
    assert re.fullmatch(r"\d{13}-[0-9a-f]{8}-000001\.jsonl", name)
    clock.now += 1
    await tree.record(f"{url}/100.webp", made[100])
    clock.now += 9.5
    await tree.record(f"{url}/101.webp", made[101])
    assert len(segments(memory, folder)) == 1  # the oldest has waited 9.5 s
    clock.now += 0.5
    await tree.record(f"{url}/102.webp", made[102])
    second = segments(memory, folder)
    assert second[name.replace("000001", "000002")] == ["100.webp", "101.webp", "102.webp"]
    await tree.claim(f"{url}/103.webp", "/in/103.png")  # its folder held, as in a batch
    assert await tree.verdict(f"{url}/103.webp", made[103]) is Verdict.TODO  # not there yet
    await tree.record(f"{url}/103.webp", made[103])
    await tree.close()
    assert segments(memory, folder)[name.replace("000001", "000003")] == ["103.webp"]
    await tree.close()  # nothing waiting: no empty segment
    assert await tree.verdict(f"{url}/103.webp", made[103]) is Verdict.DONE  # it knows its own
    assert len(segments(memory, folder)) == 3
    for number in (0, 103):  # the outputs themselves, for the listing to find
        memory.pipe_file(f"/{folder}/{number}.webp", b"made")
    again = output_folder(RemoteInputs(stores=Stores()), url, None, "webp", overwrite=False)
    assert isinstance(again, RemoteOutputTree)
    assert await again.verdict(f"{url}/0.webp", made[0]) is Verdict.DONE
    assert await again.verdict(f"{url}/103.webp", made[103]) is Verdict.DONE
    assert await again.verdict(f"{url}/103.webp", made[0]) is Verdict.FOREIGN  # another input's
    assert await again.verdict(f"{url}/1.webp", made[1]) is Verdict.TODO  # in the index, not there


async def test_a_torn_index_line_is_an_error(tmp_path: Path) -> None:
    """When the index line cannot be written whole (the disk is full: here, a file size limit
    reached mid-line), recording the output fails with ENOSPC naming the index."""
    resource = pytest.importorskip("resource")
    tree = output_folder(
        RemoteInputs(stores=Stores()), tmp_path / "out", None, "webp", overwrite=False
    )
    assert isinstance(tree, OutputTree)
    await tree.open()
    made = Provenance(source="/in/x.png", stamp="1:2", options="o")
    (tmp_path / "out" / "sub").mkdir()
    tree.record(tmp_path / "out" / "sub" / "a.webp", made)
    index = tmp_path / "out" / "sub" / INDEX_NAME
    limit = index.stat().st_size + 10  # room for 10 bytes of the next line
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError, match="No space left") as caught:
            tree.record(tmp_path / "out" / "sub" / "b.webp", made)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    await tree.close()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(index)
    assert index.stat().st_size == limit


async def test_a_failed_segment_loses_no_entry(
    monkeypatch: pytest.MonkeyPatch, place: dict[str, Any]
) -> None:
    """A segment whose write fails keeps its entries waiting, in front of those recorded
    while it was written: the next segment has them all."""
    memory, folder = place["memory"], f"{place['name']}-out"
    url = f"memory://{folder}"
    tree = output_folder(RemoteInputs(stores=Stores()), url, None, "webp", overwrite=False)
    assert isinstance(tree, RemoteOutputTree)
    await tree.open()
    entered, release = threading.Event(), threading.Event()
    real = memory.pipe_file

    def pipe_file(path: str, *args: Any, **kwargs: Any) -> Any:
        if not entered.is_set():  # the first segment: fails once another entry is waiting
            entered.set()
            release.wait(10)
            raise OSError("the store refused it")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(memory, "pipe_file", pipe_file)
    made = Provenance(source="/in/x.png", stamp="1:2", options="o")
    for number in range(99):
        await tree.record(f"{url}/{number}.webp", made)
    failing = asyncio.create_task(tree.record(f"{url}/99.webp", made))
    await asyncio.to_thread(entered.wait, 10)
    await tree.record(f"{url}/meanwhile.webp", made)
    release.set()
    with pytest.raises(OSError, match="the store refused it"):
        await failing
    await tree.close()
    (written,) = segments(memory, folder).values()
    assert written == [f"{number}.webp" for number in range(100)] + ["meanwhile.webp"]


async def test_planning_local_and_remote_inputs_side_by_side(
    tmp_path: Path, place: dict[str, Any]
) -> None:
    """A local output folder made without the remote inputs' settings still plans memory://
    inputs (with its own), beside local ones; an image whose planning fails with an OSError
    (here, an index that cannot be read) gets that error as its plan, the others theirs."""
    tree = OutputTree(tmp_path / "out", place["root"], "webp", overwrite=False)
    await tree.open()
    broken = tmp_path / "out" / "broken" / "x.webp"
    (broken.parent / INDEX_NAME).mkdir(parents=True)  # not a file: reading it fails
    broken.write_bytes(b"made")
    remote = place["inputs"][0]
    plans = await tree.plan_many(
        [(tmp_path / "x.png", broken), (remote, tree.target(remote, 1))],
        OPTIONS,
        skip_existing=False,
    )
    await tree.close()
    assert isinstance(plans[0], IsADirectoryError)
    assert isinstance(plans[1], Plan)
    assert (plans[1].problem, plans[1].verdict) == (None, Verdict.TODO)
