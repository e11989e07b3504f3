"""remove_many_dask on a real Dask LocalCluster of worker processes, against the local server
over loopback: lazy submission, results as they complete, one manifest line per input (a
killed worker included), resume, and stops."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import make_image

pytest.importorskip("distributed", reason="the dask extra is not installed")

from distributed import Client, LocalCluster

from rembg_async import AuthenticationError, RemoveOptions
from rembg_async.dask import remove_many_dask
from rembg_async.server import Account, LocalServer, ServerConfig
from tests._valkey import start_valkey

KEY = "dask-test-key-0123456789"
#: The scheduler's HTTP server (the dashboard's) on loopback, on a free port: ``None`` still
#: means port 8787, so two clusters at once (two xdist workers) would clash.
SCHEDULER_HTTP = "127.0.0.1:0"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    """The local server, reached by the workers over loopback."""
    with LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as running:
        yield running


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes, one thread each, for the whole module."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=SCHEDULER_HTTP
    ) as made:
        yield made


def test_two_clusters_at_once_both_start(cluster: LocalCluster) -> None:
    """A second cluster beside the module's starts: each one's HTTP server takes a port of its
    own (a fixed one would clash, and Dask's "port in use" warning is an error here)."""
    with LocalCluster(n_workers=0, processes=False, dashboard_address=SCHEDULER_HTTP) as second:
        ports = {made.scheduler.http_server.port for made in (cluster, second)}
        assert len(ports) == 2


@pytest.fixture
async def dask_client(cluster: LocalCluster) -> AsyncIterator[Client]:
    """An asynchronous client of the module's cluster."""
    async with Client(cluster.scheduler_address, asynchronous=True) as client:
        await client.wait_for_workers(2)
        yield client


def images(folder: Path, count: int) -> list[str]:
    """``count`` small PNGs, by path."""
    folder.mkdir(exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"image-{number:03d}.png"
        path.write_bytes(make_image((24 + number, 16)))
        paths.append(str(path))
    return paths


def manifest_lines(path: Path) -> list[dict[str, object]]:
    """The manifest's entries."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_batch_runs_on_the_workers_lazily_and_streams_its_results(
    dask_client: Client, server: LocalServer, tmp_path: Path
) -> None:
    """30 images, 2 at a time per worker: never more than 4 submitted at once, every image
    made under output_dir by both workers, one manifest line each."""
    paths = images(tmp_path / "in", 30)
    manifest = tmp_path / "out" / "manifest.jsonl"
    in_flight = []
    async with remove_many_dask(
        dask_client,
        paths,
        RemoveOptions(format="png"),
        output_dir=tmp_path / "out",
        root=tmp_path / "in",
        manifest=manifest,
        concurrency_per_worker=2,
        client_options={"api_key": KEY, "base_url": server.url},
    ) as run:
        items = []
        async for item in run:
            items.append(item)
            in_flight.append(run.progress().in_flight)
    assert [item.error for item in items if not item.ok] == []
    assert sorted(item.index for item in items) == list(range(30))
    assert max(in_flight) <= 4
    made = sorted(path.name for path in (tmp_path / "out").glob("*.png"))
    assert made == [f"image-{number:03d}.png" for number in range(30)]
    entries = manifest_lines(manifest)
    assert sorted(str(entry["input"]) for entry in entries) == sorted(paths)
    assert {entry["status"] for entry in entries} == {"ok"}


async def test_a_killed_worker_loses_nothing_and_records_nothing_twice(
    dask_client: Client, server: LocalServer, tmp_path: Path
) -> None:
    """A worker process SIGKILLed mid-run: Dask runs its tasks again elsewhere; every input
    ends as exactly one manifest line and one output."""
    paths = images(tmp_path / "in", 40)
    manifest = tmp_path / "out" / "manifest.jsonl"
    pids = await dask_client.run(os.getpid)
    victim = sorted(pids.values())[0]
    async with remove_many_dask(
        dask_client,
        paths,
        output_dir=tmp_path / "out",
        root=tmp_path / "in",
        manifest=manifest,
        concurrency_per_worker=4,
        client_options={"api_key": KEY, "base_url": server.url},
    ) as run:
        items = []
        async for item in run:
            items.append(item)
            if len(items) == 5:
                os.kill(victim, signal.SIGKILL)
    await dask_client.wait_for_workers(2)  # the nanny restarts it, for the next tests
    entries = manifest_lines(manifest)
    assert sorted(str(entry["input"]) for entry in entries) == sorted(paths)
    assert [item.error for item in items if not item.ok] == []
    assert len(list((tmp_path / "out").glob("*.webp"))) == 40


async def test_a_stopped_run_resumes_from_its_manifest(
    dask_client: Client, server: LocalServer, tmp_path: Path
) -> None:
    """stop() after 6 items, then a second run with the same manifest sends only the rest."""
    paths = images(tmp_path / "in", 20)
    manifest = tmp_path / "out" / "manifest.jsonl"
    settings = {
        "output_dir": tmp_path / "out",
        "root": tmp_path / "in",
        "manifest": manifest,
        "concurrency_per_worker": 1,
        "client_options": {"api_key": KEY, "base_url": server.url},
    }
    async with remove_many_dask(dask_client, paths, **settings) as first:  # type: ignore[arg-type]
        made_first = []
        async for item in first:
            made_first.append(item)
            if len(made_first) == 6:
                first.stop()
    async with remove_many_dask(dask_client, paths, **settings) as second:  # type: ignore[arg-type]
        items = [item async for item in second]
    skipped = {item.input for item in items if item.skipped}
    assert skipped == {item.input for item in made_first}
    assert {item.input for item in items} == set(paths)
    assert all(item.ok for item in items)


async def test_a_refused_key_stops_the_run(
    dask_client: Client, server: LocalServer, tmp_path: Path
) -> None:
    """A wrong key: the run stops submitting after the first answers, with the error."""
    paths = images(tmp_path / "in", 30)
    async with remove_many_dask(
        dask_client,
        paths,
        output_dir=tmp_path / "out",
        root=tmp_path / "in",
        concurrency_per_worker=1,
        client_options={"api_key": "not-the-key-0123456789", "base_url": server.url},
    ) as run:
        items = [item async for item in run]
        left = [value async for value in run.remaining]
    assert isinstance(run.stopped, AuthenticationError)
    assert len(items) <= 2
    assert len(items) + len(left) == 30


async def test_workers_share_a_redis_limiter_and_its_budget(
    dask_client: Client, server: LocalServer, tmp_path: Path
) -> None:
    """redis_url with max_credits=5: the workers share the budget, 5 images are made."""
    valkey = start_valkey()
    try:
        paths = images(tmp_path / "in", 12)
        async with remove_many_dask(
            dask_client,
            paths,
            output_dir=tmp_path / "out",
            root=tmp_path / "in",
            concurrency_per_worker=2,
            client_options={"api_key": KEY, "base_url": server.url},
            redis_url=valkey.url,
            limiter_options={"max_credits": 5, "namespace": tmp_path.name},
        ) as run:
            items = [item async for item in run]
    finally:
        valkey.close()
    assert sum(item.ok for item in items) == 5
    assert type(run.stopped).__name__ == "BudgetExhaustedError"


@pytest.mark.parametrize("where", ["scheduler", "local"])
def test_the_cli_runs_a_batch_on_dask(
    where: str, cluster: LocalCluster, server: LocalServer, tmp_path: Path
) -> None:
    """``rembg-async remove --dask tcp://…`` (the module's cluster) or ``--dask local:1``
    (a cluster of its own): every image made, one line each, exit 0."""
    import subprocess
    import sys

    paths = images(tmp_path / "in", 6)
    address = cluster.scheduler_address if where == "scheduler" else "local:1"
    command = [sys.executable, "-m", "rembg_async", "remove", str(tmp_path / "in")]
    command += ["-o", str(tmp_path / "out"), "--base-url", server.url, "--api-key", KEY]
    command += ["--dask", address, "--manifest", str(tmp_path / "manifest.jsonl")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    made = sorted(path.name for path in (tmp_path / "out").glob("*.webp"))
    assert made == [Path(path).with_suffix(".webp").name for path in paths]
    assert len(manifest_lines(tmp_path / "manifest.jsonl")) == 6


def test_the_cli_gives_the_workers_its_storage_options(
    cluster: LocalCluster, server: LocalServer, tmp_path: Path
) -> None:
    """``remove --dask … -o s3://… --storage-option …``: the workers and the driver reach the
    store with those options (an S3 on loopback, moto), every image made as an object."""
    import subprocess
    import sys

    from tests._moto import start_moto

    moto = start_moto()
    try:
        bucket = moto.new_bucket()
        images(tmp_path / "in", 3)
        options = [
            f"--storage-option=client_kwargs.endpoint_url={moto.url}",
            "--storage-option=key=testing",
            "--storage-option=secret=testing",
        ]
        command = [sys.executable, "-m", "rembg_async", "remove", str(tmp_path / "in")]
        command += ["-o", f"s3://{bucket}/out/", "--base-url", server.url, "--api-key", KEY]
        command += ["--dask", cluster.scheduler_address, *options]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=120, env=environment
        )
        listed = moto.client().list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])
    finally:
        moto.close()
    assert result.returncode == 0, result.stderr
    assert sorted(entry["Key"] for entry in listed) == [
        f"out/image-{number:03d}.webp" for number in range(3)
    ]


async def test_s3_in_s3_out_with_a_manifest_in_s3_and_a_resume(
    dask_client: Client, server: LocalServer
) -> None:
    """Inputs, outputs and the manifest in a real S3 (moto): every image made as an object by
    the workers, one manifest line each; a second run with that manifest sends nothing."""
    from tests._moto import start_moto

    moto = start_moto()
    try:
        bucket = moto.new_bucket()
        s3 = moto.client()
        for number in range(8):
            s3.put_object(
                Bucket=bucket, Key=f"in/image-{number}.png", Body=make_image((30 + number, 20))
            )
        inputs = [f"s3://{bucket}/in/image-{number}.png" for number in range(8)]
        settings = {
            "output_dir": f"s3://{bucket}/out/",
            "root": f"s3://{bucket}/in/",
            "manifest": f"s3://{bucket}/out/manifest.jsonl",
            "concurrency_per_worker": 2,
            "client_options": {
                "api_key": KEY,
                "base_url": server.url,
                "storage_options": moto.storage_options,
            },
        }
        async with remove_many_dask(dask_client, inputs, **settings) as first:  # type: ignore[arg-type]
            made = [item async for item in first]
        async with remove_many_dask(dask_client, inputs, **settings) as second:  # type: ignore[arg-type]
            again = [item async for item in second]
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]
        manifest = s3.get_object(Bucket=bucket, Key="out/manifest.jsonl")["Body"].read()
    finally:
        moto.close()
    assert [item.error for item in made if not item.ok] == []
    assert sorted(item.output_url for item in made) == sorted(
        f"s3://{bucket}/out/image-{number}.webp" for number in range(8)
    )
    assert {item.skipped for item in again} == {True}
    keys = {entry["Key"] for entry in listed}
    assert {f"out/image-{number}.webp" for number in range(8)} <= keys
    lines = [json.loads(line) for line in manifest.decode().splitlines()]
    assert sorted(str(line["input"]) for line in lines if line["status"] == "ok") == sorted(inputs)


async def test_workers_share_a_result_cache(
    dask_client: Client, server: LocalServer, tmp_path: Path
) -> None:
    """A folder cache in client_options reaches every worker: a second run into a fresh
    output folder is served by it (every item cached, no credit, the manifest says so)."""
    from rembg_async import AsyncRembg

    paths = images(tmp_path / "in", 6)
    options = {"api_key": KEY, "base_url": server.url, "cache": str(tmp_path / "cache")}
    async with AsyncRembg(KEY, base_url=server.url) as counter:
        before = (await counter.membership_usage()).api_usage
        runs = []
        for output in ("first", "second"):
            async with remove_many_dask(
                dask_client,
                paths,
                output_dir=tmp_path / output,
                root=tmp_path / "in",
                manifest=tmp_path / f"{output}.jsonl",
                client_options=options,
            ) as run:
                runs.append([item async for item in run])
        spent = (await counter.membership_usage()).api_usage - before
    first, second = runs
    assert spent == 6
    assert [item.cached for item in first] == [False] * 6
    assert all(item.ok and item.cached and item.credits == 0 for item in second)
    assert len(list((tmp_path / "second").glob("*.webp"))) == 6
    assert {entry["cached"] for entry in manifest_lines(tmp_path / "second.jsonl")} == {True}
