"""What an output folder keeps of each of its folders (claims, index, listing) while the batch
works there and for `KEEP_FOLDERS` left recently, then lets go, so that memory follows the
largest folder, not the batch; the claims it lets go are spilled to a private SQLite file."""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final, Generic, TypeVar

from .._files import run_to_completion
from .._inputs import RemoteInputs
from .._storage._stores import Stores
from ._provenance import Plan, claim

#: Folders left whose state is kept (a sorted walk comes back to a parent after each subfolder).
KEEP_FOLDERS: Final = 16


class FolderState:
    """One output folder's state: its claims (target -> input), and the batch's images in it."""

    def __init__(self) -> None:
        self.claims: dict[Any, str] = {}
        self.pins = 0

    def let_go(self) -> None:
        """Release what the state holds (blocking; off the loop, with no image in the folder)."""


S = TypeVar("S", bound=FolderState)


class Folders(Generic[S]):
    """The states of the folders a batch is in or left recently; the others' claims on disk."""

    def __init__(self, make: Callable[[], S], cwd: str) -> None:
        self._make = make
        self._cwd = cwd
        self._keep = KEEP_FOLDERS
        self.live: dict[Any, S] = {}
        self._idle: collections.OrderedDict[Any, None] = collections.OrderedDict()
        self._spill = _Spill()
        self._spilled: set[Any] = set()  # folders whose claims went to disk
        self._leaving: dict[Any, dict[Any, str]] = {}  # claims on their way to disk

    def _enter(self, folder: Any) -> S:
        state = self.live.get(folder)
        if state is None:
            state = self.live[folder] = self._make()
            state.claims.update(self._leaving.get(folder, {}))  # not on disk yet
        elif state.pins == 0:
            del self._idle[folder]
        state.pins += 1
        return state

    def leave(self, folder: Any) -> None:
        """An image of the batch has ended in ``folder``."""
        state = self.live.get(folder)
        if state is None or state.pins == 0:
            return
        state.pins -= 1
        if state.pins == 0:
            self._idle[folder] = None

    async def claim(self, folder: Any, target: Any, value: Any) -> bool:
        """Take ``target`` in ``folder`` for ``value``, whatever this run claimed there before, in
        memory or on disk; the folder is held until `leave` (see `_provenance.claim`)."""
        state = self._enter(folder)
        if target not in state.claims and folder in self._spilled:
            other = await run_to_completion(self._spill.find, str(target))
            if other is not None:
                state.claims.setdefault(target, other)
        try:
            return claim(state.claims, target, value, self._cwd)
        finally:
            if len(self._idle) > self._keep:
                await self.let_go()

    async def let_go(self) -> None:
        """Let go of the folders left behind beyond the few kept: their claims to disk."""
        while len(self._idle) > self._keep:
            folder, _ = self._idle.popitem(last=False)
            state = self.live.pop(folder)
            self._spilled.add(folder)
            leaving = self._leaving[folder] = state.claims
            try:
                await run_to_completion(self._put_away, state, leaving)
            finally:
                if self._leaving.get(folder) is leaving:
                    del self._leaving[folder]

    def _put_away(self, state: S, claims: dict[Any, str]) -> None:
        self._spill.add({str(target): key for target, key in claims.items()})
        state.let_go()

    def close(self) -> None:
        """Let go of every state held, and forget the claims on disk (blocking)."""
        for state in list(self.live.values()):
            state.let_go()
        self._spill.close()
        self._spilled.clear()


class _Spill:
    """Claims on disk: a private temporary SQLite database, made on first use."""

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()  # file threads take turns with it

    def add(self, claims: dict[str, str]) -> None:
        with self._lock:
            if self._closed:
                return
            if self._db is None:
                # "": a private on-disk database SQLite deletes itself; no journal, no sync:
                # it lives as long as the run, and a crash loses nothing that matters.
                self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=OFF")
                self._db.execute("PRAGMA synchronous=OFF")
                self._db.execute(
                    "CREATE TABLE claims (target TEXT PRIMARY KEY, key TEXT) WITHOUT ROWID"
                )
            self._db.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?)", claims.items())

    def find(self, target: str) -> str | None:
        with self._lock:
            if self._db is None:
                return None
            row = self._db.execute("SELECT key FROM claims WHERE target = ?", (target,)).fetchone()
            return None if row is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None


class Tree(Generic[S]):
    """What the local and remote output folders share: claims by folder, and kind-free answers."""

    #: What ends a target's folder in its name.
    separator: ClassVar[str]

    def __init__(
        self,
        root: Any,
        extension: str,
        make: Callable[[], S],
        *,
        overwrite: bool,
        remote: RemoteInputs | None,
    ) -> None:
        self.root = root
        self.extension = extension
        self.remote = remote or RemoteInputs(stores=Stores())  # for remote inputs
        self.cwd = os.getcwd()  # once: relative inputs are relative to the folder at the start
        self._overwrite = overwrite
        self._folders: Folders[S] = Folders(make, self.cwd)

    async def plan(self, value: Any, target: Any, options: str, *, skip_existing: bool) -> Plan:
        """See `OutputFolder.plan`."""
        raise NotImplementedError

    async def plan_many(
        self, pairs: list[tuple[Any, Any]], options: str, *, skip_existing: bool
    ) -> list[Plan | OSError]:
        """`plan` of each ``(value, target)``, side by side."""

        async def one(value: Any, target: Any) -> Plan | OSError:
            try:
                return await self.plan(value, target, options, skip_existing=skip_existing)
            except OSError as error:  # this image's alone
                return error

        return list(await asyncio.gather(*(one(value, target) for value, target in pairs)))

    def _folder_of(self, target: str | os.PathLike[str]) -> str:
        """The key of ``target``'s folder: a string (a path's hash is dear)."""
        return os.fspath(target).rpartition(self.separator)[0]

    async def claim(self, target: str | os.PathLike[str], value: Any) -> bool:
        """Take ``target`` for ``value``; its folder is held until `release`."""
        return await self._folders.claim(self._folder_of(target), os.fspath(target), value)

    def release(self, target: str | os.PathLike[str]) -> None:
        """The batch is done with ``target`` (claimed)."""
        self._folders.leave(self._folder_of(target))
