"""Batches against a short-term rate limit the client is not told: images/s ÷ R, 429s, failures.

The local server (``_limited_server.py``, in its own process) admits R requests per second;
a batch of about ``R × --seconds`` small images goes through it with default settings, by the
library (``remove_many``) and by the CLI (``rembg-async remove``), for this branch's code and
for ``--old`` (default: where the branch left main), unpacked with ``git archive``. One more
run doubles R half-way, as after a plan upgrade: how long until the admitted rate (over 2 s)
reaches 0.8 of the new R, and the rate over the rest of the run.

Goals, for every run (the tables give the median run and the worst): 0 failed items, ≥ 0.9 R,
≤ 5 % of requests answered 429; after R doubles (5 → 10 by default), ≥ 0.8 of the new R within
10 s.

Run: ``python benchmarks/rate_limited.py`` (``--seconds``, ``--rates``, ``--runs``...).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import attrs
from _common import BENCH_KEY, machine
from PIL import Image

HERE = Path(__file__).parent
ROOT = HERE.parent


@attrs.frozen
class Scenario:
    """A limit of ``rate`` per second (doubled after ``double_at`` seconds when set)."""

    rate: int
    double_at: float | None = None

    @property
    def name(self) -> str:
        """How the tables name it."""
        if self.double_at is None:
            return f"R = {self.rate}"
        return f"R = {self.rate} → {2 * self.rate}"

    @property
    def mean_rate(self) -> float:
        """R, or the mean of R and 2 R when it doubles half-way."""
        return self.rate if self.double_at is None else 1.5 * self.rate

    def images(self, seconds: float) -> int:
        """About ``seconds`` of work at the limit."""
        if self.double_at is None:
            return math.ceil(self.rate * seconds)
        return math.ceil(self.rate * self.double_at + 2 * self.rate * (seconds - self.double_at))


@attrs.frozen
class Outcome:
    """One run."""

    made: int
    failed: int
    wall: float
    answers: int
    refused: int
    admitted: list[float]

    def per_limit(self, rate: float) -> float:
        """Images per second ÷ R."""
        return self.made / self.wall / rate

    @property
    def refused_share(self) -> float:
        """Share of /rmbg requests answered 429."""
        return self.refused / max(1, self.answers)


def make_inputs(count: int, folder: Path) -> None:
    """``count`` copies of a small PNG (64×48): the server's own speed stays out of the way."""
    buffer = io.BytesIO()
    Image.open(ROOT / "examples" / "images" / "mug.jpg").resize((64, 48)).save(buffer, "PNG")
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"in-{number:05d}.png").write_bytes(buffer.getvalue())


