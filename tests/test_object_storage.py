"""Remote inputs and outputs through fsspec: S3 (a real moto server on a loopback port, one
per module), memory://, and http:// from a local aiohttp server; the API is the local server
or a stand-in that records what it receives. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_image

from rembg_async import AsyncRembg, InvalidInputError, RetryPolicy
from rembg_async._imageinfo import sniff_kind
from rembg_async._outputs import ForeignOutputError
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer
from tests._moto import Moto, start_moto

pytest.importorskip("s3fs")

PNG = make_image((64, 48), "PNG")


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """One moto server for the module."""
    server = start_moto()
    yield server
    server.close()


@pytest.fixture
def bucket(moto: Moto) -> str:
    """A new bucket for this test alone."""
    return moto.new_bucket()


def put(moto: Moto, bucket: str, key: str, data: bytes) -> None:
    """Write an object, as another program would."""
    moto.client().put_object(Bucket=bucket, Key=key, Body=data)


def get(moto: Moto, bucket: str, key: str) -> bytes:
    """Read an object back."""
    return bytes(moto.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def keys(moto: Moto, bucket: str) -> list[str]:
    """Every key in the bucket, sorted."""
    listed = moto.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def client_for(server: LocalServer, moto: Moto, **options: Any) -> AsyncRembg:
    """A client of the local server, reaching moto."""
    return AsyncRembg(
        TEST_API_KEY, base_url=server.url, storage_options=moto.storage_options, **options
    )


class Recorder:
    """A stand-in for the API: reads each upload in chunks, noting its headers and size."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.keep_bodies = False

    async def handle(self, request: web.Request) -> web.Response:
        """Count (or keep) the image part; answer a small PNG (a 503 first, if asked)."""
        reader = await request.multipart()
        part = await reader.next()
        assert isinstance(part, aiohttp.BodyPartReader)
        size, kept = 0, bytearray()
        while chunk := await part.read_chunk(1 << 20):
            size += len(chunk)
            if self.keep_bodies:
                kept += chunk
        self.requests.append({"headers": dict(request.headers), "image_bytes": size})
        self.bodies.append(bytes(kept))
        if self.fail_first and len(self.requests) == 1:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(body=make_image((8, 8), "PNG"), content_type="image/png")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, Recorder]]:
    """A `Recorder` on a loopback port: (its base URL, it)."""
    record = Recorder()
    app = web.Application()
    app.router.add_post("/rmbg", record.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), record
    finally:
        await server.close()


