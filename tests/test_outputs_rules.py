"""An output folder's pure rules: what an output was made from, the verdict on an output that
is there, which inputs may claim an output, and where an input's output goes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path, PurePath

import pytest

from rembg_async._outputs._provenance import (
    ForeignOutputError,
    OutputClashError,
    Provenance,
    Verdict,
    claim,
    foreign_error,
    identify,
    judge,
    options_key,
    read_and_identify,
    relative_name,
    settled,
)

MINE = Provenance(source="/in/a.png", stamp="10:20", options='{"format":"webp"}')


def entry(**changed: str | None) -> dict[str, str | None]:
    """MINE's index entry, with some fields changed."""
    return {**MINE.entry("a.webp"), **changed}


def test_an_index_entry_and_line_say_what_made_the_output() -> None:
    """The entry names the output and every field of the provenance; the line is it in JSON."""
    assert MINE.entry("a.webp") == {
        "output": "a.webp",
        "source": "/in/a.png",
        "stamp": "10:20",
        "options": '{"format":"webp"}',
    }
    line = MINE.line("a.webp")
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert json.loads(line) == MINE.entry("a.webp")


@pytest.mark.parametrize(
    ("found", "overwrite", "verdict"),
    [
        (entry(), False, Verdict.DONE),
        (entry(), True, Verdict.DONE),
        (entry(stamp="11:20"), False, Verdict.TODO),  # the input changed
        (entry(options='{"format":"png"}'), False, Verdict.TODO),  # other options
        (entry(stamp="11:20", options="{}"), False, Verdict.TODO),
        (entry(source="/in/b.png"), False, Verdict.FOREIGN),  # another input's output
        (entry(source="/in/b.png"), True, Verdict.TODO),
        (None, False, Verdict.FOREIGN),  # no entry: unknown provenance
        (None, True, Verdict.TODO),
    ],
)
def test_the_verdict_on_an_output_that_is_there(
    found: dict[str, str | None] | None, overwrite: bool, verdict: Verdict
) -> None:
    """Done only when the entry names this input, stamp and options; another's is foreign."""
    assert judge(found, MINE, overwrite=overwrite) is verdict


def test_an_input_without_identity_never_owns_an_output() -> None:
    """A file object (no source) is never done, even beside an entry of no source either."""
    nameless = Provenance(source=None, stamp="", options=MINE.options)
    assert judge(entry(source=None, stamp=""), nameless, overwrite=False) is Verdict.FOREIGN
    assert judge(entry(source=None, stamp=""), nameless, overwrite=True) is Verdict.TODO


@pytest.mark.parametrize(
    ("verdict", "skip_existing", "ends"),
    [
        (Verdict.FOREIGN, False, True),
        (Verdict.FOREIGN, True, True),
        (Verdict.DONE, True, True),
        (Verdict.DONE, False, False),
        (Verdict.TODO, True, False),
        (Verdict.TODO, False, False),
    ],
)
def test_what_ends_an_image_unsent(verdict: Verdict, skip_existing: bool, ends: bool) -> None:
    """A foreign output ends it always; a done one only with skip_existing."""
    assert settled(verdict, skip_existing) is ends


def test_the_foreign_output_error_names_the_output_and_the_way_out() -> None:
    """The error is a FileExistsError naming the output and ``overwrite=True``."""
    error = foreign_error("/out/a.webp")
    assert isinstance(error, ForeignOutputError)
    assert isinstance(error, FileExistsError)
    assert str(error).startswith("/out/a.webp exists")
    assert "overwrite=True" in str(error)


def test_the_options_key_is_stable_and_compact() -> None:
    """The same fields in any order give one key, with no spaces."""
    key = options_key({"format": "webp", "bg_color": "#fff"})
    assert key == '{"bg_color":"#fff","format":"webp"}'
    assert options_key({"bg_color": "#fff", "format": "webp"}) == key


def test_claims_do_an_input_once_and_refuse_a_clash(tmp_path: Path) -> None:
    """First claim True, the same input (spelled otherwise) False, another input a clash."""
    claims: dict[object, str] = {}
    cwd = str(tmp_path)
    assert claim(claims, "t.webp", "a/x.png", cwd) is True
    assert claim(claims, "t.webp", "a/../a/x.png", cwd) is False
    assert claim(claims, "t.webp", str(tmp_path / "a" / "x.png"), cwd) is False
    with pytest.raises(OutputClashError, match=r"x\.png and .*y\.png would both make t\.webp"):
        claim(claims, "t.webp", "a/y.png", cwd)
    assert claims == {"t.webp": os.path.join(cwd, "a", "x.png")}


