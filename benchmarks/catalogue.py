"""A catalogue of tiny images: the CLI killed at 40 % and resumed, a re-run with nothing to do,
and the library's ``remove_many`` over a generator; peak memory as the batch grows.

The tree (``--images`` tiny PNGs, ``--per-folder`` to a folder) is built once under ``--data``
and reused by later runs (the time its building took is said). The server is
``fast_server.py`` on 127.0.0.1 answering a valid 1×1 PNG, and counting what it answered: the
requests paid twice are those answered beyond one per input.

1. ``rembg-async remove TREE -o OUT --format png`` (plain output, to /dev/null), SIGKILLed
   once the server has answered ``--kill-at`` of the inputs;
2. the same command again (the resume): its time, images/s;
3. the same command a third time (nothing to do): its time;
4. checks: every input has exactly one output, each the server's answer byte for byte, and
   no temporary file is left; the requests paid twice;
5. ``remove_many`` over a generator of the first N paths (``--sizes``), into a fresh folder.

Peak RSS is each measured process's own VmHWM from ``/proc/PID/status``: read at its exit by
the process itself (``atexit``), and polled by this script until then (the killed run: the
last reading before its SIGKILL). Not ``ru_maxrss``, which carries a parent's peak across
``exec``.

Run alone on the machine: ``python benchmarks/catalogue.py --data /work/catalogue-data``
(``--code DIR`` measures another checkout's rembg_async, e.g. an export of main).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _common import BENCH_KEY, fast_servers, machine
from fast_server import tiny_png

HERE = Path(__file__).parent
INDEX_NAME = ".rembg-async-index.jsonl"
#: A partial result's name, as the library writes it (``rembg-….part``).
PARTIAL = re.compile(r"^rembg-.*\.part$")

#: Runs the CLI's main() and, at exit, writes the process's own VmHWM (KiB) to a file.
CLI_SCRIPT = """
import atexit, os, sys
def peak():
    status = open("/proc/self/status").read()
    kib = next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM:"))
    open(os.environ["CATALOGUE_PEAK"], "w").write(kib)
atexit.register(peak)
from rembg_async._cli import main
sys.exit(main(sys.argv[1:]))
"""

#: remove_many over a generator of the first N inputs of the tree (sorted folder by folder).
LIBRARY_SCRIPT = """
import atexit, os, sys, time
def peak():
    status = open("/proc/self/status").read()
    kib = next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM:"))
    open(os.environ["CATALOGUE_PEAK"], "w").write(kib)
atexit.register(peak)
from rembg_async import AsyncRembg
from rembg_async._loops import run
url, key, tree, out, count, concurrency = sys.argv[1:7]
def inputs():
    left = int(count)
    for folder in sorted(os.listdir(tree)):
        for name in sorted(os.listdir(os.path.join(tree, folder))):
            if left == 0:
                return
            left -= 1
            yield os.path.join(tree, folder, name)
async def main():
    made = failed = 0
    started = time.perf_counter()
    async with AsyncRembg(key, base_url=url) as client, client.remove_many(
        inputs(), {"format": "png"}, concurrency=int(concurrency), output_dir=out, root=tree
    ) as batch:
        async for item in batch:
            made += item.ok
            failed += not item.ok
    print(made, failed, time.perf_counter() - started)