async def test_a_large_s3_object_streams_with_its_exact_length(
    moto: Moto, bucket: str, recorder: tuple[str, Recorder]
) -> None:
    """A 20 MB object is sent with Content-Length, in chunks: Python memory stays a few MB."""
    import tracemalloc

    url, record = recorder
    big = PNG + b"\0" * (20 << 20)
    put(moto, bucket, "in/big.png", big)
    put(moto, bucket, "in/warm.png", PNG + b"\0" * 300_000)
    async with AsyncRembg("k", base_url=url, storage_options=moto.storage_options) as client:
        await client.remove(f"s3://{bucket}/in/warm.png", return_bytes=True)
        tracemalloc.start()  # the second call: the store's session and imports are in place
        try:
            result = await client.remove(f"s3://{bucket}/in/big.png", return_bytes=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.content_type == "image/png"
    sent = record.requests[-1]
    assert sent["image_bytes"] == len(big)
    assert "Transfer-Encoding" not in sent["headers"]
    assert int(sent["headers"]["Content-Length"]) > len(big)  # the form around the image
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB"


async def test_a_retry_reads_the_object_again(moto: Moto, bucket: str) -> None:
    """After a 503, the object is opened afresh and sent whole once more."""
    data = PNG + os.urandom(600_000)  # over the size sent from memory: streamed each time
    put(moto, bucket, "in/cat.png", data)
    record = Recorder(fail_first=True)
    record.keep_bodies = True
    app = web.Application()
    app.router.add_post("/rmbg", record.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with AsyncRembg(
            "k",
            base_url=str(server.make_url("")).rstrip("/"),
            retry=RetryPolicy(wait=False),
            storage_options=moto.storage_options,
        ) as client:
            result = await client.remove(f"s3://{bucket}/in/cat.png", return_bytes=True)
    finally:
        await server.close()
    assert result.size > 0
    assert record.bodies == [data, data]


async def test_s3_in_s3_out_through_the_local_server(
    moto: Moto, bucket: str, rembg_server: LocalServer, private_tmp: Path
) -> None:
    """An S3 image's cut-out lands whole in S3; nothing is left locally."""
    put(moto, bucket, "in/cat.png", PNG)
    async with client_for(rembg_server, moto) as client:
        saved = await client.remove(
            f"s3://{bucket}/in/cat.png", {"format": "png"}, output_path=f"s3://{bucket}/out/cat.png"
        )
        await saved.cleanup()  # does nothing to the object
    assert saved.url == f"s3://{bucket}/out/cat.png"
    stored = get(moto, bucket, "out/cat.png")
    assert sniff_kind(stored) == "png"
    assert len(stored) == saved.size
    assert keys(moto, bucket) == ["in/cat.png", "out/cat.png"]
    assert list(private_tmp.iterdir()) == []


async def test_call_storage_options_replace_the_clients(
    moto: Moto, bucket: str, rembg_server: LocalServer
) -> None:
    """storage_options given to one call reach the store; the client needs none."""
    put(moto, bucket, "cat.png", PNG)
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        result = await client.remove(
            f"s3://{bucket}/cat.png", return_bytes=True, storage_options=moto.storage_options
        )
    assert sniff_kind(result.data) == "webp"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        pytest.param(b"", "empty.png", id="empty"),
        pytest.param(b"not an image at all" * 10, "text.png", id="no-signature"),
        pytest.param(make_image((10_001, 2), "PNG"), "wide.png", id="too-wide"),
    ],
)
async def test_remote_inputs_are_refused_with_the_local_messages(
    moto: Moto, bucket: str, tmp_path: Path, data: bytes, name: str
) -> None:
    """A bad object is refused before sending, with the very message a local file gets."""
    put(moto, bucket, name, data)
    (tmp_path / name).write_bytes(data)
    async with AsyncRembg(
        "k", base_url="http://127.0.0.1:9", storage_options=moto.storage_options
    ) as client:
        with pytest.raises(InvalidInputError) as remote:
            await client.remove(f"s3://{bucket}/{name}")
        with pytest.raises(InvalidInputError) as local:
            await client.remove(tmp_path / name)
    assert str(remote.value) == str(local.value)


async def test_a_missing_object_is_file_not_found(moto: Moto, bucket: str) -> None:
    """A key that is not there fails as a missing local file does, before sending."""
    async with AsyncRembg(
        "k", base_url="http://127.0.0.1:9", storage_options=moto.storage_options
    ) as client:
        with pytest.raises(FileNotFoundError):
            await client.remove(f"s3://{bucket}/nope.png")


async def test_remove_many_s3_to_s3_skips_what_is_done(
    moto: Moto, bucket: str, rembg_server: LocalServer
) -> None:
    """A batch mirrors s3://…/in/ under s3://…/out/ and writes its manifest there; run
    again, it skips every image, sends nothing, and appends to the manifest."""
    names = ["a/one.png", "a/two.jpg", "b/three.png", "four.png"]
    for number, name in enumerate(names):
        fmt = "JPEG" if name.endswith("jpg") else "PNG"
        put(moto, bucket, f"in/{name}", make_image((40 + number, 30), fmt))
    inputs = [f"s3://{bucket}/in/{name}" for name in names]
    arguments: dict[str, Any] = {
        "output_dir": f"s3://{bucket}/out/",
        "root": f"s3://{bucket}/in/",
        "manifest": f"s3://{bucket}/out/manifest.jsonl",
        "skip_existing": True,
    }
    async with client_for(rembg_server, moto) as client:
        first = [item async for item in client.remove_many(inputs, **arguments)]
        second = [item async for item in client.remove_many(inputs, **arguments)]
    assert [item.status for item in first] == ["ok"] * 4
    assert sorted(item.output_url or "" for item in first) == sorted(
        f"s3://{bucket}/out/{name.rsplit('.', 1)[0]}.webp" for name in names
    )
    assert [item.status for item in second] == ["skipped"] * 4
    assert all(item.attempts == 0 for item in second)
    stored = keys(moto, bucket)
    outputs = [key for key in stored if key.endswith(".webp")]
    assert outputs == sorted(f"out/{name.rsplit('.', 1)[0]}.webp" for name in names)
    assert all(sniff_kind(get(moto, bucket, key)) == "webp" for key in outputs)
    index = [key.rpartition("/.rembg-async-index/")[0] for key in stored if "index/" in key]
    assert index == ["out", "out/a", "out/b"]  # the first run's, one in each folder
    lines = get(moto, bucket, "out/manifest.jsonl").decode().splitlines()
    statuses = [json.loads(line)["status"] for line in lines]
    assert statuses == ["ok"] * 4 + ["skipped"] * 4
    assert {json.loads(line)["output"] for line in lines} == {
        f"s3://{bucket}/{key}" for key in outputs
    }


