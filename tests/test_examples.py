"""The examples run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).parent.parent


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/NAME`` from the repository root, as the README says; it must succeed."""
    command = [sys.executable, f"examples/{name}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_main_job_removes_every_example_background() -> None:
    """The README's main job writes a transparent PNG for each example image."""
    result = run_example("remove_backgrounds_locally.py")
    for source in (ROOT / "examples" / "images").glob("*.jpg"):
        output = ROOT / "examples" / "output" / f"{source.stem}.png"
        assert f"saved examples/output/{source.stem}.png" in result.stdout
        with Image.open(output) as image, Image.open(source) as original:
            assert (image.mode, image.size) == ("RGBA", original.size)
            assert image.getpixel((0, 0))[3] == 0  # the corner was background


def test_one_shot_example_prints_axios_events_and_cleans_up() -> None:
    """examples/one_shot.py prints rembg.js-style events and leaves no temporary file."""
    result = run_example("one_shot.py")
    assert "'upload': True" in result.stdout
    assert "'progress': 1.0" in result.stdout
    path = result.stdout.split("path= ")[1].strip()
    assert path.endswith(".png")
    assert not Path(path).exists()


def test_tqdm_example() -> None:
    """examples/progress_tqdm.py fills both bars to 100%."""
    result = run_example("progress_tqdm.py")
    assert result.stderr.count("100%") >= 2


def test_batch_folder_example_resumes() -> None:
    """examples/batch_folder.py makes every image, and a second run skips them."""
    first = run_example("batch_folder.py")
    assert "done: 4 of 4" in first.stdout
    manifest = ROOT / "examples" / "output" / "batch" / "manifest.jsonl"
    statuses = [
        line.split('"status": "')[1].split('"')[0] for line in manifest.read_text().splitlines()
    ]
    run_example("batch_folder.py")
    statuses_after = [
        line.split('"status": "')[1].split('"')[0] for line in manifest.read_text().splitlines()
    ]
    assert statuses_after[len(statuses) :] == ["skipped"] * 4


def test_queue_worker_survives_bad_items() -> None:
    """examples/queue_worker.py makes the good images and logs the bad ones, then stops."""
    result = run_example("queue_worker.py")
    assert "worker made 3 images" in result.stdout
    assert result.stderr.count("WARNING") == 2