def test_claims_of_urls_and_file_objects(tmp_path: Path) -> None:
    """Two URLs, or two file objects, for one output clash; one given twice is done once."""
    claims: dict[object, str] = {}
    cwd = str(tmp_path)
    assert claim(claims, "u", "memory://in/a.png", cwd) is True
    assert claim(claims, "u", "memory://in/a.png", cwd) is False
    with pytest.raises(OutputClashError, match=r"memory://in/a\.png and memory://in/b\.png"):
        claim(claims, "u", "memory://in/b.png", cwd)
    first, second = io.BytesIO(b"1"), io.BytesIO(b"2")
    assert claim(claims, "f", first, cwd) is True
    assert claim(claims, "f", first, cwd) is False
    with pytest.raises(OutputClashError, match="<BytesIO at 0x"):
        claim(claims, "f", second, cwd)


def test_an_output_mirrors_its_input_below_the_root(tmp_path: Path) -> None:
    """Paths below the root keep their place under it; relative ones are taken from ``cwd``."""
    cwd = str(tmp_path)
    assert relative_name("in/a/x.png", 0, "in", cwd) == PurePath("a/x.png")
    assert relative_name(tmp_path / "in" / "x.png", 0, tmp_path / "in", "/elsewhere") == PurePath(
        "x.png"
    )
    assert relative_name("in/x.png", 0, None, cwd) == PurePath("in/x.png")  # root: the cwd
    assert relative_name("in", 0, "in", cwd) == PurePath(".")  # the root itself
    # Outside the root (a sibling whose name starts the same too): its whole path.
    outside = relative_name("inside/x.png", 0, "in", cwd)
    assert outside == PurePath(str(tmp_path / "inside" / "x.png")[1:])
    assert relative_name("/x/y.png", 0, "/", cwd) == PurePath("x/y.png")


def test_relative_inputs_are_taken_from_the_current_folder_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no ``cwd``, the process's current folder."""
    monkeypatch.chdir(tmp_path)
    assert relative_name("in/x.png", 0, "in") == PurePath("x.png")
    assert identify("in/x.png", "o").source == str(tmp_path / "in" / "x.png")


def test_where_other_inputs_go() -> None:
    """A callable root names it; a URL below a URL root; a named file object by its name;
    anything else by its place in the batch."""
    assert relative_name("in/x.png", 0, lambda value: f"by/{value}") == PurePath("by/in/x.png")
    assert relative_name("memory://b/in/x.png", 0, "memory://b/in") == PurePath("x.png")
    named = io.BytesIO(b"")
    named.name = "/tmp/somewhere/photo.jpg"
    assert relative_name(named, 3, None) == PurePath("photo.jpg")
    unnamed = io.BytesIO(b"")
    unnamed.name = ""
    assert relative_name(unnamed, 3, None) == PurePath("image-3")
    numbered = io.BytesIO(b"")
    numbered.name = 7  # as open(fd) names its file
    assert relative_name(numbered, 4, None) == PurePath("image-4")
    assert relative_name(b"bytes", 5, None) == PurePath("image-5")


def test_the_identity_of_each_kind_of_input(tmp_path: Path) -> None:
    """A path: absolute, size and mtime; bytes and base64: a digest; a URL: itself (its
    stamp from its object); a file object: none."""
    image = tmp_path / "x.png"
    image.write_bytes(b"12345")
    status = image.stat()
    made = identify("x.png", "o", None, str(tmp_path))
    assert made == Provenance(source=str(image), stamp=f"5:{status.st_mtime_ns}", options="o")
    assert identify("nothing.png", "o", None, str(tmp_path)) == Provenance(
        source=str(tmp_path / "nothing.png"), stamp="missing", options="o"
    )
    assert identify("memory://b/x.png", "o") == Provenance(
        source="memory://b/x.png", stamp="unknown", options="o"
    )
    digest = identify(b"12345", "o")
    assert digest.source is not None
    assert digest.source.startswith("sha256:")
    assert digest == identify(bytearray(b"12345"), "o") != identify(b"123456", "o")
    encoded = identify({"base64": "MTIz"}, "o")
    assert encoded.source is not None
    assert encoded.source.startswith("sha256-base64:")
    assert encoded != identify({"base64": "MTI0"}, "o")
    for other in (io.BytesIO(b"1"), {"path": "x.png"}):
        assert identify(other, "o") == Provenance(source=None, stamp="", options="o")


def test_a_given_status_stamps_the_input(tmp_path: Path) -> None:
    """The stamp is the status given (that of the bytes read), not a second ``stat``."""
    image, other = tmp_path / "x.png", tmp_path / "other.png"
    image.write_bytes(b"1")
    other.write_bytes(b"1234567")
    stamped = identify(image, "o", other.stat(), str(tmp_path))
    assert stamped.source == str(image)
    assert stamped.stamp.startswith("7:")


def test_read_and_identify(tmp_path: Path) -> None:
    """A local file is read and stamped by that read; other inputs are not read."""
    image = tmp_path / "x.png"
    image.write_bytes(b"12345")
    read, made = read_and_identify(str(image), "o", str(tmp_path))
    assert read is not None
    assert read.data == b"12345"
    assert made == identify(image, "o", read.status, str(tmp_path))
    assert read_and_identify(b"12345", "o", str(tmp_path)) == (None, identify(b"12345", "o"))
