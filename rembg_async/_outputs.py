"""Where a batch puts each result, and how it knows which outputs it has already made.

An input's output mirrors its path relative to a root (the folder or glob given) under the
output folder, so its name never depends on what else is in the run. Each output folder keeps a
small index, ``.rembg-async-index.jsonl``, beside its outputs: one line per output made, saying
from which input (absolute path and size/mtime, or a digest of bytes) and with which options.
An output counts as done only when its index line matches this input and these options; an
output of unknown or other provenance is never taken as done nor overwritten. Because the index
lives beside the files, any ``-o`` that names the same folder finds it.

A run holds a lock on its output folder, which is what makes it safe to delete the partial
files (``rembg-….part``) that a killed run left there.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import IO, Any, Final

import attrs

from ._download import is_partial_name
from ._paths import check_folder_writable, mirrored_path
from ._storage._stores import is_remote, remote_relative

INDEX_NAME: Final = ".rembg-async-index.jsonl"
_APPEND_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class OutputClashError(ValueError):
    """Two inputs would make one output file (``x.png`` and ``x.jpg`` both make ``x.webp``)."""


class ForeignOutputError(FileExistsError):
    """An output file is there that this input did not make with these options."""


class Verdict(enum.Enum):
    """What to do about an input's output."""

    TODO = "todo"  # nothing there, or our own output of this input from other options/bytes
    DONE = "done"  # made from this input with these options
    FOREIGN = "foreign"  # there, but of unknown or other provenance


@attrs.frozen(kw_only=True)
class Provenance:
    """What an output was made from: the input's identity and stamp, and the options."""

    source: str | None  # None: an input with no stable identity (a file object)
    stamp: str
    options: str

    def entry(self, name: str) -> dict[str, Any]:
        """The index entry for the output called ``name``."""
        return {"output": name, "source": self.source, "stamp": self.stamp, "options": self.options}

    def line(self, name: str) -> str:
        """The index line for the output called ``name``."""
        return json.dumps(self.entry(name)) + "\n"


def foreign_error(target: Any) -> ForeignOutputError:
    """The error for an output at ``target`` (a path or a URL) that this input did not make."""
    return ForeignOutputError(
        f"{target} exists and was not made from this input with these options by "
        "rembg-async: delete or move it, choose another output folder, or pass "
        "overwrite=True (--overwrite) to replace it"
    )


def options_key(fields: Mapping[str, str]) -> str:
    """The options as the index records them (the form fields sent, in a stable order)."""
    return json.dumps(dict(sorted(fields.items())), separators=(",", ":"))


def relative_name(value: Any, index: int, root: Any, cwd: str | None = None) -> PurePath:
    """The path of ``value``'s output under the output folder, before its extension changes
    (paths relative to ``cwd``, the current folder by default; a URL relative to ``root``
    when it is a URL above it, else its whole path in its store)."""
    if is_remote(value):
        return remote_relative(value, root)
    if isinstance(value, (str, os.PathLike)):
        if callable(root):
            return PurePath(root(value))
        cwd = cwd or os.getcwd()
        # Strings, not Path.relative_to: this runs on the event loop for every image.
        absolute = os.path.normpath(os.path.join(cwd, os.fspath(value)))
        base = os.path.normpath(os.path.join(cwd, os.fspath(root if root is not None else "")))
        inside = base if base.endswith(os.sep) else base + os.sep
        if absolute.startswith(inside) or absolute == base:
            return PurePath(absolute[len(inside) :])
        return PurePath(absolute).relative_to(PurePath(absolute).anchor)  # outside the root
    name = getattr(value, "name", None)
    if isinstance(name, str) and name:
        return PurePath(os.path.basename(name))
    return PurePath(f"image-{index}")


