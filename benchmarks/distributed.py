"""A batch read from and written to S3 (moto on loopback): Dask LocalCluster against one process.

``--images`` small PNGs (64×48) are put in a moto S3 bucket; the answers come from
``fast_server.py`` (drains the upload, answers fixed bytes), so what is measured is the
batch's own machinery. Each run reads ``s3://…/in/`` and writes ``s3://…/out-…/``:

- **one process**: ``AsyncRembg.remove_many`` at ``--concurrency``;
- **dask**: ``remove_many_dask`` on a ``LocalCluster`` of ``--workers`` processes (one thread
  each, started beforehand and restarted before each run), ``--concurrency`` ÷ workers images
  at once on each.

Each run is a process of its own (the driver): images/s, the time to the first result, the
driver's peak RSS and (dask) the workers' peak RSS, at two batch sizes to show memory flat in
the number of inputs. Medians of ``--repeats`` runs, round-robin.

Run: ``python benchmarks/distributed.py`` (``--images 500,2000``, ``--repeats 3``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

HERE = Path(__file__).parent
# This file is named as Dask's package is: its folder goes last on the path, so that
# `import distributed` finds Dask's, and `_common` is still found.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE.resolve()]
sys.path += [str(HERE), str(HERE.parent)]
from _common import BENCH_KEY, machine  # noqa: E402

from tests._moto import Moto, start_moto  # noqa: E402

ANSWER_BYTES = 20 * 1024


def fill(moto: Moto, count: int) -> str:
    """A bucket with ``count`` small PNGs under ``in/``; its URL."""
    buffer = io.BytesIO()
    Image.open(HERE.parent / "examples" / "images" / "mug.jpg").resize((64, 48)).save(buffer, "PNG")
    bucket, client = moto.new_bucket(), moto.client()
    for number in range(count):
        client.put_object(Bucket=bucket, Key=f"in/in-{number:05d}.png", Body=buffer.getvalue())
    return f"s3://{bucket}"


def peak_rss_mib() -> float:
    """This process's peak RSS so far: VmHWM, which starts afresh at exec (getrusage's
    ru_maxrss does not: it would carry the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError("VmHWM")


async def listing(storage: dict[str, Any], bucket: str) -> list[str]:
    """The input URLs, listed once before the clock starts."""
    import fsspec

    fs = fsspec.filesystem("s3", asynchronous=True, **storage)
    session = await fs.set_session()
    try:
        found = await fs._find(f"{bucket}/in/")
    finally:
        await session.close()
    return sorted(f"s3://{path}" for path in found)


async def one_process(job: dict[str, Any]) -> dict[str, float]:
    """remove_many in this process."""
    from rembg_async import AsyncRembg

    inputs = await listing(job["storage"], job["bucket"])
    started, first, made = time.perf_counter(), None, 0
    async with (
        AsyncRembg(BENCH_KEY, base_url=job["url"], storage_options=job["storage"]) as client,
        client.remove_many(
            inputs,
            concurrency=job["concurrency"],
            output_dir=f"{job['bucket']}/out-{job['tag']}/",
            root=f"{job['bucket']}/in/",
        ) as run,
    ):
        async for item in run:
            assert item.ok, item.error
            made += 1
            first = first or time.perf_counter() - started
    wall = time.perf_counter() - started
    return {"rate": made / wall, "first": first or wall, "made": made}


async def on_dask(job: dict[str, Any]) -> dict[str, float]:
    """remove_many_dask on the running cluster, its workers restarted first."""
    from distributed import Client

    from rembg_async.dask import remove_many_dask

    inputs = await listing(job["storage"], job["bucket"])
    async with Client(job["scheduler"], asynchronous=True) as dask_client:
        workers = job["workers"]
        await dask_client.restart()  # fresh workers: their peak RSS is this run's
        await dask_client.wait_for_workers(workers)
        started, first, made = time.perf_counter(), None, 0
        async with remove_many_dask(
            dask_client,
            inputs,
            output_dir=f"{job['bucket']}/out-{job['tag']}/",
            root=f"{job['bucket']}/in/",
            concurrency_per_worker=max(1, job["concurrency"] // workers),
            client_options={
                "api_key": BENCH_KEY,
                "base_url": job["url"],
                "storage_options": job["storage"],
            },
        ) as run:
            async for item in run:
                assert item.ok, item.error
                made += 1
                first = first or time.perf_counter() - started
        wall = time.perf_counter() - started
        peaks = await dask_client.run(peak_rss_mib)
    return {"rate": made / wall, "first": first or wall, "made": made,
            "workers_rss": max(peaks.values())}  # fmt: skip


def measure(job: dict[str, Any]) -> dict[str, float]:
    """One run, in a driver process of its own."""
    command = [sys.executable, __file__, "--job", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {job['engine']} run failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    """Both engines at each size, ``--repeats`` times round-robin; a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="500,2000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:  # a driver process: one run, its figures as a JSON line
        job = json.loads(args.job)
        figures = asyncio.run(on_dask(job) if job["engine"] == "dask" else one_process(job))
        print(json.dumps({**figures, "driver_rss": peak_rss_mib()}))
        return
    from distributed import LocalCluster

    moto = start_moto()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "fast_server.py"), "--answer-bytes", str(ANSWER_BYTES)],
        stdout=subprocess.PIPE,
        text=True,
    )
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        with LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            buckets = {count: fill(moto, count) for count in map(int, args.images.split(","))}
            for repeat in range(args.repeats):
                for count, bucket in buckets.items():
                    for engine in ("one process", "dask"):
                        job = {
                            "engine": "dask" if engine == "dask" else "one",
                            "url": url,
                            "bucket": bucket,
                            "storage": moto.storage_options,
                            "tag": f"{engine.replace(' ', '-')}-{repeat}",
                            "concurrency": args.concurrency,
                            "scheduler": cluster.scheduler_address,
                            "workers": args.workers,
                        }
                        figures = measure(job)
                        results.setdefault((engine, count), []).append(figures)
                        print(engine, count, figures, file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
        moto.close()
    print(report(results, args))


def report(results: dict[tuple[str, int], list[dict[str, float]]], args: Any) -> str:
    """The Markdown table (medians)."""
    lines = [
        f"Machine: {machine()}. Written by `python benchmarks/distributed.py` (--workers "
        f"{args.workers}, --concurrency {args.concurrency}, --repeats {args.repeats}; medians).",
        "",
        "| engine | images | images/s | first result, s | driver peak RSS, MiB "
        "| worker peak RSS, MiB |",
        "|---|---|---|---|---|---|",
    ]
    for (engine, count), runs in results.items():

        def median(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [run[key] for run in runs if key in run]
            return f"{statistics.median(values):.2f}" if values else "–"

        lines.append(
            f"| {engine} | {count} | {median('rate')} | {median('first')} | "
            f"{median('driver_rss')} | {median('workers_rss')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
