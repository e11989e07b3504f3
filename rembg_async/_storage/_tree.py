"""A batch's remote output folder (``output_dir="s3://bucket/out/"``) and what it knows of the
outputs already there.

Outputs mirror the inputs' layout as under a local folder. An object store cannot append to an
index, nor lock a folder, so provenance is kept differently:

- **Index segments.** Each run writes what it made as small JSON-lines objects under
  ``<output_dir>/.rembg-async-index/``, named ``<run>-<number>.jsonl`` (the run's start time
  first, so names sort in time): a new segment every `FLUSH_ENTRIES` outputs or
  `FLUSH_SECONDS`, whichever comes first, and one when the run ends (or is stopped or
  cancelled). Each segment is written whole: nothing is ever appended or rewritten.
- **One listing.** When a run starts, it lists ``output_dir`` once (the outputs there) and
  reads every segment, later ones winning: ``skip_existing`` then needs no request per input.
- **What it costs.** A run killed without warning (SIGKILL, a lost machine) loses the entries
  not yet written: its last outputs are there but of unknown provenance, and the next run
  treats them as another's (their items fail unsent) until ``overwrite=True`` makes them
  again. There is no lock: two runs into one remote folder at once are not kept apart (every
  object is still whole: the last one written wins).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Final

from .._outputs import Provenance, Verdict, claim, foreign_error, relative_name
from .._paths import mirrored_path
from ._stores import Store

INDEX_FOLDER: Final = ".rembg-async-index"
#: A segment is written once this many outputs are waiting…
FLUSH_ENTRIES: Final = 100
#: …or once the oldest has waited this long.
FLUSH_SECONDS: Final = 10.0


class RemoteOutputTree:
    """A batch's remote output folder: targets, their claims, the provenance index."""

    def __init__(
        self, url: str, store: Store, root: Any, extension: str, *, overwrite: bool
    ) -> None:
        self.url = url.rstrip("/")
        self.store = store
        self.root = root
        self.extension = extension
        self.cwd = os.getcwd()
        self._overwrite = overwrite
        self._claims: dict[str, str] = {}
        self._existing: set[str] = set()
        self._index: dict[str, dict[str, Any]] = {}
        self._pending: list[str] = []
        self._oldest: float | None = None
        self._run = f"{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(4)}"
        self._segments = 0

    def probe(self) -> RemoteOutputTree:
        """A fresh tree on the same folder, to work out targets with."""
        return RemoteOutputTree(
            self.url, self.store, self.root, self.extension, overwrite=self._overwrite
        )

    def target(self, value: Any, index: int) -> str:
        """The URL of ``value``'s result."""
        relative = relative_name(value, index, self.root, self.cwd)
        return f"{self.url}/{mirrored_path(Path(), relative, self.extension).as_posix()}"

    def claim(self, target: str, value: Any) -> bool:
        """Take ``target`` for ``value``, as `OutputTree.claim` does."""
        key = os.fspath(value) if isinstance(value, (str, os.PathLike)) else f"<{id(value):#x}>"
        return claim(self._claims, target, key)

    async def open(self) -> None:
        """List the folder once and read its index segments."""
        base = self.store.path(self.url).rstrip("/")
        try:
            found = await self.store.find(base)
        except FileNotFoundError:  # a new folder (or bucket prefix): nothing there yet
            found = {}
        segments = []
        for path in found:
            relative = path[len(base) + 1 :]
            if relative.startswith(f"{INDEX_FOLDER}/"):
                segments.append(path)
            else:
                self._existing.add(relative)
        texts = await asyncio.gather(*(self.store.cat(path) for path in sorted(segments)))
        for text in texts:
            self._read_segment(text)

    def _read_segment(self, text: bytes) -> None:
        for line in text.decode("utf-8", "replace").splitlines():
            try:
                entry = json.loads(line)
                self._index[entry["output"]] = entry
            except (ValueError, KeyError, TypeError):
                continue  # not ours, or damaged: as a torn line of a local index

    def _relative(self, target: str) -> str:
        return target[len(self.url) + 1 :]

    def verdict(self, target: str, mine: Provenance) -> Verdict:
        """Whether ``target`` is done, to do, or someone else's (from the listing: no I/O)."""
        relative = self._relative(target)
        if relative not in self._existing:
            return Verdict.TODO
        entry = self._index.get(relative)
        if entry is not None and mine.source is not None and entry["source"] == mine.source:
            same = entry["stamp"] == mine.stamp and entry["options"] == mine.options
            return Verdict.DONE if same else Verdict.TODO
        return Verdict.TODO if self._overwrite else Verdict.FOREIGN

    def foreign(self, target: str) -> Exception:
        """The error for an output this input did not make."""
        return foreign_error(target)

    async def record(self, target: str, made: Provenance) -> None:
        """Note that ``target`` was made as ``made`` says; write a segment when one is due."""
        relative = self._relative(target)
        self._existing.add(relative)
        self._index[relative] = made.entry(relative)
        self._pending.append(made.line(relative))
        self._oldest = self._oldest if self._oldest is not None else time.monotonic()
        if len(self._pending) >= FLUSH_ENTRIES or time.monotonic() - self._oldest >= FLUSH_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        """Write the entries waiting as one new segment."""
        if not self._pending:
            return
        lines, self._pending, self._oldest = self._pending, [], None
        self._segments += 1
        name = f"{self.url}/{INDEX_FOLDER}/{self._run}-{self._segments:06d}.jsonl"
        try:
            await self.store.pipe(self.store.path(name), "".join(lines).encode())
        except BaseException:
            self._pending[:0] = lines  # tried again with the next segment
            raise

    async def aclose(self) -> None:
        """Write what is waiting."""
        await self.flush()
