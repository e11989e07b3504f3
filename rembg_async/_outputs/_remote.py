"""A batch's remote output folder (``output_dir="s3://bucket/out/"``): no append, no lock, so
each run writes its index as whole segments under ``<folder>/.rembg-async-index/``, and the
first image into a folder lists it and reads them (docs/guides/object-storage.md)."""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from pathlib import Path
from typing import Any, Final

from .._files import run_to_completion
from .._inputs import RemoteInputs
from .._paths import mirrored_path
from .._storage._sinks import RemoteTarget
from .._storage._stores import Store, is_remote
from ._folders import FolderState, Tree
from ._provenance import (
    Plan,
    Provenance,
    Verdict,
    identify,
    judge,
    open_remote,
    read_and_identify,
    read_entries,
    relative_name,
    settled,
    stat_remote,
)

INDEX_FOLDER: Final = ".rembg-async-index"
#: A segment is written once this many outputs are waiting…
FLUSH_ENTRIES: Final = 100
#: …or once the oldest has waited this long.
FLUSH_SECONDS: Final = 10.0


class _RemoteFolder(FolderState):
    """What the batch keeps of one remote output folder: its listing and index, read once."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Lock()  # the first image in the folder reads; the others wait
        self.existing: set[str] | None = None
        self.index: dict[str, dict[str, Any]] = {}


class RemoteOutputTree(Tree[_RemoteFolder]):
    """A batch's remote output folder: targets, claims, provenance index (`OutputFolder`)."""

    separator = "/"

    def __init__(
        self, url: str, remote: RemoteInputs, root: Any, extension: str, *, overwrite: bool
    ) -> None:
        super().__init__(root, extension, _RemoteFolder, overwrite=overwrite, remote=remote)
        self.url = url.rstrip("/")
        self.store: Store = remote.stores.store(url, remote.options)
        #: Index lines not yet written, by folder: `FLUSH_ENTRIES` at most (all folders).
        self._pending: dict[str, list[str]] = {}
        self._waiting = 0
        self._flushing = asyncio.Lock()  # one writer of the waiting lines at a time
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

    async def open(self) -> None:
        """List the folder: a store that refuses (key, bucket) stops the batch before a request."""
        await self._list(self.url)

    async def _known(self, folder: str) -> _RemoteFolder:
        """``folder``'s state, its listing and index segments read (once while held)."""
        state = self._folders.live.get(folder)
        if state is None:  # not claimed: known for this once only
            state = _RemoteFolder()
        async with state.reading:
            if state.existing is None:
                state.existing, segments = await self._list(folder)
                texts = await asyncio.gather(*(self.store.cat(path) for path in segments))
                for text in texts:
                    read_entries(text.decode("utf-8", "replace").splitlines(), state.index)
        return state

    async def _list(self, folder: str) -> tuple[set[str], list[str]]:
        """The names of ``folder``'s objects, and its index segments (oldest first)."""
        base = self.store.path(folder).rstrip("/")
        names = {name.rstrip("/").rpartition("/")[2] for name in await self.store.ls(base)}
        segments: list[str] = []
        if INDEX_FOLDER in names:
            found = await self.store.ls(f"{base}/{INDEX_FOLDER}")
            segments = sorted(path for path in found if path.endswith(".jsonl"))
        return names, segments

    async def plan(self, value: Any, target: str, options: str, *, skip_existing: bool) -> Plan:
        """``value``'s provenance (from its read or its object's details) and verdict."""
        found = None
        if is_remote(value):
            found, made, problem = await stat_remote(self.remote, value, options)
            if found is None:
                return Plan(made=made, problem=problem)
            read = None
        else:
            read, made = await run_to_completion(read_and_identify, value, options, self.cwd)
        verdict = await self.verdict(target, made)
        if settled(verdict, skip_existing):
            return Plan(made=made, verdict=verdict)
        plan = Plan(made=made, verdict=verdict, read=read)
        return plan if found is None else await open_remote(self.remote, found, plan)

    async def verdict_of(self, value: Any, target: str, options: str) -> Verdict:
        """Whether ``target`` is done, to do, or someone else's (a dry run: nothing read)."""
        state = await self._known(self._folder_of(target))
        if not self._there(state, target):
            return Verdict.TODO  # no request for the input's provenance
        if is_remote(value):
            made = (await stat_remote(self.remote, value, options))[1]
        else:
            made = await run_to_completion(identify, value, options, None, self.cwd)
        return self._judge(state, target, made)

    async def verdict(self, target: str, mine: Provenance) -> Verdict:
        """Whether ``target`` is done, to do, or someone else's (its folder listed if need be)."""
        return self._judge(await self._known(self._folder_of(target)), target, mine)

    def _judge(self, state: _RemoteFolder, target: str, mine: Provenance) -> Verdict:
        if not self._there(state, target):
            return Verdict.TODO
        return judge(state.index.get(self._relative(target)), mine, overwrite=self._overwrite)

    def _there(self, state: _RemoteFolder, target: str) -> bool:
        return state.existing is not None and target.rpartition("/")[2] in state.existing

    def _relative(self, target: str) -> str:
        return target[len(self.url) + 1 :]

    def keep(self, target: str, made: Provenance) -> RemoteTarget:
        """Where the result goes: noted in the index once the object is in place."""
        return RemoteTarget(url=target, then=functools.partial(self.record, target, made))

    async def record(self, target: str, made: Provenance) -> None:
        """Note that ``target`` was made as ``made`` says; write segments when they are due."""
        folder, relative = self._folder_of(target), self._relative(target)
        state = self._folders.live.get(folder)
        if state is not None and state.existing is not None:
            state.existing.add(target.rpartition("/")[2])
            state.index[relative] = made.entry(relative)
        self._pending.setdefault(folder, []).append(made.line(relative))
        self._waiting += 1
        self._oldest = self._oldest if self._oldest is not None else time.monotonic()
        due = time.monotonic() - self._oldest >= FLUSH_SECONDS
        if self._waiting >= FLUSH_ENTRIES or due:
            await self.flush()

    async def flush(self) -> None:
        """Write the entries waiting as new segments, one in each folder they are in."""
        async with self._flushing:
            while self._pending:
                folder, lines = next(iter(self._pending.items()))
                self._segments += 1
                name = f"{folder}/{INDEX_FOLDER}/{self._run}-{self._segments:06d}.jsonl"
                await self.store.pipe(self.store.path(name), "".join(lines).encode())
                if self._pending.get(folder) is lines:  # no more came meanwhile
                    del self._pending[folder]
                else:
                    del self._pending[folder][: len(lines)]
                self._waiting -= len(lines)
            self._oldest = None

    async def close(self) -> None:
        """Write what is waiting."""
        try:
            await self.flush()
        finally:
            await run_to_completion(self._folders.close)
