"""``rembg-async remove`` as real processes: interrupted by SIGINT and SIGTERM, resumed on the
tree and on sub-folders, with credits counted by the server's usage endpoint."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image
from PIL import Image

from rembg_async import AsyncRembg, failed_inputs
from rembg_async.server import Account, Fault, LocalServer, RateLimits, ServerConfig

COMMAND = [sys.executable, "-m", "rembg_async", "remove"]
KEY = "cli-key"


@pytest.fixture
def server(rembg_server_factory: Any) -> LocalServer:
    """A server that counts credits, with faults enabled to make requests slow."""
    config = ServerConfig(
        accounts=[Account(api_key=KEY, credits=10**6)],
        rate_limits=RateLimits(short_term_requests=0),
        faults=True,
    )
    result: LocalServer = rembg_server_factory(config)
    return result


def make_tree(root: Path, count: int) -> dict[Path, tuple[int, int]]:
    """``count`` images in nested folders, names repeated across folders, each of its own size."""
    sizes = {}
    for number in range(count):
        folder = root / ("a", "b", "a/deep", ".")[number % 4]
        path = folder / f"img-{number // 4}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        sizes[path.resolve()] = (40 + number, 30 + number)
        path.write_bytes(make_image(sizes[path.resolve()]))
    return sizes


def used(server: LocalServer) -> int:
    """Credits used, from the server's usage endpoint."""

    async def ask() -> int:
        async with AsyncRembg(KEY, base_url=server.url) as client:
            return (await client.membership_usage()).api_usage

    return asyncio.run(ask())


