"""``rembg-async remove --cache``: runs, processes and machines sharing one result cache, with
credits counted from the local server's usage endpoint (the commands run as a user runs them,
in processes of their own)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image, read_terminal

from rembg_async import AsyncRembg
from rembg_async._cache import unframe
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import Fault, LocalServer, RateLimits, ServerConfig
from tests._moto import Moto, start_moto

COMMAND = [sys.executable, "-m", "rembg_async", "remove"]
COUNT = 3


@pytest.fixture
def server(rembg_server_factory: Any) -> LocalServer:
    """No rate limits; faults (latency) on demand."""
    limits = RateLimits(short_term_requests=0, daily_anonymous=0)
    started: LocalServer = rembg_server_factory(ServerConfig(faults=True, rate_limits=limits))
    return started


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """``COUNT`` small images, each its own."""
    folder = tmp_path / "in"
    folder.mkdir()
    for number in range(COUNT):
        (folder / f"img-{number}.png").write_bytes(make_image((40 + number, 30)))
    return folder


def spent(server: LocalServer) -> int:
    """Credits the server has charged the test key, from its usage endpoint."""

    async def ask() -> int:
        async with AsyncRembg(TEST_API_KEY, base_url=server.url) as client:
            return (await client.membership_usage()).api_usage

    return asyncio.run(ask())


def environment(**more: str) -> dict[str, str]:
    """This process's environment without $REMBG_CACHE, plus ``more``."""
    env = {key: value for key, value in os.environ.items() if key != "REMBG_CACHE"}
    return {**env, **more}


def arguments(server: LocalServer, inputs: Path, out: Path, *more: str) -> list[str]:
    """A ``remove`` of ``inputs`` into ``out`` at ``server``."""
    url, key = ["--base-url", server.url], ["--api-key", TEST_API_KEY]
    return [*COMMAND, str(inputs), "-o", str(out), *url, *key, *more]


