"""Where a batch's CPU goes, thread by thread: remove_many or the hand-written gather, alone.

``batch_throughput.py`` runs both clients in one process; here each runs alone in a process of
its own (``--client``), repeatedly, against ``fast_server.py``, and the CPU time of each of the
process's threads is read from ``/proc`` (Linux): the event loop's thread, rembg_async's file
threads. The hand-written version's executor threads end with each ``asyncio.run()``, so only
its total counts. Used to tell the file threads' own work from what handing calls to them
costs; ``--rounds`` alternates the clients, each in a fresh process, and prints medians.

Run: ``python benchmarks/batch_threads.py --rounds 10``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import fast_servers
from batch_throughput import ANSWER_BYTES, with_raw_gather, with_remove_many, workload

CLIENTS = {"raw aiohttp + gather": with_raw_gather, "remove_many": with_remove_many}


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process, by thread id and name."""
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for tid in os.listdir("/proc/self/task"):
        with (
            open(f"/proc/self/task/{tid}/stat") as stat,
            open(f"/proc/self/task/{tid}/comm") as comm,
        ):
            fields = stat.read().rsplit(")", 1)[1].split()
            times[f"{tid} {comm.read().strip()}"] = (int(fields[11]) + int(fields[12])) / ticks
    return times


def run_alone(client: str, url: str, folder: Path, repeats: int) -> None:
    """In this process: ``repeats`` batches of ``client`` after one to warm up; one line out."""
    paths = sorted(folder.glob("*.png"))
    run = CLIENTS[client]

    def batch() -> None:
        with tempfile.TemporaryDirectory() as out:
            asyncio.run(run(url, paths, Path(out), 16))

    batch()  # to warm up
    before, cpu, started = thread_cpu(), time.process_time(), time.perf_counter()
    for _ in range(repeats):
        batch()
    images = repeats * len(paths)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = thread_cpu()
    threads = {name: 1000 * (spent - before.get(name, 0)) / images for name, spent in after.items()}
    shown = ", ".join(f"{name}: {ms:.2f}" for name, ms in threads.items() if ms >= 0.005)
    print(f"{client}\t{images / wall:.0f}\t{1000 * cpu / images:.3f}\t{shown}", flush=True)


def main() -> None:
    """Alternate the clients, each in a fresh process, and print their medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=6, help="batches per process")
    parser.add_argument("--alone", nargs=3, metavar=("CLIENT", "URL", "FOLDER"))
    args = parser.parse_args()
    if args.alone:
        client, url, folder = args.alone
        run_alone(client, url, Path(folder), args.repeats)
        return
    rates: dict[str, list[float]] = {name: [] for name in CLIENTS}
    cpus: dict[str, list[float]] = {name: [] for name in CLIENTS}
    with tempfile.TemporaryDirectory() as folder, fast_servers({ANSWER_BYTES}) as urls:
        workload(300, Path(folder))
        for _ in range(args.rounds):
            for client in CLIENTS:
                command = [sys.executable, __file__, "--repeats", str(args.repeats)]
                line = subprocess.run(
                    [*command, "--alone", client, urls[ANSWER_BYTES], folder],
                    check=True, capture_output=True, text=True,
                ).stdout.strip()  # fmt: skip
                print(line, flush=True)
                _, rate, cpu, _ = line.split("\t")
                rates[client].append(float(rate))
                cpus[client].append(float(cpu))
    for client in CLIENTS:
        print(
            f"{client}: median {statistics.median(rates[client]):.0f} images/s, "
            f"{statistics.median(cpus[client]):.2f} ms CPU per image"
        )


if __name__ == "__main__":
    main()
