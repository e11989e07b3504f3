"""``rembg-async remove`` stopped: Ctrl-C once and twice against a slow server, a spent budget.

Credits are read from the server's usage endpoint; the images sent are counted as they reach
the server, so a test waits for them (and for their credits) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image
from test_cli_interrupt import KEY, start

from rembg_async import AsyncRembg
from rembg_async.server import Account, Fault, LocalServer, RateLimits, ServerConfig
from rembg_async.server._faults import FAULT_HEADER

#: Seconds the server "thinks" over each image after the first: long enough for a signal to be
#: handled while two images wait on it.
SLOW = 4.0
#: A fault header that changes nothing: the test's own requests carry it, so that they take no
#: fault from the queue and are not counted among the images sent.
PROBE = {FAULT_HEADER: "id=probe"}


class Arrivals:
    """The command's requests as they reach the server (counted where it chooses each one's
    fault; the test's own carry `PROBE`)."""

    def __init__(self, server: LocalServer) -> None:
        self._count = 0
        self._changed = threading.Condition()
        choose = server.faults.choose

        def counted(header: str | None) -> Fault | None:
            if header is None:
                with self._changed:
                    self._count += 1
                    self._changed.notify_all()
            return choose(header)

        server.faults.choose = counted  # type: ignore[method-assign]

    @property
    def count(self) -> int:
        """Requests that have reached the server so far."""
        with self._changed:
            return self._count

    def wait_for(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` requests have reached the server."""
        with self._changed:
            assert self._changed.wait_for(lambda: self._count >= count, timeout), self._count


def used(server: LocalServer) -> int:
    """Credits used, from the server's usage endpoint."""

    async def ask() -> int:
        async with AsyncRembg(KEY, base_url=server.url, extra_headers=PROBE) as client:
            return (await client.membership_usage()).api_usage

    return asyncio.run(ask())


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Wait until ``condition`` holds (asked every 50 ms)."""
    waited = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        waited.wait(0.05)
    raise AssertionError("the condition never held")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Commands started by a test: killed if the test ends before they do."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def slow_server(factory: Any, fault: Fault, *then: Fault) -> tuple[LocalServer, Arrivals]:
    """A server that answers the first image at once, the next ones with the faults ``then``,
    and every later one with ``fault``."""
    config = ServerConfig(
        accounts=[Account(api_key=KEY, credits=10**6)],
        rate_limits=RateLimits(short_term_requests=0),
        faults=True,
    )
    server: LocalServer = factory(config)
    for each in (Fault(), *then):  # Fault(): the first image alone, at once
        server.faults.push(each)
    server.faults.push(fault, times=100)
    return server, Arrivals(server)


def images(folder: Path, count: int, size: tuple[int, int] = (40, 30)) -> Path:
    """``count`` images in ``folder``, each of its own size."""
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"img-{number:02}.png").write_bytes(make_image((size[0] + number, size[1])))
    return folder


def interrupt_when_two_are_sent(
    process: subprocess.Popen[str], arrivals: Arrivals
) -> tuple[str, int]:
    """After the first image, the limiter lets two more go (its window grows by one per
    success) while the others wait for it: wait for the two to reach the server, press Ctrl-C,
    and read the line saying how many are being finished. The first image's line, and that
    number."""
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    assert first.startswith("ok "), first
    arrivals.wait_for(3)
    process.send_signal(signal.SIGINT)
    line = process.stderr.readline()
    said = re.search(r"finishing the (\d+) in flight", line)
    assert said, line
    return first, int(said.group(1))


def manifest_lines(manifest: Path) -> list[dict[str, Any]]:
    """The lines of ``manifest``, sorted by status."""
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    return sorted(lines, key=lambda line: str(line["status"]))


def test_first_ctrl_c_sends_nothing_more(
    rembg_server_factory: Any, processes: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    """Ctrl-C while two images are on the wire and six wait in the limiter: it says 2, those
    two finish, nothing else is sent; credits = the one made before + the two in flight."""
    server, arrivals = slow_server(rembg_server_factory, Fault(latency=SLOW))
    tree, out, manifest = images(tmp_path / "in", 12), tmp_path / "out", tmp_path / "m.jsonl"
    process = start(server, str(tree), "-o", str(out), "--manifest", str(manifest))
    processes.append(process)
    first, in_flight = interrupt_when_two_are_sent(process, arrivals)
    assert in_flight == 2
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert (first + stdout).count("ok ") == 3
    assert arrivals.count == 3  # nothing reached the server after the Ctrl-C
    assert "(9 input(s) not started" in stderr
    assert [line["status"] for line in manifest_lines(manifest)] == ["ok"] * 3
    assert used(server) == 1 + in_flight


def test_second_ctrl_c_records_what_it_cancels(
    rembg_server_factory: Any, processes: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    """Ctrl-C twice, the second while the two images on the wire stream their (charged)
    answers in: both are cancelled, and the summary and the manifest say so; credits = the one
    made before + the two in flight, as the summary counts them."""
    server, arrivals = slow_server(rembg_server_factory, Fault(trickle=0.5, chunk=65_536))
    tree, out, manifest = images(tmp_path / "in", 6, (600, 500)), tmp_path / "out", tmp_path / "m"
    process = start(
        server, str(tree), "-o", str(out), "--manifest", str(manifest), "--format", "bmp"
    )
    processes.append(process)
    _, in_flight = interrupt_when_two_are_sent(process, arrivals)
    assert in_flight == 2
    wait_until(lambda: used(server) == 1 + in_flight)  # both answered: their bodies trickle
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stdout.count("cancelled ") == 2  # a line for each
    assert "made 1, skipped 0, failed 0, cancelled 2" in stderr
    assert "credits 3" in stderr
    lines = manifest_lines(manifest)
    assert [line["status"] for line in lines] == ["cancelled", "cancelled", "ok"]
    assert [line["credits"] for line in lines] == [1, 1, 1]
    assert sorted(path.name for path in out.glob("*.bmp")) == ["img-00.bmp"]  # no partial file
    assert arrivals.count == 3
    assert used(server) == 1 + in_flight


def test_a_spent_budget_says_how_to_go_on(rembg_server_factory: Any, tmp_path: Path) -> None:
    """--max-credits 2 over 5 images: exit 1, the line says to raise --max-credits or run the
    command again; run again, it goes on from where it stopped."""
    server, _ = slow_server(rembg_server_factory, Fault())
    tree, out = images(tmp_path / "in", 5), tmp_path / "out"
    command = ["-o", str(out), "--max-credits", "2"]
    for made in (2, 4):
        process = start(server, str(tree), *command)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 1, stderr
        assert stdout.count("ok ") == 2
        assert (
            f"rembg-async remove: stopped, the credit budget is spent: 2 of 2 credit(s) used or "
            f"in flight ({5 - made} input(s) not started; to go on, raise --max-credits or run "
            "the same command again: what is done is not redone)"
        ) in stderr.splitlines()
        assert used(server) == made