run(main())
"""


def build(data: Path, images: int, per_folder: int) -> tuple[Path, float, bool]:
    """The tree of ``images`` tiny PNGs (built once: a marker says it is whole), the seconds
    its building took, and whether it was built now."""
    tree = data / f"tree-{images}"
    marker = data / f"tree-{images}.built"
    if marker.exists():
        return tree, float(marker.read_text()), False
    shutil.rmtree(tree, ignore_errors=True)
    started = time.perf_counter()
    image = tiny_png()
    for number in range(images):
        if number % per_folder == 0:
            folder = tree / f"d{number // per_folder:05d}"
            folder.mkdir(parents=True)
        descriptor = os.open(folder / f"img-{number:08d}.png", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(descriptor, image)
        os.close(descriptor)
    took = time.perf_counter() - started
    marker.write_text(f"{took:.1f}")
    return tree, took, True


def answered(url: str) -> int:
    """How many uploads the fast server answered so far."""
    with urllib.request.urlopen(f"{url}/count") as response:  # 127.0.0.1 only
        return int(response.read())


class Measured:
    """A measured child process: its peak RSS (VmHWM) polled, and read at its exit."""

    def __init__(self, command: list[str], code: Path, log: Path, *, output: bool = False) -> None:
        self._peak_file = Path(tempfile.mktemp(prefix="catalogue-peak-"))
        env = {**os.environ, "PYTHONPATH": str(code), "CATALOGUE_PEAK": str(self._peak_file)}
        self.started = time.perf_counter()
        self._log = log.open("w")
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE if output else subprocess.DEVNULL,
            stderr=self._log,
            text=True,
        )
        self.polled_kib = 0
        self.cpu = 0.0
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while self.process.poll() is None:
            self.read_peak()
            time.sleep(0.1)

    def read_peak(self) -> None:
        """Read the process's VmHWM now."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.polled_kib = max(self.polled_kib, int(line.split()[1]))
        except (OSError, ValueError):
            pass  # gone meanwhile

    def kill(self) -> None:
        """Read the peak, then SIGKILL."""
        self.read_peak()
        self.process.send_signal(signal.SIGKILL)

    def wait(self) -> tuple[float, float, str]:
        """Its wall time, peak RSS in MiB (its own reading at exit, else the last polled) and
        standard output; its CPU seconds (user + system) in ``cpu``."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        output = self.process.communicate()[0] or ""
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only this child was reaped
        self.cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        wall = time.perf_counter() - self.started
        self._log.close()
        kib = self.polled_kib
        if self._peak_file.exists():
            kib = max(kib, int(self._peak_file.read_text()))
            self._peak_file.unlink()
        return wall, kib / 1024, output


def cli_command(tree: Path, out: Path, url: str, concurrency: int) -> list[str]:
    """The CLI, as a user runs it against the fast server (its output piped)."""
    return [
        sys.executable, "-c", CLI_SCRIPT, "remove", str(tree), "-o", str(out), "--format", "png",
        "--base-url", url, "--api-key", BENCH_KEY, "--allow-insecure-http",
        "--concurrency", str(concurrency),
    ]  # fmt: skip


def summary_made(log: Path) -> tuple[int, int]:
    """Made and skipped, from the CLI's summary on stderr."""
    found = re.search(r"made (\d+), skipped (\d+)", log.read_text())
    return (int(found[1]), int(found[2])) if found else (0, 0)


def run_cli(args: argparse.Namespace, tree: Path, url: str) -> None:
    """The killed run, the resume, the re-run, and the checks."""
    out = args.data / f"out-cli-{args.images}"
    shutil.rmtree(out, ignore_errors=True)
    logs = Path(tempfile.mkdtemp(prefix="catalogue-logs-"))
    command = cli_command(tree, out, url, args.concurrency)
    before = answered(url)
    first = Measured(command, args.code, logs / "first.log")
    goal = before + int(args.images * args.kill_at)
    while first.process.poll() is None and answered(url) < goal:
        time.sleep(0.05)
    killed_at = answered(url) - before
    first.kill()
    wall, peak, _ = first.wait()
    rate = killed_at / wall
    print(
        f"| 1. killed at {killed_at} answered | {wall:.1f} | {rate:.0f} | {first.cpu:.1f} "
        f"| {peak:.0f} |"
    )
    second = Measured(command, args.code, logs / "second.log")
    wall, peak, _ = second.wait()
    made, skipped = summary_made(logs / "second.log")
    code = second.process.returncode
    print(
        f"| 2. resume (exit {code}): made {made}, skipped {skipped} | {wall:.1f} "
        f"| {made / wall:.0f} | {second.cpu:.1f} | {peak:.0f} |"
    )
    paid = answered(url)
    third = Measured(command, args.code, logs / "third.log")
    wall, peak, _ = third.wait()
    made, skipped = summary_made(logs / "third.log")
    code = third.process.returncode
    print(
        f"| 3. nothing to do (exit {code}): made {made}, skipped {skipped} | {wall:.1f} | - "
        f"| {third.cpu:.1f} | {peak:.0f} |"
    )
    sent_again = answered(url) - paid
    outputs, wrong, missing, partial = check_outputs(tree, out)
    print(
        f"\nchecks: {outputs} outputs for {args.images} inputs, {missing} missing, {wrong} not "
        f"the server's answer, {partial} temporary file(s) left; requests paid twice: "
        f"{paid - before - args.images}; sent by the re-run: {sent_again}; logs in {logs}"
    )
    shutil.rmtree(out, ignore_errors=True)


