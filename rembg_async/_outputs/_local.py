"""A batch's local output folder: outputs mirror the inputs' paths under it, each folder keeps
an index (``.rembg-async-index.jsonl``) of what made its outputs, and a lock makes deleting a
killed run's partial files safe. One thread call plans an image, one saves and records it."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import threading
from pathlib import Path
from typing import IO, Any, Final

from .._download import KeptTarget, is_partial_name
from .._files import run_to_completion
from .._inputs import RemoteInputs, read_local_or_none
from .._paths import check_folder_writable, mirrored_path, safe_leaf
from .._storage._stores import is_remote
from ._folders import FolderState, Tree
from ._provenance import (
    Plan,
    Provenance,
    Verdict,
    identify,
    judge,
    open_remote,
    read_entries,
    relative_name,
    root_prefix,
    settled,
    stat_remote,
)

INDEX_NAME: Final = ".rembg-async-index.jsonl"
#: Output folders `OutputTree.target` remembers at most (a few: images come folder by folder).
_MIRRORED: Final = 64
_APPEND_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class _Folder(FolderState):
    """What the batch keeps of one local output folder while it works there."""

    def __init__(self) -> None:
        super().__init__()
        self.index: dict[str, dict[str, Any]] | None = None
        self.handle: int | None = None  # its index, open for appending
        self.writable = False  # proven once

    def let_go(self) -> None:
        if self.handle is not None:
            os.close(self.handle)
            self.handle = None


class OutputTree(Tree[_Folder]):
    """A batch's local output folder: targets, claims, provenance index, lock (`OutputFolder`)."""

    separator = os.sep

    def __init__(
        self,
        folder: Path,
        root: Any,
        extension: str,
        *,
        overwrite: bool,
        remote: RemoteInputs | None = None,
    ) -> None:
        super().__init__(root, extension, _Folder, overwrite=overwrite, remote=remote)
        self.folder = folder
        self._lock: IO[bytes] | None = None
        self._handles_lock = threading.Lock()
        #: The output folder of each input folder (its parts), as `target` made it.
        self._mirrored: dict[tuple[str, ...], Path] = {}
        #: The root's absolute path and a separator, for local paths below it (see `target`).
        self._inside: str | None = None
        if root is None or isinstance(root, (str, os.PathLike)):
            self._inside = root_prefix(root, self.cwd)

    def probe(self) -> OutputTree:
        """A fresh tree on the same folder, to work out targets and clashes with."""
        return OutputTree(self.folder, self.root, self.extension, overwrite=self._overwrite)

    def target(self, value: Any, index: int) -> Path:
        """Where ``value``'s result goes."""
        if self._inside is not None and isinstance(value, (str, os.PathLike)):
            # A local path below the root, placed as `relative_name` does, in strings once its
            # folder is known: a PurePath per image costs more than a skipped image's planning.
            absolute = os.path.normpath(os.path.join(self.cwd, os.fspath(value)))
            if absolute.startswith(self._inside) and not is_remote(value):
                below, _, name = absolute[len(self._inside) :].rpartition(os.sep)
                folder = self._mirrored.get(tuple(below.split(os.sep)) if below else ())
                if name and folder is not None:
                    return folder / safe_leaf(name, self.extension)
        relative = relative_name(value, index, self.root, self.cwd)
        # Each input folder's output folder is made once: making a path safe part by part
        # costs more than the rest of a done image's planning.
        parts = relative.parts[:-1]
        folder = self._mirrored.get(parts)
        if folder is None:
            if len(self._mirrored) >= _MIRRORED:
                self._mirrored.clear()
            folder = self._mirrored[parts] = mirrored_path(self.folder, relative, "x").parent
        return folder / safe_leaf(relative.name or "image", self.extension)

    async def open(self) -> None:
        """Make, check, lock the folder and delete stale partial files (or raise ``OSError``)."""
        await run_to_completion(self._open)

    def _open(self) -> None:
        check_folder_writable(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.folder / INDEX_NAME)  # the top index: one hidden file only
        for folder, _, names in os.walk(self.folder):
            for name in names:
                if is_partial_name(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))

    async def close(self) -> None:
        """Let go of the folder."""
        lock, self._lock = self._lock, None
        await run_to_completion(self._close, lock)

    def _close(self, lock: IO[bytes] | None) -> None:
        self._folders.close()
        if lock is not None:
            lock.close()

    async def plan(self, value: Any, target: Path, options: str, *, skip_existing: bool) -> Plan:
        """``value``'s plan in one thread call (a remote input: its details asked first)."""
        if not is_remote(value):
            return await run_to_completion(self._inspect, value, target, options, skip_existing)
        found, made, problem = await stat_remote(self.remote, value, options)
        if found is None:
            return Plan(made=made, problem=problem)
        plan = await run_to_completion(self._inspect, value, target, options, skip_existing, made)
        if plan.problem is not None or settled(plan.verdict, skip_existing):
            return plan
        return await open_remote(self.remote, found, plan)

    async def plan_many(
        self, pairs: list[tuple[Any, Path]], options: str, *, skip_existing: bool
    ) -> list[Plan | OSError]:
        """`plan` of each ``(value, target)``; local inputs in one thread call (a hop costs more
        than a skipped image's planning)."""
        if any(is_remote(value) for value, _ in pairs):
            return await super().plan_many(pairs, options, skip_existing=skip_existing)
        return await run_to_completion(self._inspect_all, pairs, options, skip_existing)

    def _inspect_all(
        self, pairs: list[tuple[Any, Path]], options: str, skip_existing: bool
    ) -> list[Plan | OSError]:
        plans: list[Plan | OSError] = []
        for value, target in pairs:
            try:
                plans.append(self._inspect(value, target, options, skip_existing))
            except OSError as error:  # this image's alone
                plans.append(error)
        return plans

    def _inspect(
        self,
        value: Any,
        target: Path,
        options: str,
        skip_existing: bool,
        made: Provenance | None = None,
    ) -> Plan:
        """An image's provenance and verdict; unless skipped, its place checked, its input read."""
        verdict = Verdict.TODO
        there = os.path.lexists(target)  # asked afresh: a run into a subfolder may add to it
        if there:  # only then does the verdict need the input's stamp
            made = made or identify(value, options, None, self.cwd)
            verdict = self._judge(target, made)
            if settled(verdict, skip_existing):
                return Plan(made=made, verdict=verdict)
        try:
            self.check_place(target, there=there)
        except OSError as error:
            made = made or identify(value, options, None, self.cwd)
            return Plan(made=made, verdict=verdict, problem=error)
        if made is not None and is_remote(value):
            return Plan(made=made, verdict=verdict)
        read = read_local_or_none(value)
        # The index will say what was sent: the bytes read, stamped by their own fstat.
        status = read.status if read is not None else None
        return Plan(made=identify(value, options, status, self.cwd), verdict=verdict, read=read)

    async def verdict_of(self, value: Any, target: Path, options: str) -> Verdict:
        """Whether ``target`` is done, to do, or someone else's (a dry run: nothing read)."""
        if is_remote(value):
            made = (await stat_remote(self.remote, value, options))[1]
            return await run_to_completion(self.verdict, target, made)
        return await run_to_completion(self._look, value, target, options)

    def _look(self, value: Any, target: Path, options: str) -> Verdict:
        return self.verdict(target, identify(value, options, None, self.cwd))

    def verdict(self, target: Path, mine: Provenance) -> Verdict:
        """Whether ``target`` is done, to do, or someone else's (blocking: reads the index)."""
        if not os.path.lexists(target):
            return Verdict.TODO
        return self._judge(target, mine)

    def _judge(self, target: Path, mine: Provenance) -> Verdict:
        entry = self._index(self._folder_of(target)).get(target.name)
        return judge(entry, mine, overwrite=self._overwrite)

    def check_place(self, target: Path, *, there: bool = True) -> None:
        """Raise the ``OSError`` that writing ``target`` would meet (its folder checked once)."""
        state = self._folders.live.get(self._folder_of(target))
        if state is None or not state.writable:
            check_folder_writable(target.parent)
            if state is not None:
                state.writable = True
        if there and os.path.isdir(target):
            raise IsADirectoryError(errno.EISDIR, "the output is a folder", str(target))

    def keep(self, target: Path, made: Provenance) -> KeptTarget:
        """Where the result goes: indexed in the thread call that moves it into place."""
        return KeptTarget(path=target, then=functools.partial(self.record, target, made))

    def record(self, target: Path, made: Provenance) -> None:
        """Index ``target`` as ``made`` says: one appending write, atomic beside other threads."""
        line = made.line(target.name).encode()
        state = self._folders.live.get(self._folder_of(target))  # held while the image is in it
        if state is None:  # not claimed (a single result kept): the index opened for it
            handle = os.open(target.parent / INDEX_NAME, _APPEND_FLAGS, 0o666)
            try:
                _append(handle, line, target.parent)
            finally:
                os.close(handle)
            return
        with self._handles_lock:
            if state.handle is None:
                state.handle = os.open(target.parent / INDEX_NAME, _APPEND_FLAGS, 0o666)
            handle = state.handle
        _append(handle, line, target.parent)
        if state.index is not None:
            state.index[target.name] = made.entry(target.name)

    def _index(self, folder: str) -> dict[str, dict[str, Any]]:
        """The folder's index: read once while the batch is in the folder (blocking)."""
        state = self._folders.live.get(folder)
        if state is None:  # not held (a dry run's look): read, not kept
            return _read_index(os.path.join(folder, INDEX_NAME))
        if state.index is None:  # two threads may both read it: the same lines either way
            state.index = _read_index(os.path.join(folder, INDEX_NAME))
        return state.index


def _append(handle: int, line: bytes, folder: Path) -> None:
    written = os.write(handle, line)
    if written != len(line):  # a full disk: the line is torn, and read as no line at all
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / INDEX_NAME))


def _read_index(path: str) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as lines:
        read_entries(lines, entries)
    return entries


def _lock(path: Path) -> IO[bytes]:
    """An exclusive lock on ``path``, held while the returned file is open."""
    handle = open(path, "ab")  # noqa: SIM115  # held open for the run, closed by close()
    try:
        import fcntl
    except ImportError:  # pragma: no cover  # Windows: no advisory locks; partials stay
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise BlockingIOError(
            f"another rembg-async run is writing to {path.parent}: wait for it, or choose "
            "another output folder"
        ) from None
    return handle