def identify(
    value: Any, options: str, status: os.stat_result | None = None, cwd: str | None = None
) -> Provenance:
    """The provenance an output of ``value`` would have (blocking: a ``stat`` unless the
    input's ``status`` is given, or a digest; paths relative to ``cwd``)."""
    if is_remote(value):  # its stamp is the object's details: see _storage
        return Provenance(source=value, stamp="unknown", options=options)
    if isinstance(value, (str, os.PathLike)):
        path = os.path.normpath(os.path.join(cwd or os.getcwd(), os.fspath(value)))
        try:
            status = status or os.stat(path)
        except OSError:
            return Provenance(source=path, stamp="missing", options=options)
        return Provenance(
            source=path, stamp=f"{status.st_size}:{status.st_mtime_ns}", options=options
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Provenance(
            source=f"sha256:{hashlib.sha256(value).hexdigest()}", stamp="", options=options
        )
    if isinstance(value, Mapping) and isinstance(value.get("base64"), str):
        digest = hashlib.sha256(value["base64"].encode()).hexdigest()
        return Provenance(source=f"sha256-base64:{digest}", stamp="", options=options)
    return Provenance(source=None, stamp="", options=options)


def claim(claims: dict[Any, str], target: Any, key: str) -> bool:
    """Take ``target`` for the input ``key`` in ``claims``: True the first time, False when
    that input has it already; `OutputClashError` when another input has it."""
    if target not in claims:
        claims[target] = key
        return True
    other = claims[target]
    if other == key:
        return False
    raise OutputClashError(
        f"{other} and {key} would both make {target}: rename one, or run them into "
        "different output folders"
    )


class OutputTree:
    """A batch's output folder: targets, their claims, the provenance index, and the lock."""

    def __init__(self, folder: Path, root: Any, extension: str, *, overwrite: bool) -> None:
        self.folder = folder
        self.root = root
        self.extension = extension
        self._overwrite = overwrite
        self._claims: dict[Path, str] = {}
        self._indexes: dict[Path, dict[str, dict[str, Any]]] = {}
        self._lock: IO[bytes] | None = None
        self.cwd = os.getcwd()  # once: relative inputs are relative to the folder at the start
        self._writable: set[Path] = set()
        self._handles: dict[Path, int] = {}  # each folder's index, open for appending
        self._handles_lock = threading.Lock()

    def target(self, value: Any, index: int) -> Path:
        """Where ``value``'s result goes."""
        relative = relative_name(value, index, self.root, self.cwd)
        return mirrored_path(self.folder, relative, self.extension)

    def claim(self, target: Path, value: Any) -> bool:
        """Take ``target`` for ``value``: True the first time, False when ``value`` has it
        already (an input given twice is done once); `OutputClashError` when another
        input has it."""
        return claim(self._claims, target, _claim_key(value, self.cwd))

    def open(self) -> None:
        """Make the folder, prove it can be written, lock it, delete stale partial files.

        Blocking; raises the ``OSError`` that every image would meet otherwise.
        """
        check_folder_writable(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.folder / INDEX_NAME)  # the top index: one hidden file only
        for folder, _, names in os.walk(self.folder):
            for name in names:
                if is_partial_name(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))

    def close(self) -> None:
        """Let go of the folder."""
        with self._handles_lock:
            for handle in self._handles.values():
                os.close(handle)
            self._handles.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def verdict(self, target: Path, mine: Provenance) -> Verdict:
        """Whether ``target`` is done, to do, or someone else's (blocking: reads the index)."""
        if not os.path.lexists(target):
            return Verdict.TODO
        entry = self._index(target.parent).get(target.name)
        if entry is not None and mine.source is not None and entry["source"] == mine.source:
            same = entry["stamp"] == mine.stamp and entry["options"] == mine.options
            return Verdict.DONE if same else Verdict.TODO
        return Verdict.TODO if self._overwrite else Verdict.FOREIGN

    def check_place(self, target: Path, *, there: bool = True) -> None:
        """Raise the ``OSError`` that writing ``target`` would meet (blocking: its folder is
        checked once, the target each time unless ``there`` says nothing is there)."""
        if target.parent not in self._writable:
            check_folder_writable(target.parent)
            self._writable.add(target.parent)
        if there and os.path.isdir(target):
            raise IsADirectoryError(errno.EISDIR, "the output is a folder", str(target))

    def foreign(self, target: Path) -> ForeignOutputError:
        """The error for an output this input did not make."""
        return foreign_error(target)

    def record(self, target: Path, made: Provenance) -> None:
        """Note in the folder's index that ``target`` was made as ``made`` says (blocking: one
        appending write, atomic however many threads write beside it)."""
        line = made.line(target.name).encode()
        written = os.write(self._index_handle(target.parent), line)
        if written != len(line):  # a full disk: the line is torn, and read as no line at all
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target.parent / INDEX_NAME))
        self._index(target.parent)[target.name] = made.entry(target.name)

    def _index_handle(self, folder: Path) -> int:
        with self._handles_lock:
            if folder not in self._handles:
                self._handles[folder] = os.open(folder / INDEX_NAME, _APPEND_FLAGS, 0o666)
            return self._handles[folder]

    def _index(self, folder: Path) -> dict[str, dict[str, Any]]:
        if folder not in self._indexes:
            self._indexes[folder] = _read_index(folder / INDEX_NAME)
        return self._indexes[folder]


def _claim_key(value: Any, cwd: str) -> str:
    if is_remote(value):
        return str(value)
    if isinstance(value, (str, os.PathLike)):
        return os.path.normpath(os.path.join(cwd, os.fspath(value)))
    return f"<{type(value).__name__} at {id(value):#x}>"


def _read_index(path: Path) -> dict[str, dict[str, Any]]:
    """The latest line per output; a torn last line (a killed run) is ignored."""
    entries: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as lines:
        for line in lines:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = json.loads(line)
                entries[entry["output"]] = entry
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