async def test_a_changed_input_is_made_again_and_a_foreign_output_is_kept(
    moto: Moto, bucket: str, rembg_server: LocalServer
) -> None:
    """After the run, an input replaced in S3 is made again; an output someone else put
    there fails its item unsent and is left as it was."""
    put(moto, bucket, "in/cat.png", PNG)
    put(moto, bucket, "in/dog.png", make_image((30, 30)))
    put(moto, bucket, "out/dog.webp", b"someone else's")
    inputs = [f"s3://{bucket}/in/cat.png", f"s3://{bucket}/in/dog.png"]
    arguments = {"output_dir": f"s3://{bucket}/out", "root": f"s3://{bucket}/in"}
    async with client_for(rembg_server, moto) as client:
        first = {item.input: item async for item in client.remove_many(inputs, **arguments)}
        put(moto, bucket, "in/cat.png", make_image((50, 50)))
        again = {item.input: item async for item in client.remove_many(
            inputs, skip_existing=True, **arguments)}  # fmt: skip
    assert first[inputs[0]].status == "ok"
    assert isinstance(first[inputs[1]].error, ForeignOutputError)
    assert again[inputs[0]].status == "ok"  # the input changed: made again
    assert get(moto, bucket, "out/dog.webp") == b"someone else's"


async def test_local_inputs_to_a_remote_folder_and_back(
    moto: Moto, bucket: str, rembg_server: LocalServer, tmp_path: Path
) -> None:
    """Local files go to S3 mirrored under their root; S3 inputs come to a local folder."""
    (tmp_path / "photos" / "x").mkdir(parents=True)
    (tmp_path / "photos" / "x" / "cat.png").write_bytes(PNG)
    put(moto, bucket, "in/dog.png", PNG)
    async with client_for(rembg_server, moto) as client:
        up = [item async for item in client.remove_many(
            [tmp_path / "photos" / "x" / "cat.png"], output_dir=f"s3://{bucket}/out",
            root=tmp_path / "photos")]  # fmt: skip
        down = [item async for item in client.remove_many(
            [f"s3://{bucket}/in/dog.png"], output_dir=tmp_path / "out",
            root=f"s3://{bucket}/in/", skip_existing=True)]  # fmt: skip
        again = [item async for item in client.remove_many(
            [f"s3://{bucket}/in/dog.png"], output_dir=tmp_path / "out",
            root=f"s3://{bucket}/in/", skip_existing=True)]  # fmt: skip
    assert [item.status for item in up + down] == ["ok", "ok"]
    assert sniff_kind(get(moto, bucket, "out/x/cat.webp")) == "webp"
    assert down[0].output_path == tmp_path / "out" / "dog.webp"
    assert again[0].status == "skipped"


async def test_memory_urls_work_through_a_blocking_filesystem(rembg_server: LocalServer) -> None:
    """memory:// (a filesystem with no async API) is read and written through threads."""
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe_file("/photos/cat.png", PNG)
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        saved = await client.remove("memory://photos/cat.png", output_path="memory://out/cat.webp")
    assert saved.url == "memory://out/cat.webp"
    assert sniff_kind(memory.cat_file("/out/cat.webp")) == "webp"
    memory.rm("/photos", recursive=True)
    memory.rm("/out", recursive=True)


async def test_an_http_url_is_an_input(rembg_server: LocalServer) -> None:
    """An image served over http:// on a loopback port is fetched through fsspec and sent."""
    image = PNG + b"\0" * 400_000  # streamed, not read whole

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
            result = await client.remove(str(server.make_url("/cat.png")), return_bytes=True)
    finally:
        await server.close()
    assert sniff_kind(result.data) == "webp"


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``rembg-async`` with ``arguments``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "rembg_async", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "REMBG_ASYNC_ENGINE": "classic"},
    )


