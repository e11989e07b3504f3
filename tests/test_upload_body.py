"""The upload body: the multipart form aiohttp would write, in as few writes as it can."""

from __future__ import annotations

import asyncio
import itertools

from conftest import make_image
from hypothesis import given, settings
from hypothesis import strategies as st

from rembg_async._inputs import open_input
from rembg_async._progress import ProgressTracker
from rembg_async._upload import GATHER_BYTES, UploadBody, build_form

PNG = make_image((40, 30), "PNG")


class Recorder:
    """A stream writer that keeps what it is given, one entry per write."""

    transport = None  # aiohttp's writers have one; None: no connection to abort

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, chunk: bytes) -> None:
        self.writes.append(bytes(chunk))


async def both_ways(
    padding: int, chunk_size: int, fields: dict[str, str]
) -> tuple[list[bytes], list[bytes], int, int]:
    """The writes of one form: as aiohttp writes it, and through UploadBody; its size, and the
    bytes UploadBody reported as progress."""
    source = await open_input(PNG + bytes(padding))
    form = build_form(source, fields, chunk_size)
    plain, gathered = Recorder(), Recorder()
    await form.write(plain)  # type: ignore[arg-type]
    tracker = ProgressTracker(None, total=form.size, upload=True)
    await UploadBody(form, tracker).write(gathered)  # type: ignore[arg-type]
    assert form.size is not None
    return plain.writes, gathered.writes, form.size, tracker.loaded


@settings(max_examples=60, deadline=None)
@given(
    padding=st.one_of(st.integers(0, 70_000), st.integers(0, 3_000_000)),
    chunk_size=st.sampled_from([4096, 65_536, 1024 * 1024]),
    fields=st.dictionaries(
        st.sampled_from(["format", "w", "h", "bg_color", "angle"]),
        st.text("0123456789abcdef", min_size=1, max_size=8),
    ),
)
def test_gathered_writes_are_the_form(
    padding: int, chunk_size: int, fields: dict[str, str]
) -> None:
    """The same bytes as aiohttp's own writes, all counted as progress; small pieces gathered
    (a small form is one write, sent with the request's headers), large chunks passed as they
    are, and no two neighbouring writes that would have fitted together."""
    plain, gathered, size, reported = asyncio.run(both_ways(padding, chunk_size, fields))
    assert b"".join(gathered) == b"".join(plain)
    assert sum(map(len, gathered)) == size == reported
    if size <= GATHER_BYTES:
        assert len(gathered) == 1
    for write in gathered:
        assert len(write) <= GATHER_BYTES or write in plain
    for first, second in itertools.pairwise(gathered):
        assert len(first) + len(second) > GATHER_BYTES
