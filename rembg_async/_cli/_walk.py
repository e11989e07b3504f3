"""``rembg-async remove``'s inputs, streamed: each INPUT (a file, a folder, a glob, a URL) walked
one folder at a time, and each input's place under ``-o`` worked out from its path and the few
INPUTs given: a catalogue of a million images is never held in memory."""

from __future__ import annotations

import fnmatch
import functools
import glob
import operator
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from .._contract import ALLOWED_EXTENSIONS
from .._imageinfo import HEAD_BYTES, sniff_kind
from .._storage._listing import expand_remote
from .._storage._stores import import_fsspec, is_remote


class Stopped(Exception):
    """The counting pass was told to stop (the batch ended first)."""


#: Checks a folder's image names before its inputs are yielded or counted (``None``: none);
#: raises `OutputClashError` when two would make one output.
FolderCheck = Callable[[str, list[str]], None]


class Inputs:
    """The inputs the INPUTs name, as path strings and URLs in a stable order (each folder
    sorted, walked afresh each time), and the place of each under ``-o`` (`place`). Nothing
    under ``exclude`` (the output folder) is taken."""

    def __init__(
        self,
        patterns: list[str],
        *,
        root: Path | None = None,
        exclude: Path | str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self._options = storage_options or {}
        self._excluded = os.path.abspath(exclude) if isinstance(exclude, Path) else None
        self._remote_excluded = exclude.rstrip("/") + "/" if isinstance(exclude, str) else None
        self._root = os.path.abspath(root) if root is not None else None
        # An INPUT given twice is walked once.
        self._patterns = [_parse(text) for text in dict.fromkeys(patterns)]

    def __iter__(self) -> Iterator[str]:
        return self.walk()

    def walk(self, check: FolderCheck | None = None) -> Iterator[str]:
        """The inputs; ``check`` sees each folder's names before any of them is yielded."""
        for pattern in self._patterns:
            yield from self._walk(pattern, check)

    def first_unmatched(self) -> list[str]:
        """The INPUTs that name nothing (each walked only up to its first input)."""
        return [p.text for p in self._patterns if next(self._walk(p, None), None) is None]

    def count(self, check: FolderCheck | None = None, stop: threading.Event | None = None) -> int:
        """How many inputs there are, walking the tree once more and keeping nothing per input
        (blocking); ``check`` sees each folder's names; `Stopped` when ``stop`` is set."""
        total = 0
        for pattern in self._patterns:
            if isinstance(pattern, Remote):
                total += sum(1 for _ in self._walk(pattern, check))
                continue
            for folder, names in self._folders(pattern, stop):
                if check is not None:
                    check(folder, names)
                total += len(names)
        files = [p.path for p in self._patterns if isinstance(p, File)]
        if check is not None and len(files) > 1:  # files given one by one, from any folder
            check(".", files)
        return total

    def _walk(self, pattern: Pattern, check: FolderCheck | None) -> Iterator[str]:
        if isinstance(pattern, Remote):
            for url, _ in expand_remote(pattern.text, self._options):
                if self._remote_excluded is None or not url.startswith(self._remote_excluded):
                    yield url  # not the outputs of an earlier run, under the input folder
            return
        for folder, names in self._folders(pattern, None):
            if check is not None:
                check(folder, names)
            prefix = "" if folder == "." else os.path.join(folder, "")
            for name in names:
                yield prefix + name

    def _folders(
        self, pattern: File | Folder | Glob, stop: threading.Event | None
    ) -> Iterator[tuple[str, list[str]]]:
        """(folder, its inputs' names, sorted) for each folder ``pattern`` takes inputs from."""
        if isinstance(pattern, File):
            if not self._is_excluded(os.path.abspath(pattern.path)):
                folder, name = os.path.split(pattern.path)
                yield folder or ".", [name]
            return
        top = pattern.start
        if self._is_excluded(os.path.abspath(top)):
            return
        stack = [(top, pattern.segments)]
        while stack:
            if stop is not None and stop.is_set():
                raise Stopped
            folder, segments = stack.pop()
            names, below = self._list(folder, segments)
            if names:
                yield folder, names
            stack.extend(reversed(below))

    def _list(
        self, folder: str, segments: tuple[str, ...] | None
    ) -> tuple[list[str], list[tuple[str, tuple[str, ...] | None]]]:
        """One folder's inputs and the folders below it to walk (with what is left of the glob)."""
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=operator.attrgetter("name"))
        except OSError:  # gone meanwhile, or not readable: as glob and rglob take it
            return [], []
        names: list[str] = []
        below: list[tuple[str, tuple[str, ...] | None]] = []
        here = folder != "."  # "sub", not "./sub", as glob and rglob name them
        for entry in entries:
            path = entry.path if here else entry.name
            if segments is None:  # a folder: every image, at any depth
                if _is_folder(entry):
                    if not self._is_excluded(os.path.abspath(path)):
                        below.append((path, None))
                elif _is_image(entry):
                    names.append(entry.name)
                continue
            rests = set(_matches(segments, entry.name))
            if () in rests and _is_file(entry):
                names.append(entry.name)
            for rest in sorted(rests - {()}):
                if _is_folder(entry, follow=True) and not self._is_excluded(os.path.abspath(path)):
                    below.append((path, rest))
        return names, below

    def _is_excluded(self, absolute: str) -> bool:
        excluded = self._excluded
        return excluded is not None and (
            absolute == excluded or absolute.startswith(os.path.join(excluded, ""))
        )

    def place(self, value: Any) -> PurePath:
        """Where ``value``'s output goes under ``-o``, before its extension changes: its path
        under the first INPUT that names it (or under ``root``), else its name."""
        text = str(value)
        if is_remote(text):
            for pattern in self._patterns:
                if isinstance(pattern, Remote):
                    found = pattern.below(text, self._options)
                    if found is not None:
                        return found
            return PurePosixPath(text.rstrip("/").rpartition("/")[2])
        if self._root is not None:
            below = _relative(text, self._root)
            return PurePath(below if below is not None else os.path.basename(text))
        for pattern in self._patterns:
            if isinstance(pattern, (Folder, Glob)):
                below = pattern.below(text)
                if below is not None:
                    return PurePath(below)
        return PurePath(os.path.basename(text))


