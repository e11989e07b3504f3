"""rembg_async against the peers, side by side in one run; writes RESULTS.md and a chart.

Run: ``python benchmarks/compare.py`` (``--quick`` for one repetition instead of three).

It starts its own servers on 127.0.0.1: ``fast_server.py`` (drains the upload, answers fixed
bytes: the server is not what is measured) and, for an end-to-end figure, the full local
server. Each client runs each scenario in a fresh process (``_clients.py``; rembg.js under
Node, installed from the npm registry into a temporary folder), which reports its wall and CPU
time and its peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import attrs
from _clients import CLIENTS
from _common import BENCH_KEY, fast_servers, machine, server_process
from PIL import Image

HERE = Path(__file__).parent
MIB = 1024 * 1024
REMBG_JS = "@remove-background-ai/rembg.js@1.3.1"
FLOOR = "raw aiohttp"

REMBG_JS_DRIVER = r"""
const axios = require('axios');
const { rembg } = require('@remove-background-ai/rembg.js');
const [url, input, count, concurrency, apiKey] = process.argv.slice(2);
axios.interceptors.request.use((c) => {
  c.url = c.url.replace('https://api.rembg.com', url);
  return c;
});
const ignore = () => {};
let started = 0;
async function worker() {
  while (started < Number(count)) {
    started += 1;
    const { cleanup } = await rembg({
      apiKey, inputImage: input, onUploadProgress: ignore, onDownloadProgress: ignore,
    });
    await cleanup();
  }
}
const before = process.memoryUsage().rss / 1048576;
const cpu = process.cpuUsage();
const t0 = process.hrtime.bigint();
Promise.all(Array.from({ length: Number(concurrency) }, worker)).then(() => {
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const used = process.cpuUsage(cpu);
  const peak = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify({ wall, cpu: (used.user + used.system) / 1e6, before, peak }));
  process.exit(0);
});
"""


@attrs.frozen
class Scenario:
    """A workload: an input of ``upload`` bytes sent ``requests`` times, ``concurrency`` at a
    time, to a server answering ``answer`` bytes (or the full local server when ``full``)."""

    name: str
    upload: int
    answer: int
    requests: int
    concurrency: int
    full: bool = False
    repeat: bool = True  # throughput figures are medians; single transfers are run once


SCENARIOS = [
    Scenario("200 × 1 MB up, 200 KB down, concurrency 16", MIB, 200 * 1024, 200, 16),
    Scenario("one 50 MB upload", 50 * MIB - 1024, 200 * 1024, 1, 1, repeat=False),
    Scenario("one 50 MB download", 1024, 50 * MIB, 1, 1, repeat=False),
    Scenario("1,000 small requests, concurrency 64", 1024, 1024, 1_000, 64),
    Scenario("10,000 small requests, concurrency 64", 1024, 1024, 10_000, 64),
    Scenario(
        "end to end: 100 × 1024×768 JPEG, local server, concurrency 8", 0, 0, 100, 8, full=True
    ),
]


@attrs.frozen
class Figure:
    """What one client did in one scenario (medians over the repetitions)."""

    wall: float
    cpu: float | None
    growth: float  # peak RSS minus RSS before, MiB
    requests: int

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.wall


def input_file(folder: Path, scenario: Scenario) -> Path:
    """The scenario's input: a real photo for the end-to-end run, else a PNG header + zeros."""
    path = folder / f"input-{scenario.upload}.png"
    if scenario.full:
        buffer = io.BytesIO()
        Image.open(HERE.parent / "examples" / "images" / "mug.jpg").resize((1024, 768)).save(
            buffer, "JPEG"
        )
        path = folder / "photo.jpg"
        path.write_bytes(buffer.getvalue())
    elif not path.exists():
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(scenario.upload - 8))
    return path