def test_the_cli_takes_an_s3_folder_to_an_s3_folder(
    moto: Moto, bucket: str, tmp_path: Path
) -> None:
    """`remove s3://…/in/ -o s3://…/out/ --storage-option …` mirrors the folder; again, it
    skips everything; a glob picks only its matches."""
    for name in ("a/one.png", "two.png", "notes.txt"):
        put(moto, bucket, f"in/{name}", PNG)
    options = [
        f"--storage-option=client_kwargs.endpoint_url={moto.url}",
        "--storage-option=key=testing",
        "--storage-option=secret=testing",
    ]
    command = ["remove", f"s3://{bucket}/in/", "-o", f"s3://{bucket}/out/", "--local", *options]
    first = run_cli(*command, "--manifest", f"s3://{bucket}/run.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli(*command, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("skipped") == 2
    glob = run_cli("remove", f"s3://{bucket}/in/*.png", "-o", f"s3://{bucket}/flat/",
                   "--local", *options, cwd=tmp_path)  # fmt: skip
    assert glob.returncode == 0, glob.stderr
    stored = keys(moto, bucket)
    assert {"out/a/one.webp", "out/two.webp", "flat/two.webp"} <= set(stored)
    assert "flat/a/one.webp" not in stored
    assert len(get(moto, bucket, "run.jsonl").decode().splitlines()) == 2
    assert not list(tmp_path.iterdir())  # nothing written locally


def test_the_cli_refuses_a_bad_storage_option(tmp_path: Path) -> None:
    """A --storage-option without '=' is exit 2, one line, nothing sent."""
    result = run_cli("remove", "s3://b/in/", "--storage-option", "nokey", cwd=tmp_path)
    assert result.returncode == 2
    assert "KEY=VALUE" in result.stderr


def test_the_cli_never_takes_its_outputs_for_inputs(
    moto: Moto, bucket: str, tmp_path: Path
) -> None:
    """With -o inside the input folder, a second run lists no output as an input."""
    put(moto, bucket, "in/cat.png", PNG)
    options = [
        f"--storage-option=client_kwargs.endpoint_url={moto.url}",
        "--storage-option=key=testing",
        "--storage-option=secret=testing",
    ]
    command = ["remove", f"s3://{bucket}/in/", "-o", f"s3://{bucket}/in/cut/", "--local"]
    for _ in range(2):
        result = run_cli(*command, *options, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert result.stdout.count("skipped") == 1
    assert [key for key in keys(moto, bucket) if key.endswith(".webp")] == ["in/cut/cat.webp"]


async def test_stream_takes_an_s3_input(moto: Moto, bucket: str, rembg_server: LocalServer) -> None:
    """client.stream() sends an S3 object and hands the cut-out over as it arrives."""
    put(moto, bucket, "cat.png", PNG)
    async with (
        client_for(rembg_server, moto) as client,
        client.stream(f"s3://{bucket}/cat.png", {"format": "png"}) as result,
    ):
        data = b"".join([chunk async for chunk in result.iter_chunks()])
    assert sniff_kind(data) == "png"


def test_the_sync_client_takes_s3_urls(moto: Moto, bucket: str, rembg_server: LocalServer) -> None:
    """Rembg (the sync twin) passes storage_options and URLs through to AsyncRembg."""
    from rembg_async import Rembg

    put(moto, bucket, "cat.png", PNG)
    with Rembg(
        TEST_API_KEY, base_url=rembg_server.url, storage_options=moto.storage_options
    ) as client:
        saved = client.remove(f"s3://{bucket}/cat.png", output_path=f"s3://{bucket}/cat.webp")
    assert saved.url == f"s3://{bucket}/cat.webp"
    assert sniff_kind(get(moto, bucket, "cat.webp")) == "webp"


async def test_a_cut_answer_leaves_no_object_and_a_retry_puts_it_whole(
    moto: Moto, bucket: str, rembg_server_factory: Any
) -> None:
    """An answer cut short puts nothing under the output's name; retried, the object that
    appears is the whole image."""
    from rembg_async import APIConnectionError
    from rembg_async.server import FAULT_HEADER, ServerConfig

    server = rembg_server_factory(ServerConfig(faults=True))
    put(moto, bucket, "cat.png", PNG)
    async with client_for(server, moto, retry=RetryPolicy(max_retries=0)) as client:
        with pytest.raises(APIConnectionError):
            await client.remove(
                f"s3://{bucket}/cat.png",
                output_path=f"s3://{bucket}/out/cat.webp",
                extra_headers={FAULT_HEADER: "truncate"},
            )
        assert keys(moto, bucket) == ["cat.png"]
        saved = await client.remove(
            f"s3://{bucket}/cat.png",
            output_path=f"s3://{bucket}/out/cat.webp",
            extra_headers={FAULT_HEADER: "truncate,times=1"},
            retry=RetryPolicy(max_retries=1, wait=False),
        )
    stored = get(moto, bucket, "out/cat.webp")
    assert len(stored) == saved.size
    assert sniff_kind(stored) == "webp"


async def test_a_large_result_goes_through_the_stores_own_put(
    moto: Moto, bucket: str, rembg_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the size read whole, a result is put with the store's _put_file: whole too."""
    from rembg_async._storage import _stores

    monkeypatch.setattr(_stores, "PUT_WHOLE_BYTES", 0)
    put(moto, bucket, "cat.png", PNG)
    async with client_for(rembg_server, moto) as client:
        saved = await client.remove(f"s3://{bucket}/cat.png", output_path=f"s3://{bucket}/c.webp")
    assert len(get(moto, bucket, "c.webp")) == saved.size


async def test_a_batch_left_early_still_writes_its_index(
    moto: Moto, bucket: str, rembg_server: LocalServer
) -> None:
    """Leaving a remote batch after its first item writes the index of what it made, so
    the next run skips that image."""
    for number in range(4):
        put(moto, bucket, f"in/{number}.png", make_image((30 + number, 20)))
    inputs = [f"s3://{bucket}/in/{number}.png" for number in range(4)]
    arguments: dict[str, Any] = {
        "output_dir": f"s3://{bucket}/out",
        "root": f"s3://{bucket}/in",
        "skip_existing": True,
        "concurrency": 1,
    }
    async with client_for(rembg_server, moto) as client:
        async with client.remove_many(inputs, **arguments) as run:
            async for item in run:
                first = item
                break
        again = {item.input: item async for item in client.remove_many(inputs, **arguments)}
    assert first.status == "ok"
    assert again[first.input].status == "skipped"
    assert sum(item.status == "ok" for item in again.values()) == 3


async def test_an_object_over_the_limit_is_refused_from_its_details(
    moto: Moto, bucket: str
) -> None:
    """An object over 50 MB is refused with the API's message, before anything is sent."""
    from rembg_async._contract import MAX_UPLOAD_BYTES, file_too_large_message

    size = MAX_UPLOAD_BYTES + 1
    put(moto, bucket, "huge.png", PNG + b"\0" * (size - len(PNG)))
    async with AsyncRembg(
        "k", base_url="http://127.0.0.1:9", storage_options=moto.storage_options
    ) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.remove(f"s3://{bucket}/huge.png")
    assert str(caught.value) == file_too_large_message(size)


@pytest.mark.parametrize(
    "into", [pytest.param(True, id="s3-folder"), pytest.param(False, id="temporary")]
)
async def test_remove_many_storage_options_reach_every_image(
    moto: Moto, bucket: str, rembg_server: LocalServer, into: bool
) -> None:
    """remove_many's own storage_options (the client has none) read the inputs and put the
    results, with or without an output folder."""
    put(moto, bucket, "in/cat.png", PNG)
    arguments: dict[str, Any] = {"storage_options": moto.storage_options}
    if into:
        arguments |= {"output_dir": f"s3://{bucket}/out", "root": f"s3://{bucket}/in"}
    async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
        (item,) = [
            item async for item in client.remove_many([f"s3://{bucket}/in/cat.png"], **arguments)
        ]
    assert item.ok, item.error
    if into:
        assert sniff_kind(get(moto, bucket, "out/cat.webp")) == "webp"
    else:
        assert item.result is not None
        await item.result.cleanup()


def test_the_cli_dry_run_counts_what_is_done_in_s3(moto: Moto, bucket: str, tmp_path: Path) -> None:
    """--dry-run with S3 inputs, into S3 or a local folder, counts what is done there."""
    for name in ("one.png", "two.png"):
        put(moto, bucket, f"in/{name}", PNG)
    options = [
        f"--storage-option=client_kwargs.endpoint_url={moto.url}",
        "--storage-option=key=testing",
        "--storage-option=secret=testing",
    ]
    for output in (f"s3://{bucket}/out/", str(tmp_path / "out")):
        command = ["remove", f"s3://{bucket}/in/", "-o", output, "--local", *options]
        before = run_cli(*command, "--dry-run", cwd=tmp_path)
        assert before.returncode == 0, before.stderr
        assert "would send: 2 image(s)" in before.stdout
        made = run_cli(*command, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        put(moto, bucket, "in/two.png", make_image((20, 20)))  # changed: to be made again
        after = run_cli(*command, "--dry-run", cwd=tmp_path)
        assert after.returncode == 0, after.stderr
        assert "would send: 1 image(s)" in after.stdout
        assert "already done: 1" in after.stdout
        put(moto, bucket, "in/two.png", PNG)


def test_the_cli_retries_what_failed_in_a_remote_manifest(
    moto: Moto, bucket: str, tmp_path: Path
) -> None:
    """--retry-failed s3://…/run.jsonl runs only the input that failed, and appends to it."""
    put(moto, bucket, "in/good.png", PNG)
    put(moto, bucket, "in/bad.png", b"not an image" * 20)
    options = [
        f"--storage-option=client_kwargs.endpoint_url={moto.url}",
        "--storage-option=key=testing",
        "--storage-option=secret=testing",
    ]
    manifest = f"s3://{bucket}/run.jsonl"
    out = ["-o", f"s3://{bucket}/out/", "--local", *options]
    first = run_cli("remove", f"s3://{bucket}/in/", *out, "--manifest", manifest, cwd=tmp_path)
    assert first.returncode == 1
    put(moto, bucket, "in/bad.png", PNG)  # mended
    again = run_cli("remove", f"s3://{bucket}/in/", "--retry-failed", manifest, *out, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("ok ") == 1
    lines = [json.loads(line) for line in get(moto, bucket, "run.jsonl").decode().splitlines()]
    first_run = {line["input"].rsplit("/", 1)[1]: line["status"] for line in lines[:2]}
    assert first_run == {"bad.png": "failed", "good.png": "ok"}
    assert [(lines[2]["input"].rsplit("/", 1)[1], lines[2]["status"])] == [("bad.png", "ok")]
    assert len(lines) == 3
    assert sniff_kind(get(moto, bucket, "out/bad.webp")) == "webp"


async def test_a_memory_output_folder_skips_on_a_rerun(rembg_server: LocalServer) -> None:
    """The remote output folder works over a blocking filesystem too (memory://)."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for name in ("a/cat.png", "dog.png"):
        memory.pipe_file(f"/batch-in/{name}", PNG)
    inputs = ["memory://batch-in/a/cat.png", "memory://batch-in/dog.png"]
    arguments: dict[str, Any] = {
        "output_dir": "memory://batch-out/",
        "root": "memory://batch-in/",
        "skip_existing": True,
        "manifest": "memory://batch-out/manifest.jsonl",
    }
    try:
        async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
            first = [item.status async for item in client.remove_many(inputs, **arguments)]
            second = [item.status async for item in client.remove_many(inputs, **arguments)]
        assert first == ["ok", "ok"]
        assert second == ["skipped", "skipped"]
        assert sniff_kind(memory.cat_file("/batch-out/a/cat.webp")) == "webp"
        assert len(memory.cat_file("/batch-out/manifest.jsonl").splitlines()) == 4
    finally:
        for folder in ("/batch-in", "/batch-out"):
            memory.rm(folder, recursive=True)


async def test_one_path_spelled_twice_into_a_remote_folder_is_made_once(
    rembg_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local input named twice by two spellings of one path (``a.png``, ``./a.png``) is done
    once into a remote folder, as into a local one: not refused as a clash of two inputs."""
    import fsspec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.png").write_bytes(PNG)
    memory = fsspec.filesystem("memory")
    try:
        async with AsyncRembg(TEST_API_KEY, base_url=rembg_server.url) as client:
            run = client.remove_many(["a.png", "./a.png"], output_dir="memory://twice-out/")
            statuses = [item.status async for item in run]
        assert sorted(statuses) == ["ok", "skipped"]  # in completion order
        assert sniff_kind(memory.cat_file("/twice-out/a.webp")) == "webp"
    finally:
        memory.rm("/twice-out", recursive=True)