class File:
    """An INPUT naming one file (or anything that is neither a folder nor a glob)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.path = str(Path(text))


class Folder:
    """An INPUT naming a folder: every image below it."""

    segments: tuple[str, ...] | None = None

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = str(Path(text))
        self._prefix = "" if self.start == "." else os.path.join(self.start, "")
        self._absolute = os.path.abspath(self.start)

    def below(self, value: str) -> str | None:
        """``value``'s path under the folder, or None when it is not under it."""
        walked = self._prefix or not os.path.isabs(value)
        if walked and value.startswith(self._prefix) and ".." not in value:  # a slice
            return value[len(self._prefix) :]
        return _relative(value, self._absolute)


class Glob:
    """An INPUT with wildcards: the files it matches (``**`` at any depth, hidden names only
    when the pattern names them, as ``glob`` has it), placed under the folder before the
    first wildcard."""

    def __init__(self, text: str) -> None:
        self.text = text
        parts = text.split(os.sep)
        first = next(index for index, part in enumerate(parts) if glob.has_magic(part))
        static = os.sep.join(parts[:first]) or (os.sep if text.startswith(os.sep) else ".")
        self.start = str(Path(static))
        self.segments: tuple[str, ...] | None = tuple(parts[first:])
        # Outputs go under the folder before the first wildcard, as they always have.
        prefix = Path(text.split("*")[0].split("?")[0].split("[")[0] or ".")
        base = prefix if text.endswith(os.sep) or prefix.is_dir() else prefix.parent
        self._base = os.path.abspath(base)
        self._start = os.path.abspath(self.start)

    def below(self, value: str) -> str | None:
        """``value``'s path under the glob's folder, or None when the glob does not match it."""
        inside = _relative(value, self._start)
        if inside is None or self.segments is None:
            return None
        if not _glob_matches(self.segments, inside.split(os.sep)):
            return None
        return _relative(value, self._base)


class Remote:
    """An INPUT that is a URL (``s3://bucket/in/``, ``s3://bucket/in/*.jpg``), through fsspec."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._base: str | None = None

    def below(self, url: str, options: dict[str, Any]) -> PurePosixPath | None:
        """``url``'s path under the folder or glob's folder, or None when it is not under it."""
        fsspec = import_fsspec(url)
        if self._base is None:
            path = fsspec.core.url_to_fs(self.text, **options)[1]
            magic = next((i for i, char in enumerate(path) if char in "*?["), None)
            self._base = path.rstrip("/") if magic is None else path[:magic].rpartition("/")[0]
        found = fsspec.core.url_to_fs(url, **options)[1]
        if not found.startswith(self._base + "/"):
            return None
        return PurePosixPath(found[len(self._base) :].lstrip("/"))


Pattern = File | Folder | Glob | Remote


def _parse(text: str) -> Pattern:
    if is_remote(text):
        return Remote(text)
    if os.path.isdir(text):
        return Folder(text)
    if glob.has_magic(text) and not os.path.exists(text):  # "[bold].png" is a file
        return Glob(text)
    return File(text)


def _is_folder(entry: os.DirEntry[str], *, follow: bool = False) -> bool:
    """A folder to walk into (a link to one only where a glob names it, as ``glob`` does;
    never while walking a whole folder, as ``rglob`` does not)."""
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_image(entry: os.DirEntry[str]) -> bool:
    """An image by its extension, or (whatever its name) by its first bytes."""
    name = entry.name
    if name.startswith(".") or not _is_file(entry):
        return False
    if os.path.splitext(name)[1][1:].lower() in ALLOWED_EXTENSIONS:
        return True
    try:
        with open(entry.path, "rb") as file:
            return sniff_kind(file.read(HEAD_BYTES)) is not None
    except OSError:
        return False


@functools.cache  # a glob has a few segments, matched against every name
def _segment(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def _segment_matches(pattern: str, name: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False  # hidden names only when the pattern names them, as glob has it
    if not glob.has_magic(pattern):
        return name == pattern
    return _segment(pattern).match(name) is not None


def _matches(segments: tuple[str, ...], name: str) -> Iterator[tuple[str, ...]]:
    """For a name in the folder the glob's ``segments`` apply to: what is left to match below
    it, for each way it matches (``()``: the name itself is matched)."""
    head, rest = segments[0], segments[1:]
    if head == "**":
        if rest:
            yield from _matches(rest, name)  # ** as no folder at all
        if not name.startswith("."):
            yield segments  # ** as this folder and more (or, last, any file below)
            if not rest:
                yield ()
        return
    if _segment_matches(head, name):
        yield rest


def _glob_matches(segments: tuple[str, ...], parts: list[str]) -> bool:
    """Whether a path's ``parts`` (under the glob's folder) match its ``segments``."""
    rests = {segments}
    for part in parts:
        rests = {rest for left in rests if left for rest in _matches(left, part)}
    return any(all(segment == "**" for segment in left) for left in rests)  # ** may be none


def _relative(value: str, folder: str) -> str | None:
    """``value``'s path under the absolute ``folder``, or None when it is not under it."""
    absolute = os.path.abspath(value)
    inside = os.path.join(folder, "")
    if os.path.normcase(absolute).startswith(os.path.normcase(inside)):
        return os.path.relpath(absolute, folder)
    return None
