"""Peak memory of each client uploading a 50 MB file, and downloading a 50 MB result.

Each client runs in a fresh process against ``fast_server.py``; the figure is the growth of
its peak RSS over its RSS before the transfer (all libraries already imported). The goal for
rembg_async: within 8 MiB of raw aiohttp streaming by hand. rembg.js runs too when node and
npm are on the machine (installed from the npm registry into a temporary folder).

Run: ``python benchmarks/client_memory.py``
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _clients import CLIENTS
from _common import machine

HERE = Path(__file__).parent
MIB = 1024 * 1024
SMALL = 200 * 1024
LARGE = 50 * MIB - 1024  # just under the API's limit
REMBG_JS = "@remove-background-ai/rembg.js@1.3.1"
REMBG_JS_SCRIPT = r"""
const axios = require('axios');
const { rembg } = require('@remove-background-ai/rembg.js');
axios.interceptors.request.use((c) => {
  c.url = c.url.replace('https://api.rembg.com', process.argv[2]);
  return c;
});
const before = process.memoryUsage().rss;
const started = process.hrtime.bigint();
const ignore = () => {};
const options = { onUploadProgress: ignore, onDownloadProgress: ignore };
rembg({ apiKey: 'bench', inputImage: process.argv[3], ...options })
  .then(async ({ cleanup }) => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const peak = process.resourceUsage().maxRSS / 1024;
    await cleanup();
    console.log(JSON.stringify({ seconds, cpu: null, before: before / 1048576, peak }));
    process.exit(0);
  });
"""


@contextmanager
def fast_server(answer_bytes: int) -> Iterator[str]:
    """``fast_server.py`` in a child process; yields its URL."""
    command = [sys.executable, str(HERE / "fast_server.py"), "--answer-bytes", str(answer_bytes)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def python_client(name: str, url: str, source: Path, folder: Path) -> dict[str, float]:
    """Run one Python client in its own process."""
    command = [
        sys.executable,
        str(HERE / "_clients.py"),
        name,
        url,
        str(source),
        str(folder / "out.png"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(result.stdout)


def rembg_js_folder(folder: Path) -> Path | None:
    """rembg.js installed under ``folder``, or None without node and npm."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    install = [
        "npm",
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        "--prefix",
        str(folder),
        REMBG_JS,
    ]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    (folder / "run.js").write_text(REMBG_JS_SCRIPT)
    return folder


def rembg_js_client(js: Path, url: str, source: Path) -> dict[str, float]:
    """Run rembg.js once."""
    command = ["node", "run.js", url, str(source)]
    result = subprocess.run(
        command, cwd=js, capture_output=True, text=True, check=True, timeout=600
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Both scenarios, every client, one Markdown table."""
    print(f"machine: {machine()}")
    print("| scenario | client | seconds | peak RSS growth MiB | vs raw aiohttp MiB |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        js = rembg_js_folder(folder / "js")
        for scenario, upload, answer in (
            ("50 MB upload", LARGE, SMALL),
            ("50 MB download", SMALL, LARGE),
        ):
            source = folder / "in.png"
            source.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(upload - 8))
            with fast_server(answer) as url:
                figures = {client: python_client(client, url, source, folder) for client in CLIENTS}
                if js is not None:
                    figures["rembg.js"] = rembg_js_client(js, url, source)
            floor = figures["raw aiohttp"]["peak"] - figures["raw aiohttp"]["before"]
            for client, figure in figures.items():
                growth = figure["peak"] - figure["before"]
                seconds = figure["seconds"]
                print(
                    f"| {scenario} | {client} | {seconds:.2f} | {growth:.1f} "
                    f"| {growth - floor:+.1f} |"
                )


if __name__ == "__main__":
    main()