def unpack(revision: str, into: Path) -> Path:
    """The package as it was at ``revision``, for PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "rembg_async"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_once(scenario: Scenario, seconds: float, client: str, code: Path, work: Path) -> Outcome:
    """Start a limited server, run one batch, read the server's counts."""
    count = scenario.images(seconds)
    inputs, out = work / "in", work / "out"
    make_inputs(count, inputs)
    command = [sys.executable, str(HERE / "_limited_server.py"), "--limit", str(scenario.rate)]
    command += ["--key", BENCH_KEY]
    if scenario.double_at is not None:
        command += ["--double-at", str(scenario.double_at)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        made, failed, wall = _run_client(client, url, code, inputs, out, count)
        with urllib.request.urlopen(f"{url}/bench/stats") as answer:
            stats = json.load(answer)
    finally:
        server.terminate()
        server.wait(timeout=30)
    statuses = {int(code): number for code, number in stats["statuses"].items()}
    return Outcome(
        made=made,
        failed=failed,
        wall=wall,
        answers=sum(statuses.values()),
        refused=statuses.get(429, 0),
        admitted=stats["admitted"],
    )


def _run_client(
    client: str, url: str, code: Path, inputs: Path, out: Path, count: int
) -> tuple[int, int, float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    if client == "library":
        command = [sys.executable, str(HERE / "_rate_client.py"), url, BENCH_KEY, str(inputs)]
        result = subprocess.run([*command, str(out)], env=env, capture_output=True, text=True)
        line = json.loads(result.stdout.strip().splitlines()[-1])
        return line["made"], line["failed"], line["wall"]
    command = [sys.executable, "-m", "rembg_async", "remove", str(inputs), "-o", str(out)]
    command += ["--base-url", url, "--api-key", BENCH_KEY]
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, text=True, cwd=inputs.parent)
    wall = time.perf_counter() - started
    # Only the cut-outs: the CLI also leaves its manifest in the output folder.
    stems = {path.stem for path in inputs.iterdir()}
    made = sum(path.stem in stems for path in out.iterdir()) if out.exists() else 0
    return made, count - made, wall


def recovery(outcome: Outcome, scenario: Scenario) -> tuple[float | None, float]:
    """Seconds after the doubling until the admitted rate over 2 s reaches 0.8 × the new R;
    and the admitted rate from 10 s after the doubling to the end, ÷ the new R."""
    assert scenario.double_at is not None
    new_rate, start = 2 * scenario.rate, scenario.double_at
    moments = outcome.admitted
    reached = None
    step = 0.1
    for tick in range(int(60 / step)):
        end = start + tick * step
        if sum(1 for moment in moments if end - 2 <= moment < end) / 2 >= 0.8 * new_rate:
            reached = end - start
            break
    last = max(moments, default=start + 10)
    later = [moment for moment in moments if moment >= start + 10]
    return reached, len(later) / max(1e-9, last - start - 10) / new_rate


def main() -> None:
    """Every scenario × client × code, round-robin, ``--runs`` times; a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rates", default="1,2,5,10,20")
    parser.add_argument("--double", type=int, default=5, help="R of the doubling run (0: none)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--clients", default="library,cli")
    parser.add_argument("--old", default=None, help="today's code (default: merge-base with main)")
    parser.add_argument("--old-path", type=Path, help="today's code, already unpacked there")
    parser.add_argument("--only-new", action="store_true")
    args = parser.parse_args()
    scenarios = [Scenario(int(rate)) for rate in args.rates.split(",") if rate]
    if args.double:
        scenarios.append(Scenario(args.double, double_at=args.seconds / 2))
    with tempfile.TemporaryDirectory() as tmp:
        codes = {"new": ROOT}
        if args.old_path:
            codes["old"] = args.old_path
        elif not args.only_new:
            old = args.old or subprocess.run(
                ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
                check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            codes[f"old ({old[:7]})"] = unpack(old, Path(tmp) / "old")
        results: dict[tuple[str, str, str], list[Outcome]] = {}
        for run in range(args.runs):
            for scenario in scenarios:
                for client in args.clients.split(","):
                    for label, code in codes.items():
                        work = (
                            Path(tmp)
                            / f"{run}-{scenario.rate}-{scenario.double_at}-{client}-{label[:3]}"
                        )
                        work.mkdir()
                        outcome = run_once(scenario, args.seconds, client, code, work)
                        results.setdefault((scenario.name, client, label), []).append(outcome)
                        print(_row(scenario, client, label, [outcome]), file=sys.stderr)
        print(report(scenarios, results, args))


def _row(scenario: Scenario, client: str, label: str, outcomes: list[Outcome]) -> str:
    """The median run's figures, each with the worst run's beside it (``median / worst``)."""
    middle = _median(outcomes)
    rates = [outcome.per_limit(scenario.mean_rate) for outcome in outcomes]
    shares = [100 * outcome.refused_share for outcome in outcomes]
    cells = [
        scenario.name,
        client,
        label,
        str(len(outcomes)),
        str(middle.made + middle.failed),
        f"{middle.wall:.1f}",
        f"{middle.per_limit(scenario.mean_rate):.2f} / {min(rates):.2f}",
        f"{100 * middle.refused_share:.1f} / {max(shares):.1f} %",
        str(max(outcome.failed for outcome in outcomes)),
    ]
    if scenario.double_at is not None:
        recoveries = [recovery(outcome, scenario) for outcome in outcomes]
        reached = [math.inf if took is None else took for took, _ in recoveries]
        later = recovery(middle, scenario)[1]
        cells.append(f"{_seconds(recovery(middle, scenario)[0])} / {_seconds(max(reached))}")
        cells.append(f"{later:.2f} / {min(rate for _, rate in recoveries):.2f}")
    return "| " + " | ".join(cells) + " |"


def _seconds(took: float | None) -> str:
    return "never" if took is None or math.isinf(took) else f"{took:.1f} s"


def _median(outcomes: list[Outcome]) -> Outcome:
    """The run with the median images/s."""
    ordered = sorted(outcomes, key=lambda outcome: outcome.made / outcome.wall)
    return ordered[len(ordered) // 2]


def report(
    scenarios: list[Scenario], results: dict[tuple[str, str, str], list[Outcome]], args: Any
) -> str:
    """The Markdown tables."""
    lines = [
        f"Machine: {machine()}. Written by `python benchmarks/rate_limited.py` "
        f"(--seconds {args.seconds:g}, --runs {args.runs}). Each figure is the median run's "
        "(by images/s), then the worst run's; failed: the most in any run.",
        "",
        "| limit | client | code | runs | images | wall s | images/s ÷ R | 429 share | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    doubling = []
    for scenario in scenarios:
        for (name, client, label), outcomes in results.items():
            if name != scenario.name:
                continue
            row = _row(scenario, client, label, outcomes)
            (doubling if scenario.double_at is not None else lines).append(row)
    if doubling:
        lines += [
            "",
            "R doubles half-way (images/s ÷ R uses the mean limit, 1.5 R):",
            "",
            "| limit | client | code | runs | images | wall s | images/s ÷ R | 429 share | failed "
            "| to 0.8 × new R | rate ÷ new R from +10 s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *doubling,
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
