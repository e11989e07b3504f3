"""What an output was made from, and the rules every output folder applies to it: an output is
done only when its index entry names this input (path and stamp, object details, or digest) and
these options; one of other provenance is never taken as done nor overwritten (unless told)."""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

import attrs

from .._inputs import LocalRead, RemoteInputs, RemoteObject, Source, read_local_or_none
from .._storage._stores import is_remote, remote_relative


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


@attrs.frozen(kw_only=True)
class Plan:
    """An image's planning: its provenance and verdict; unless skipped, its local file read or
    remote object opened (neither: the sending opens it), or the problem that fails it unsent."""

    made: Provenance | None = None
    verdict: Verdict = Verdict.TODO
    read: LocalRead | None = None
    source: Source | None = None
    problem: Exception | None = None


def judge(entry: Mapping[str, Any] | None, mine: Provenance, *, overwrite: bool) -> Verdict:
    """The verdict on an output that is there, whose index ``entry`` (or None) says its maker."""
    if entry is not None and mine.source is not None and entry["source"] == mine.source:
        same = entry["stamp"] == mine.stamp and entry["options"] == mine.options
        return Verdict.DONE if same else Verdict.TODO
    return Verdict.TODO if overwrite else Verdict.FOREIGN


def settled(verdict: Verdict, skip_existing: bool) -> bool:
    """Whether ``verdict`` ends an image unsent: someone else's output, or done and skipped."""
    return verdict is Verdict.FOREIGN or (verdict is Verdict.DONE and skip_existing)


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
    """``value``'s output path under the output folder, before its extension changes (a path
    relative to ``root`` from ``cwd``; a URL relative to a URL ``root``, else its whole path)."""
    if is_remote(value):
        return remote_relative(value, root)
    if isinstance(value, (str, os.PathLike)):
        if callable(root):
            return PurePath(root(value))
        cwd = cwd or os.getcwd()
        # Strings, not Path.relative_to: this runs on the event loop for every image.
        absolute = os.path.normpath(os.path.join(cwd, os.fspath(value)))
        inside = root_prefix(root, cwd)
        if absolute.startswith(inside) or absolute + os.sep == inside:
            return PurePath(absolute[len(inside) :])
        return PurePath(absolute).relative_to(PurePath(absolute).anchor)  # outside the root
    name = getattr(value, "name", None)
    if isinstance(name, str) and name:
        return PurePath(os.path.basename(name))
    return PurePath(f"image-{index}")


def root_prefix(root: str | os.PathLike[str] | None, cwd: str) -> str:
    """``root``'s absolute path, ending in a separator: what the paths below it start with."""
    base = os.path.normpath(os.path.join(cwd, os.fspath(root if root is not None else "")))
    return base if base.endswith(os.sep) else base + os.sep


def identify(
    value: Any, options: str, status: os.stat_result | None = None, cwd: str | None = None
) -> Provenance:
    """The provenance an output of ``value`` would have (blocking: a ``stat``, or a digest)."""
    if is_remote(value):  # its stamp is the object's details: see `stat_remote`
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


def read_and_identify(value: Any, options: str, cwd: str) -> tuple[LocalRead | None, Provenance]:
    """A local input read, with a provenance stamped by its own ``fstat`` (what was sent)."""
    read = read_local_or_none(value)
    return read, identify(value, options, read.status if read is not None else None, cwd)


def claim(claims: dict[Any, str], target: Any, value: Any, cwd: str) -> bool:
    """Take ``target`` for ``value``: True the first time, False when it has it (an input given
    twice is done once); `OutputClashError` when another input has it."""
    key = _claim_key(value, cwd)
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


def read_entries(lines: Iterable[str], into: dict[str, dict[str, Any]]) -> None:
    """Index lines into ``into``, the latest per output; a torn or foreign line is skipped."""
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry = json.loads(line)
            into[entry["output"]] = entry


def _claim_key(value: Any, cwd: str) -> str:
    if is_remote(value):
        return str(value)
    if isinstance(value, (str, os.PathLike)):
        return os.path.normpath(os.path.join(cwd, os.fspath(value)))
    return f"<{type(value).__name__} at {id(value):#x}>"


async def stat_remote(
    remote: RemoteInputs, value: str, options: str
) -> tuple[RemoteObject | None, Provenance, Exception | None]:
    """A remote input's details and provenance (one request), or the problem that fails it."""
    try:
        found = await remote.stat(value)
    except Exception as error:  # the item fails unsent, with this
        return None, Provenance(source=value, stamp="", options=options), error
    return found, Provenance(source=value, stamp=found.stamp, options=options), None


async def open_remote(remote: RemoteInputs, found: RemoteObject, plan: Plan) -> Plan:
    """``plan`` with the remote input opened and checked, or the problem that fails it."""
    try:
        return attrs.evolve(plan, source=await remote.source(found))
    except Exception as error:  # refused: too large, not an image…
        return attrs.evolve(plan, problem=error)
