"""``rembg-async remove`` over a catalogue: its inputs streamed (never a list of every input),
counted beside the batch ("counting…" until the total is known), clashes refused per folder,
``--retry-failed`` and ``--dry-run`` without a per-input table."""

from __future__ import annotations

import json
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image

from rembg_async._cli import build_parser, main
from rembg_async.server import Account, LocalServer, RateLimits, ServerConfig

KEY = "catalogue-key"
PNG = make_image((8, 8))


@pytest.fixture
def server(rembg_server_factory: Any) -> LocalServer:
    """A server that counts credits."""
    config = ServerConfig(
        accounts=[Account(api_key=KEY, credits=10**6)],
        rate_limits=RateLimits(short_term_requests=0),
    )
    result: LocalServer = rembg_server_factory(config)
    return result


def tree_of(root: Path, folders: int, per_folder: int) -> Path:
    """``folders`` folders of ``per_folder`` tiny PNGs each."""
    for folder in range(folders):
        (root / f"d{folder:03d}").mkdir(parents=True)
        for number in range(per_folder):
            (root / f"d{folder:03d}" / f"img-{number:05d}.png").write_bytes(PNG)
    return root


def remove_args(*argv: str) -> Any:
    """The parsed arguments of ``rembg-async remove``, as `remove.run` completes them."""
    args = build_parser().parse_args(["remove", *argv])
    args.storage_options = {}
    return args


def peak_while(work: Any) -> tuple[Any, int]:
    """``work()``'s result and the peak of memory it allocated (tracemalloc), in bytes."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_listing_keeps_nothing_per_input(tmp_path: Path) -> None:
    """Walking 12,000 inputs in 12 folders holds one folder's names at a time: its peak stays
    far below what a table of every input takes (about 4 MB here)."""
    from rembg_async._cli._plan import inputs_of

    tree = tree_of(tmp_path / "tree", 12, 1000)
    args = remove_args(str(tree), "-o", str(tmp_path / "out"))
    count, peak = peak_while(lambda: sum(1 for _ in inputs_of(args)))
    assert count == 12_000
    assert peak < 1_000_000, f"{peak} bytes"


def test_inputs_come_folder_by_folder_in_name_order(tmp_path: Path) -> None:
    """The walk's order is stable: a folder's images in name order, then its sub-folders in
    name order, each walked alike; hidden files are not inputs."""
    from rembg_async._cli._walk import Inputs

    for name in ("b.png", "a/z.png", "a/b/y.png", "a.png", "c/x.jpg", "c/.hidden.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(PNG)
    walked = [Path(value).relative_to(tmp_path).as_posix() for value in Inputs([str(tmp_path)])]
    assert walked == ["a.png", "b.png", "a/z.png", "a/b/y.png", "c/x.jpg"]


def test_an_output_place_comes_from_the_first_input_naming_it(tmp_path: Path) -> None:
    """Where INPUTs overlap, an input is placed under the first that names it: a glob names
    only what it matches, a folder everything below it; outside them all, by name."""
    from rembg_async._cli._walk import Inputs

    for name in ("in/a.png", "in/sub/b.png", "other/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(PNG)
    inputs = Inputs([str(tmp_path / "in" / "*.png"), str(tmp_path / "in" / "sub")])
    assert inputs.place(str(tmp_path / "in" / "a.png")).as_posix() == "a.png"
    assert inputs.place(str(tmp_path / "in" / "sub" / "b.png")).as_posix() == "b.png"
    assert inputs.place(str(tmp_path / "other" / "c.png")).as_posix() == "c.png"
    nested = Inputs([str(tmp_path / "in"), str(tmp_path / "in" / "sub")])
    assert nested.place(str(tmp_path / "in" / "sub" / "b.png")).as_posix() == "sub/b.png"


def test_the_bar_says_counting_until_the_total_is_known() -> None:
    """The batch's bar has no total and says "counting…" until the count comes; then it has
    the total and says "images"."""
    pytest.importorskip("rich", reason="the bars need the cli extra")
    from rembg_async._cli._report import RichReporter

    bars = RichReporter(None)
    assert "counting…" in str(bars.progress.tasks[0].description)
    assert bars.progress.tasks[0].total is None
    bars.counted(1_000_000)
    assert bars.progress.tasks[0].total == 1_000_000
    assert str(bars.progress.tasks[0].description) == "images"


class SlowCount:
    """Holds the counting pass back until the first item has ended (so sending must begin
    before the count ends; ``forever``: until the batch ends); records whether it did."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, forever: bool = False) -> None:
        from rembg_async._cli import _counting, _report, _walk, remove

        self.started = threading.Event()
        self.release = threading.Event()
        self.counted = threading.Event()
        self.waited = False
        count, add, close = _walk.Inputs.count, _report.Outcomes.add, _counting.Counting.close

        def slow_count(inputs: Any, *args: Any) -> int:
            self.started.set()
            self.release.wait(timeout=60)
            try:
                return count(inputs, *args)
            finally:
                self.counted.set()

        def add_and_tell(outcomes: Any, item: Any) -> None:
            add(outcomes, item)
            if not forever and not self.release.is_set():
                # The count's thread may start late on a busy machine: the first item waits
                # for it, so that the count is surely held back while that item was made.
                self.waited = self.started.wait(timeout=60) and not self.counted.is_set()
                self.release.set()

        def close_and_tell(counting: Any) -> None:
            close(counting)
            self.release.set()

        monkeypatch.setattr(_walk.Inputs, "count", slow_count)
        monkeypatch.setattr(_report.Outcomes, "add", add_and_tell)
        monkeypatch.setattr(_counting.Counting, "close", close_and_tell)
        monkeypatch.setattr(remove, "GRACE", 0.0)