def remove(
    server: LocalServer, inputs: Path, out: Path, *more: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command, piped; it must succeed."""
    result = subprocess.run(
        arguments(server, inputs, out, *more),
        capture_output=True, text=True, timeout=120, env=env or environment(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def manifest(path: Path) -> list[dict[str, Any]]:
    """The manifest's lines."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sound_entries(folder: Path) -> list[str]:
    """The keys of the folder cache's entries, each checked whole and sound; no temporary
    file left."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    assert not [path for path in files if path.name.startswith(".tmp-")], files
    for path in files:
        assert unframe(path.name, path.read_bytes()) is not None, path
    return [path.name for path in files]


def test_the_second_run_into_a_fresh_folder_costs_nothing_and_says_cached(
    server: LocalServer, inputs: Path, tmp_path: Path
) -> None:
    """Run twice with --cache (the second into another folder, with --max-credits 0): it
    costs no credit, each line and the summary say "cached", the manifest records it, and
    the files are the first run's bytes."""
    cache = tmp_path / "cache"
    first = remove(server, inputs, tmp_path / "one", "--cache", str(cache))
    assert spent(server) == COUNT
    assert "(cached)" not in first.stdout
    assert f"made {COUNT}, skipped 0, failed 0, cancelled 0, cached 0" in first.stderr.splitlines()

    log = tmp_path / "run.jsonl"
    second = remove(
        server, inputs, tmp_path / "two", "--cache", str(cache), "--max-credits", "0",
        "--manifest", str(log),
    )  # fmt: skip
    assert spent(server) == COUNT  # nothing more
    lines = second.stdout.splitlines()
    assert len(lines) == COUNT
    assert all(line.endswith(" (cached)") for line in lines), lines
    summary = second.stderr.splitlines()
    assert f"made {COUNT}, skipped 0, failed 0, cancelled 0, cached {COUNT}" in summary
    assert any(line.endswith(", credits 0") for line in summary), summary
    entries = manifest(log)
    assert [entry["cached"] for entry in entries] == [True] * COUNT
    assert {(entry["attempts"], entry["credits"]) for entry in entries} == {(0, 0)}
    for name in (f"img-{number}.webp" for number in range(COUNT)):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_rembg_cache_from_the_environment_and_the_flags_over_it(
    server: LocalServer, inputs: Path, tmp_path: Path
) -> None:
    """$REMBG_CACHE names the cache when --cache does not; --cache wins over it, and
    --no-cache turns it off (no "cached" in the summary then)."""
    warm = environment(REMBG_CACHE=str(tmp_path / "env-cache"))
    remove(server, inputs, tmp_path / "a", env=warm)
    assert spent(server) == COUNT
    served = remove(server, inputs, tmp_path / "b", env=warm)
    assert f"cached {COUNT}" in served.stderr
    assert spent(server) == COUNT

    own = remove(server, inputs, tmp_path / "c", "--cache", str(tmp_path / "flag-cache"), env=warm)
    assert ", cached 0" in own.stderr
    assert spent(server) == 2 * COUNT
    assert len(sound_entries(tmp_path / "flag-cache")) == COUNT

    off = remove(server, inputs, tmp_path / "d", "--no-cache", env=warm)
    assert "cached" not in off.stderr
    assert spent(server) == 3 * COUNT


def test_a_dry_run_counts_what_the_cache_would_serve(
    server: LocalServer, inputs: Path, tmp_path: Path
) -> None:
    """With one image of three in the cache, a dry run into a fresh folder says one would be
    served and two sent, and costs nothing; without a cache it says nothing of one."""
    cache, alone = tmp_path / "cache", tmp_path / "alone"
    alone.mkdir()
    (alone / "img-0.png").write_bytes((inputs / "img-0.png").read_bytes())
    remove(server, alone, tmp_path / "warm", "--cache", str(cache))
    assert spent(server) == 1

    dry = remove(server, inputs, tmp_path / "fresh", "--cache", str(cache), "--dry-run")
    assert "would send: 2 image(s), costing at most 2 credit(s)" in dry.stdout.splitlines()
    assert "cached: 1 image(s) the cache would serve, costing nothing" in dry.stdout
    base64 = remove(server, inputs, tmp_path / "fresh", "--cache", str(cache), "--dry-run",
                    "--base64")  # fmt: skip
    assert "cached: 1 image(s)" in base64.stdout
    plain = remove(server, inputs, tmp_path / "fresh", "--dry-run")
    assert "would send: 3 image(s)" in plain.stdout
    assert "cached" not in plain.stdout
    assert spent(server) == 1
    assert not (tmp_path / "fresh").exists()


def test_the_summary_table_in_a_terminal_counts_cached(
    server: LocalServer, inputs: Path, tmp_path: Path
) -> None:
    """In a terminal, the summary's table has a "cached" column (80 columns still hold it)."""
    pytest.importorskip("rich", reason="the table needs the cli extra")
    import fcntl
    import pty
    import struct
    import termios

    cache = tmp_path / "cache"
    remove(server, inputs, tmp_path / "one", "--cache", str(cache))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in environment().items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        arguments(server, inputs, tmp_path / "two", "--cache", str(cache)),
        stdout=follower, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    code, screen = read_terminal(leader, process)
    assert code == 0, screen
    header = next(line for line in screen.splitlines() if "made" in line and "credits" in line)
    assert "cached" in header, screen
    lines = screen.splitlines()
    row = lines[lines.index(header) + 2]  # under the header's rule
    cells = [cell.strip() for cell in row.replace("┃", "│").split("│")[1:5]]
    assert cells == [str(COUNT), "0", "0", str(COUNT)], screen  # made, skipped, failed, cached
    assert spent(server) == COUNT


def start(server: LocalServer, inputs: Path, out: Path, *more: str) -> subprocess.Popen[str]:
    """The command, started (piped)."""
    return subprocess.Popen(
        arguments(server, inputs, out, *more),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip


def finish(process: subprocess.Popen[str]) -> str:
    """Wait for a started command; it must succeed; its stderr."""
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    return stderr


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """One moto server for the module (S3 on a loopback port, in its own process)."""
    pytest.importorskip("s3fs", reason="the s3:// cache needs s3fs (the fsspec extra)")
    started = start_moto()
    yield started
    started.close()


def place_of(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """Where the shared cache is (a folder, or a new bucket on moto), and the options that
    reach it."""
    if kind == "folder":
        return str(tmp_path / "cache"), []
    moto: Moto = request.getfixturevalue("moto")
    options = [
        "--storage-option", "key=testing", "--storage-option", "secret=testing",
        "--storage-option", f"client_kwargs.endpoint_url={moto.url}",
    ]  # fmt: skip
    return f"s3://{moto.new_bucket()}/rembg-cache/", options


@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_two_processes_fill_one_cache_at_once_then_a_third_pays_nothing(
    server: LocalServer, inputs: Path, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """Two processes fill one cache (a folder, or an s3:// bucket on moto) at once, each
    answer held a while by the server so that they overlap: every entry ends whole and sound,
    one per image; a third process, into a fresh folder, pays nothing."""
    place, options = place_of(kind, tmp_path, request)
    server.faults.push(Fault(latency=1.0), times=2 * COUNT)  # both in flight together
    both = [start(server, inputs, tmp_path / f"out-{n}", "--cache", place, *options) for n in "12"]
    for process in both:
        finish(process)
    paid = spent(server)
    assert COUNT <= paid <= 2 * COUNT
    if kind == "folder":
        assert len(sound_entries(Path(place))) == COUNT

    third = finish(start(server, inputs, tmp_path / "out-3", "--cache", place, *options))
    assert f"cached {COUNT}" in third, third
    assert spent(server) == paid


def test_a_cache_url_this_installation_cannot_reach_is_refused_unsent(
    server: LocalServer, inputs: Path, tmp_path: Path
) -> None:
    """--cache gs://… without gcsfs: exit 2 before anything is sent, saying what to install
    (not a warning per image, each of them paid)."""
    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here: the store is reachable")
    result = subprocess.run(
        arguments(server, inputs, tmp_path / "out", "--cache", "gs://bucket/cache/"),
        capture_output=True, text=True, timeout=120, env=environment(),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--cache gs://bucket/cache/: " in result.stderr
    assert "gcsfs" in result.stderr
    assert "Traceback" not in result.stderr
    assert spent(server) == 0