def install_rembg_js(folder: Path) -> Path | None:
    """rembg.js and the driver in ``folder``, or None without node and npm."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    command = [
        "npm",
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        "--prefix",
        str(folder),
        REMBG_JS,
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (folder / "driver.js").write_text(REMBG_JS_DRIVER)
    return folder


def run_once(
    client: str, url: str, source: Path, scenario: Scenario, js: Path | None
) -> dict[str, float]:
    """One run of one client in a fresh process."""
    with tempfile.TemporaryDirectory() as out:
        if client == "rembg.js":
            assert js is not None
            command = [
                "node", "driver.js", url, str(source), str(scenario.requests),
                str(scenario.concurrency), BENCH_KEY,
            ]  # fmt: skip
            result = subprocess.run(
                command, cwd=js, capture_output=True, text=True, check=True, timeout=1800
            )
        else:
            command = [
                sys.executable, str(HERE / "_clients.py"), client, url, str(source), out,
                str(scenario.requests), str(scenario.concurrency),
            ]  # fmt: skip
            result = subprocess.run(
                command, capture_output=True, text=True, check=True, timeout=1800
            )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def measure_all(
    clients: list[str], url: str, source: Path, scenario: Scenario, js: Path | None, repeats: int
) -> dict[str, Figure]:
    """Every client's median figures; repetitions go round-robin over the clients, so a
    slow spell of the machine falls on all of them alike."""
    runs: dict[str, list[dict[str, float]]] = {client: [] for client in clients}
    for _ in range(repeats if scenario.repeat else 1):
        for client in clients:
            runs[client].append(run_once(client, url, source, scenario, js))
    return {client: _median_figure(results, scenario) for client, results in runs.items()}


def _median_figure(runs: list[dict[str, float]], scenario: Scenario) -> Figure:
    cpu = [run["cpu"] for run in runs if run["cpu"] is not None]
    return Figure(
        wall=statistics.median(run["wall"] for run in runs),
        cpu=statistics.median(cpu) if cpu else None,
        growth=statistics.median(run["peak"] - run["before"] for run in runs),
        requests=scenario.requests,
    )


def table(scenario: Scenario, figures: dict[str, Figure]) -> list[str]:
    """The Markdown table of one scenario, each figure with its ratio to raw aiohttp."""
    floor = figures[FLOOR]
    lines = [
        f"### {scenario.name}",
        "",
        "| client | wall s | req/s | × raw | CPU s | CPU × raw | RSS growth MiB | vs raw MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for client, figure in figures.items():
        cpu = f"{figure.cpu:.2f}" if figure.cpu is not None else "–"
        cpu_ratio = f"{figure.cpu / floor.cpu:.2f}" if figure.cpu and floor.cpu else "–"
        speed = f"{figure.wall:.2f} | {figure.rate:.0f} | {figure.rate / floor.rate:.2f}"
        memory = f"{figure.growth:.1f} | {figure.growth - floor.growth:+.1f}"
        lines.append(f"| {client} | {speed} | {cpu} | {cpu_ratio} | {memory} |")
    return [*lines, ""]


def _speed(figure: Figure, raw: Figure) -> str:
    return f"{figure.rate:.0f} ({figure.rate / raw.rate:.2f})"


def _cpu(figure: Figure, raw: Figure) -> str:
    return f"{figure.cpu / raw.cpu:.2f}" if figure.cpu and raw.cpu else "–"


def _memory(figure: Figure, raw: Figure) -> str:
    return f"{figure.growth:.1f}"


#: The three tables of RESULTS.md: a title, and a cell from a figure and raw aiohttp's.
METRICS: tuple[tuple[str, Callable[[Figure, Figure], str]], ...] = (
    ("requests per second (× raw aiohttp)", _speed),
    ("CPU per request, × raw aiohttp", _cpu),
    ("peak RSS growth, MiB", _memory),
)


def tables(results: dict[str, dict[str, Figure]]) -> list[str]:
    """Speed, CPU and memory as three Markdown tables: a row per client, a column per scenario."""
    names = list(results)
    lines: list[str] = []
    for title, cell in METRICS:
        lines += [f"### {title}", "", f"| client | {' | '.join(names)} |"]
        lines.append("|---" * (len(names) + 1) + "|")
        for client in results[names[0]]:
            cells = [cell(results[name][client], results[name][FLOOR]) for name in names]
            lines.append(f"| {client} | {' | '.join(cells)} |")
        lines.append("")
    return lines


def goals(results: dict[str, dict[str, Figure]]) -> list[str]:
    """The issue's goals, each with the measured figure and whether it is met.

    Throughput and CPU are judged in every scenario of many requests, not in a chosen one.
    """
    up, down = results[SCENARIOS[1].name], results[SCENARIOS[2].name]
    small_1k, small_10k = results[SCENARIOS[3].name], results[SCENARIOS[4].name]
    rows: list[tuple[str, float, float, bool]] = []
    for scenario in (SCENARIOS[0], SCENARIOS[3], SCENARIOS[4]):
        figures = results[scenario.name]
        ours, floor = figures["rembg_async + progress"], figures[FLOOR]
        rows.append(
            (
                f"throughput with callbacks ≥ 0.95× raw ({scenario.name})",
                ours.rate / floor.rate,
                0.95,
                True,
            )
        )
        rows.append(
            (
                f"CPU per request ≤ 1.10× raw ({scenario.name})",
                (ours.cpu or 0) / (floor.cpu or 1),
                1.10,
                False,
            )
        )
        if "rembg.js" in figures:
            rows.append(
                (
                    f"throughput ≥ 2× rembg.js ({scenario.name})",
                    ours.rate / figures["rembg.js"].rate,
                    2.0,
                    True,
                )
            )

    def extra(figures: dict[str, Figure], base: dict[str, Figure], client: str) -> float:
        return figures["rembg_async"].growth - base[client].growth

    memory = [
        ("50 MB upload: peak RSS within 8 MiB of raw aiohttp", extra(up, up, FLOOR)),
        ("50 MB download: peak RSS within 8 MiB of raw aiohttp", extra(down, down, FLOOR)),
        (
            "10,000 requests: RSS growth minus 1,000's, under 10 MiB",
            extra(small_10k, small_1k, "rembg_async"),
        ),
    ]
    rows += [(label, value, 8 if "50 MB" in label else 10, False) for label, value in memory]
    lines = ["| goal | measured | met |", "|---|---|---|"]
    for label, value, bound, at_least in rows:
        met = value >= bound if at_least else value <= bound
        lines.append(f"| {label} | {value:.2f} | {'yes' if met else '**no**'} |")
    return [*lines, ""]


def chart(results: dict[str, dict[str, Figure]], path: Path) -> None:
    """Bars of requests per second relative to raw aiohttp, per scenario and client."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in SCENARIOS if s.repeat]
    clients = list(results[shown[0].name])
    figure, axis = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(clients)
    for position, client in enumerate(clients):
        values = [results[s.name][client].rate / results[s.name][FLOOR].rate for s in shown]
        axis.bar([i + position * width for i in range(len(shown))], values, width, label=client)
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(shown))])
    axis.set_xticklabels([s.name.replace(", ", "\n") for s in shown], fontsize=8)
    axis.set_ylabel("requests/s relative to raw aiohttp")
    axis.set_title("rembg_async and its peers (higher is better)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _other_sections(path: Path) -> str:
    """What other benchmarks wrote after this one's part (each opens with an HTML comment
    marker), kept when this one's part is written anew."""
    text = path.read_text() if path.exists() else ""
    start = text.find("\n<!-- ")
    return "" if start < 0 else text[start:]


def main() -> None:
    """Run everything and write RESULTS.md and results.png."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition instead of three")
    repeats = 1 if parser.parse_args().quick else 3
    results: dict[str, dict[str, Figure]] = {}
    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        folder = Path(name)
        js = install_rembg_js(folder / "js")
        fast = stack.enter_context(fast_servers({s.answer for s in SCENARIOS if not s.full}))
        full = stack.enter_context(server_process())
        clients = [*CLIENTS, *(["rembg.js"] if js else [])]
        for scenario in SCENARIOS:
            url = full.url if scenario.full else fast[scenario.answer]
            source = input_file(folder, scenario)
            results[scenario.name] = measure_all(clients, url, source, scenario, js, repeats)
            print("\n".join(table(scenario, results[scenario.name])), flush=True)
    method = "median of 3 runs, round-robin over the clients," if repeats == 3 else "one run"
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}; node {_node_version()}. Written by `python benchmarks/compare.py`"
        f" ({method} per figure; single 50 MB transfers run once). Servers on 127.0.0.1;"
        " each client in a fresh process.",
        "",
        "## Goals",
        "",
        *goals(results),
        "## Scenarios",
        "",
    ]
    lines += tables(results)
    lines += ["![requests per second relative to raw aiohttp](results.png)", ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + _other_sections(HERE / "RESULTS.md"))
    chart(results, HERE / "results.png")
    print("wrote benchmarks/RESULTS.md and benchmarks/results.png")


def _node_version() -> str:
    if shutil.which("node") is None:
        return "absent (rembg.js not run)"
    return subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()


if __name__ == "__main__":
    main()