def test_sending_begins_before_the_count_ends(
    server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A count that takes long does not hold the batch back: images are made meanwhile, the
    plain report says it is counting, then how many inputs there are."""
    slow = SlowCount(monkeypatch)
    tree = tree_of(tmp_path / "tree", 3, 4)
    code = main(["remove", str(tree), "-o", str(tmp_path / "out"), "--base-url", server.url,
                 "--api-key", KEY])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert slow.waited  # the first image was made while the count was held back
    assert err.index("counting the inputs…") < err.index("remove: 12 input(s)")
    assert len(out.splitlines()) == 12
    assert len(list((tmp_path / "out").rglob("*.webp"))) == 12


def test_a_clash_met_while_sending_sends_nothing_of_its_folder(
    server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """x.png and x.jpg in a folder reached after sending began: none of that folder is sent,
    the run ends with exit 2 and the clash's message; the folders before it are made."""
    SlowCount(monkeypatch, forever=True)  # the walk meets the clash before the count does
    tree = tree_of(tmp_path / "tree", 1, 3)
    (tree / "e").mkdir()
    (tree / "e" / "x.png").write_bytes(PNG)
    (tree / "e" / "x.jpg").write_bytes(make_image((8, 8), "JPEG"))
    code = main(["remove", str(tree), "-o", str(tmp_path / "out"), "--base-url", server.url,
                 "--api-key", KEY, "--concurrency", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "would both make" in err
    assert len(list((tmp_path / "out" / "d000").glob("*.webp"))) == 3
    assert not (tmp_path / "out" / "e").exists()


def manifest_of(path: Path, made: int, failed: list[str]) -> Path:
    """A manifest of ``made`` inputs made, then ``failed`` failed."""
    with path.open("w") as file:
        for number in range(made):
            line = {"input": f"/in/made-{number:06d}.png", "status": "made", "output": "x"}
            file.write(json.dumps(line) + "\n")
        for name in failed:
            file.write(json.dumps({"input": name, "status": "failed", "output": None}) + "\n")
    return path


def test_retry_failed_holds_only_what_failed(tmp_path: Path) -> None:
    """--retry-failed reads the manifest line by line: 30,000 made inputs and two failures
    leave the two (not a status per input); a failure made since is not retried."""
    from rembg_async._cli._plan import inputs_of

    failed = ["/in/failed-1.png", "/in/made-000007.png", "/in/failed-2.png"]
    manifest = manifest_of(tmp_path / "run.jsonl", 30_000, failed)
    with manifest.open("a") as file:  # the second failure was made by a later run
        file.write(json.dumps({"input": failed[1], "status": "made", "output": "x"}) + "\n")
    args = remove_args("--retry-failed", str(manifest), "-o", str(tmp_path / "out"))
    names, peak = peak_while(lambda: list(inputs_of(args)))
    assert names == ["/in/failed-1.png", "/in/failed-2.png"]
    assert peak < 500_000, f"{peak} bytes"


def test_the_dry_run_counts_the_inputs_as_they_are_walked(
    server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dry-run hands the output folder the inputs as they are walked (no list of them) and
    counts them on the way: all to send, none done."""
    from rembg_async._cli import _plan

    given: list[Any] = []
    counts = _plan.dry_run_counts

    async def recording(tree: Any, inputs: Any, *args: Any) -> dict[str, Any]:
        given.append(inputs)
        return await counts(tree, inputs, *args)

    monkeypatch.setattr(_plan, "dry_run_counts", recording)
    tree = tree_of(tmp_path / "tree", 3, 5)
    code = main(["remove", str(tree), "-o", str(tmp_path / "out"), "--dry-run",
                 "--base-url", server.url, "--api-key", KEY])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert not isinstance(given[0], (list, tuple, dict))
    assert "inputs: 15" in out
    assert "would send: 15 image(s)" in out


@pytest.mark.parametrize(
    "pattern",
    ["*.png", "*/*.png", "**/*.png", "**", "a/**/*.jpg", "a/*/y.*", "[ab]/*", "?.png", ".h/*"],
)
def test_a_glob_walked_matches_what_glob_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    """A glob walked folder by folder names the files ``glob.glob(recursive=True)`` finds,
    hidden names only where the pattern names them, each once."""
    import glob

    from rembg_async._cli._walk import Inputs

    for name in ("x.png", "a/z.png", "a/b/y.png", "a/b/y.jpg", "b/.w.png", ".h/v.png", "c.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(PNG)
    monkeypatch.chdir(tmp_path)
    found = sorted(name for name in glob.glob(pattern, recursive=True) if Path(name).is_file())
    walked = list(Inputs([pattern]))
    assert sorted(walked) == found
    assert len(set(walked)) == len(walked)