def check_outputs(tree: Path, out: Path) -> tuple[int, int, int, int]:
    """Outputs found, outputs that are not the answer, inputs without one, temporary files."""
    answer = tiny_png()
    outputs = wrong = missing = partial = 0
    for folder in sorted(os.listdir(tree)):
        inputs = set(os.listdir(tree / folder))
        made = set(os.listdir(out / folder)) if (out / folder).is_dir() else set()
        made = {name for name in made if name != INDEX_NAME and not PARTIAL.match(name)}
        missing += len(inputs - made)
        outputs += len(made)
        for name in made:
            if (out / folder / name).read_bytes() != answer:
                wrong += 1
    for _, _, names in os.walk(out):  # anywhere else, too
        partial += sum(1 for name in names if PARTIAL.match(name))
    return outputs, wrong, missing, partial


def run_library(args: argparse.Namespace, url: str, sizes: list[int]) -> None:
    """remove_many over a generator at each size, each into a fresh folder."""
    print("\n| remove_many over a generator | time, s | images/s | CPU, s | peak RSS, MiB |")
    print("|---|---|---|---|---|")
    for size in sizes:
        tree, took, built = build(args.data, max(size, args.images), args.per_folder)
        if built:
            print(f"(built {tree} in {took:.0f} s)")
        out = args.data / f"out-library-{size}"
        shutil.rmtree(out, ignore_errors=True)
        command = [
            sys.executable, "-c", LIBRARY_SCRIPT, url, BENCH_KEY, str(tree), str(out), str(size),
            str(args.concurrency),
        ]  # fmt: skip
        log = Path(tempfile.mktemp(prefix="catalogue-library-"))
        measured = Measured(command, args.code, log, output=True)
        _, peak, output = measured.wait()
        if not output.strip():
            print(f"| {size} inputs: failed, see {log} | | | | {peak:.0f} |")
            continue
        made, failed, seconds = output.split()
        print(
            f"| {size} inputs: made {made}, failed {failed} | {float(seconds):.1f} "
            f"| {int(made) / float(seconds):.0f} | {measured.cpu:.1f} | {peak:.0f} |"
        )
        shutil.rmtree(out, ignore_errors=True)


def sizes_of(text: str) -> list[int]:
    """``100000,1000000`` as numbers."""
    return [int(size) for size in text.split(",") if size]


def main() -> None:
    """Print the figures as Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("/work/catalogue-data"))
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--per-folder", type=int, default=1000)
    parser.add_argument("--kill-at", type=float, default=0.4)
    parser.add_argument("--sizes", type=sizes_of, default=[100_000, 1_000_000])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--code", type=Path, default=HERE.parent, help="the rembg_async checkout measured"
    )
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--skip-library", action="store_true")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; code: {args.code}")
    tree, took, built = build(args.data, args.images, args.per_folder)
    folders = -(-args.images // args.per_folder)
    how = "built" if built else "reused; built"
    print(f"tree: {args.images} PNGs in {folders} folders, {how} in {took:.1f} s")
    with fast_servers({0}, "--valid-png") as urls:
        url = urls[0]
        if not args.skip_cli:
            print(f"\n| CLI, {args.images} inputs | time, s | images/s | CPU, s | peak RSS, MiB |")
            print("|---|---|---|---|---|")
            run_cli(args, tree, url)
        if not args.skip_library:
            run_library(args, url, args.sizes)


if __name__ == "__main__":
    main()
