"""A batch over a folder with a rich progress bar, resumable through a manifest.

Run: ``python examples/batch_folder.py [FOLDER]`` (default: the example images), against the
embedded local server. Results go to ``examples/output/batch``; run it twice to see the
second run skip what the first one made.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rembg_async import AsyncRembg, BatchProgress, RemoveOptions
from rembg_async.server import Account, LocalServer, ServerConfig

HERE = Path(__file__).parent
OUTPUT = HERE / "output" / "batch"


async def main(folder: Path, base_url: str, api_key: str) -> int:
    """Every image of ``folder``, 8 at a time; returns how many failed."""
    inputs = sorted(
        path for path in folder.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task("removing backgrounds", total=len(inputs))

        def on_progress(state: BatchProgress) -> None:
            progress.update(task, completed=state.finished)

        async with (
            AsyncRembg(api_key, base_url=base_url, max_concurrency=8) as client,
            client.remove_many(
                inputs,
                RemoveOptions(format="png"),
                output_dir=OUTPUT,
                skip_existing=True,
                manifest=OUTPUT / "manifest.jsonl",
                on_progress=on_progress,
            ) as run,
        ):
            failed = 0
            async for item in run:
                if not item.ok:
                    failed += 1
                    progress.console.print(f"[red]failed[/red] {item.input}: {item.error}")
    print(f"done: {len(inputs) - failed} of {len(inputs)} in {OUTPUT}")
    return failed


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "images"
    with LocalServer(ServerConfig(accounts=[Account(api_key="demo")])) as server:
        sys.exit(1 if asyncio.run(main(folder, server.url, "demo")) else 0)
