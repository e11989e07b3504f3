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
import functools
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Final

from .._files import run_to_completion
from .._inputs import RemoteInputs
from .._paths import mirrored_path
from .._storage._sinks import RemoteTarget
from .._storage._stores import Store, is_remote
from ._folders import Folders, FolderState
from ._provenance import (
    ForeignOutputError,
    Plan,
    Provenance,
    Verdict,
    foreign_error,
    identify,
    judge,
    open_remote,
    read_and_identify,
    relative_name,
    settled,
    stat_remote,
)

INDEX_FOLDER: Final = ".rembg-async-index"
#: A segment is written once this many outputs are waiting…
FLUSH_ENTRIES: Final = 100
#: …or once the oldest has waited this long.
FLUSH_SECONDS: Final = 10.0


class RemoteOutputTree:
    """A batch's remote output folder: targets, their claims, the provenance index (an
    `OutputFolder`)."""

    def __init__(
        self, url: str, remote: RemoteInputs, root: Any, extension: str, *, overwrite: bool
    ) -> None:
        self.url = url.rstrip("/")
        self.remote = remote
        self.store: Store = remote.stores.store(url, remote.options)
        self.root = root
        self.extension = extension
        self.cwd = os.getcwd()
        self._overwrite = overwrite
        self._folders: Folders[FolderState] = Folders(lambda _: FolderState(), self.cwd)
        self._existing: set[str] = set()
        self._index: dict[str, dict[str, Any]] = {}
        self._pending: list[str] = []
        self._oldest: float | None = None
        self._run = f"{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(4)}"
        self._segments = 0

    def probe(self) -> RemoteOutputTree:
        """A fresh tree on the same folder, to work out targets with."""
        return RemoteOutputTree(
            self.url, self.remote, self.root, self.extension, overwrite=self._overwrite
        )

    def target(self, value: Any, index: int) -> str:
        """The URL of ``value``'s result."""
        relative = relative_name(value, index, self.root, self.cwd)
        return f"{self.url}/{mirrored_path(Path(), relative, self.extension).as_posix()}"

    async def claim(self, target: str, value: Any) -> bool:
        """Take ``target`` for ``value`` (see `_provenance.claim`); its folder is held until
        `release`."""
        folder = target.rpartition("/")[0]
        self._folders.enter(folder)
        return await self._folders.claim(folder, target, value)

    def release(self, target: str) -> None:
        """The batch is done with ``target`` (claimed)."""
        self._folders.leave(target.rpartition("/")[0])

    async def open(self) -> None:
        """Get ready: nothing to make or lock, only the listing to read (`look`)."""
        await self.look()

    async def look(self) -> None:
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

    async def plan(self, value: Any, target: str, options: str, *, skip_existing: bool) -> Plan:
        """``value``'s plan: its provenance (a local input read and stamped in one thread call,
        a remote one from its object's details) and its verdict from the listing."""
        found = None
        if is_remote(value):
            found, made, problem = await stat_remote(self.remote, value, options)
            if found is None:
                return Plan(made=made, problem=problem)
            read = None
        else:
            read, made = await run_to_completion(read_and_identify, value, options, self.cwd)
        plan = Plan(made=made, verdict=self.verdict(target, made), read=read)
        if settled(plan.verdict, skip_existing):
            return Plan(made=made, verdict=plan.verdict)
        return plan if found is None else await open_remote(self.remote, found, plan)

    async def verdict_of(self, value: Any, target: str, options: str) -> Verdict:
        """Whether ``target`` is done, to do, or someone else's (a dry run: nothing read)."""
        if self._relative(target) not in self._existing:
            return Verdict.TODO  # no request for the input's provenance
        if is_remote(value):
            made = (await stat_remote(self.remote, value, options))[1]
        else:
            made = await run_to_completion(identify, value, options, None, self.cwd)
        return self.verdict(target, made)

    def verdict(self, target: str, mine: Provenance) -> Verdict:
        """Whether ``target`` is done, to do, or someone else's (from the listing: no I/O)."""
        relative = self._relative(target)
        if relative not in self._existing:
            return Verdict.TODO
        return judge(self._index.get(relative), mine, overwrite=self._overwrite)

    def foreign(self, target: str) -> ForeignOutputError:
        """The error for an output this input did not make."""
        return foreign_error(target)

    def keep(self, target: str, made: Provenance) -> RemoteTarget:
        """Where the result goes: noted in the index once the object is in place."""
        return RemoteTarget(url=target, then=functools.partial(self.record, target, made))

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

    async def close(self) -> None:
        """Write what is waiting."""
        try:
            await self.flush()
        finally:
            await run_to_completion(self._folders.close)