def start(server: LocalServer, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """The remove command against ``server``, piped."""
    return subprocess.Popen(
        [*COMMAND, *args, "--base-url", server.url, "--api-key", KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def interrupt_after_first(process: subprocess.Popen[str], number: int) -> tuple[str, str]:
    """Send ``number`` once the first image is reported; the rest of stdout and stderr."""
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("ok "), first
    process.send_signal(number)
    out, err = process.communicate(timeout=60)
    return first + out, err


def partial_files(folder: Path) -> list[Path]:
    """Partial or temporary files left under ``folder``."""
    return [path for path in folder.rglob("*") if path.name.startswith("rembg-")]


def size_of(path: Path) -> tuple[int, int]:
    """An image file's size in pixels."""
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return image.size


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupted_runs_resume_with_every_input_paid_once(
    server: LocalServer, tmp_path: Path, number: signal.Signals
) -> None:
    """Interrupted; resumed on a sub-folder; its failures fed back through failed_inputs; then
    the whole tree: every input ends with its own output, credits used = images made."""
    tree, out, manifest = tmp_path / "tree", tmp_path / "out", tmp_path / "m.jsonl"
    sizes = make_tree(tree, 24)
    broken = [(tree / "b" / f"img-{n}.png").resolve() for n in (4, 5)]
    originals = {path: path.read_bytes() for path in broken}
    for path in broken:
        path.write_bytes(b"not an image yet")  # fails unsent (no credit) until it is fixed
    server.faults.push(Fault(latency=0.3), times=10_000)  # slow enough to interrupt mid-run
    common = ["-o", str(out), "--manifest", str(manifest), "--concurrency", "3"]
    server_args = ["--base-url", server.url, "--api-key", KEY]
    process = start(server, str(tree), *common)
    stdout, stderr = interrupt_after_first(process, number)
    assert process.returncode == 128 + number
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    assert "made" in stderr  # the summary
    made_first = stdout.count("\nok ") + 1
    assert 1 <= made_first < len(sizes)
    assert partial_files(out) == []
    assert used(server) == made_first  # the images in flight were finished, not thrown away

    sub = subprocess.run(
        [*COMMAND, str(tree / "b"), "-o", str(out / "b"), "--manifest", str(manifest),
         *server_args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sub.returncode == 1  # the two broken ones
    assert sorted(failed_inputs(manifest)) == sorted(str(path) for path in broken)
    for path, data in originals.items():
        path.write_bytes(data)
    fed_back = subprocess.run(
        [*COMMAND, *failed_inputs(manifest), "--root", str(tree), *common, *server_args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert fed_back.returncode == 0, fed_back.stderr
    assert failed_inputs(manifest) == []
    before = used(server)
    whole = subprocess.run(
        [*COMMAND, str(tree), *common, *server_args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    made_last = whole.stdout.count("ok ")
    assert made_last == len(sizes) - before  # only what no earlier run made
    for path, size in sizes.items():
        assert size_of(out / path.relative_to(tree.resolve()).with_suffix(".webp")) == size
    assert len(list(out.rglob("*.webp"))) == len(sizes)
    assert used(server) == len(sizes)  # nothing paid twice, nothing paid and lost


def test_second_ctrl_c_cancels_at_once_and_leaves_no_file(
    server: LocalServer, tmp_path: Path
) -> None:
    """Ctrl-C twice while large results stream in: exit 130, no traceback, no partial file."""
    tree, out = tmp_path / "tree", tmp_path / "out"
    for number in range(6):
        (tree / f"big-{number}.png").parent.mkdir(parents=True, exist_ok=True)
        (tree / f"big-{number}.png").write_bytes(make_image((500, 400 + number)))
    server.faults.push(Fault(trickle=0.2, chunk=65_536), times=3)  # the first three stream slowly
    process = start(server, str(tree), "-o", str(out), "--format", "bmp", "--concurrency", "2")
    deadline = time.monotonic() + 60
    while not partial_files(out) and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for a state, not asserting a duration
    assert partial_files(out), "no result was streaming in"
    process.send_signal(signal.SIGINT)
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert partial_files(out) == []
    # Resumed: every image made; the only credits beyond them are the cancelled downloads the
    # server had already charged (at most the two in flight), never more.
    again = start(server, str(tree), "-o", str(out), "--format", "bmp")
    _, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert len(list(out.glob("*.bmp"))) == 6
    assert 6 <= used(server) <= 6 + 2


def test_dry_run_counts_and_spends_nothing(server: LocalServer, tmp_path: Path) -> None:
    """--dry-run: images to send, images done, credits left; no request to /rmbg."""
    tree, out = tmp_path / "tree", tmp_path / "out"
    sizes = make_tree(tree, 8)
    done = subprocess.run(
        [*COMMAND, str(tree / "a"), "-o", str(out / "a"), "--base-url", server.url,
         "--api-key", KEY],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    before = used(server)
    process = start(server, str(tree), "-o", str(out), "--dry-run")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"inputs: {len(sizes)}" in stdout
    assert f"would send: {len(sizes) - before} image(s)" in stdout
    assert f"already done: {before}" in stdout
    assert f"credits left: {10**6 - before} " in stdout
    assert used(server) == before


def test_clashing_names_refused_before_sending(server: LocalServer, tmp_path: Path) -> None:
    """x.png and x.jpg into one folder: exit 2 with both names, nothing sent."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(make_image((20, 20)))
    (tmp_path / "in" / "x.jpg").write_bytes(make_image((20, 20), "JPEG"))
    process = start(server, str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "would both make" in stderr
    assert used(server) == 0


def read_only_prefix(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` is read-only, even to root (who writes through
    mode bits): a private mount of a read-only tmpfs over it."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("running as root with no user namespaces: no folder is read-only here")
    script = 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", script, str(folder)]


def test_read_only_output_folder_and_bad_key_stop_at_once(
    server: LocalServer, tmp_path: Path
) -> None:
    """A read-only output folder: no request, exit 1. A bad key: one request, exit 1. No credit."""
    tree, out = tmp_path / "tree", tmp_path / "out"
    make_tree(tree, 6)
    out.mkdir()
    readonly = subprocess.run(
        [*read_only_prefix(out), *COMMAND, str(tree), "-o", str(out), "--base-url", server.url,
         "--api-key", KEY],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out.chmod(0o755)
    assert readonly.returncode == 1, readonly.stderr
    assert "stopped" in readonly.stderr
    assert "(6 input(s) not started" in readonly.stderr
    assert readonly.stdout == ""
    assert "Traceback" not in readonly.stderr

    bad = subprocess.run(
        [*COMMAND, str(tree), "-o", str(out), "--base-url", server.url, "--api-key", "wrong"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "stopped, invalid api key (5 input(s) not started" in bad.stderr
    assert bad.stdout.count("failed ") == 1
    assert used(server) == 0


def test_max_credits_stops_the_run_within_budget(server: LocalServer, tmp_path: Path) -> None:
    """--max-credits 3 over 8 images: three made, the stop said plainly, three credits used."""
    tree, out = tmp_path / "tree", tmp_path / "out"
    make_tree(tree, 8)
    process = start(server, str(tree), "-o", str(out), "--max-credits", "3")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stdout.count("ok ") == 3
    assert "stopped, the credit budget is spent: 3 of 3" in stderr
    assert "(5 input(s) not started" in stderr
    assert used(server) == 3
