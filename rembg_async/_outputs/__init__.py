"""A batch's output folder, local (`_local`) or remote (`_remote`), behind one `OutputFolder`
shape that the batch plans each image through, never asking which kind it holds; the
provenance rules (`_provenance`), per-folder state (`_folders`) and the manifest (`_manifest`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from .._download import KeptTarget
from .._inputs import RemoteInputs, async_iterator
from .._storage._sinks import RemoteTarget
from .._storage._stores import is_remote
from ._local import INDEX_NAME, OutputTree
from ._manifest import Manifest, RemoteManifest, manifest_place, open_manifest
from ._provenance import (
    ForeignOutputError,
    OutputClashError,
    Plan,
    Provenance,
    Verdict,
    claim,
    foreign_error,
    options_key,
    settled,
)
from ._remote import RemoteOutputTree

__all__ = [
    "INDEX_NAME",
    "ForeignOutputError",
    "Manifest",
    "OutputClashError",
    "OutputFolder",
    "OutputTree",
    "Plan",
    "Provenance",
    "RemoteManifest",
    "RemoteOutputTree",
    "Verdict",
    "dry_run_counts",
    "foreign_error",
    "manifest_place",
    "open_manifest",
    "options_key",
    "output_folder",
    "settled",
    "targets_of",
]


class OutputFolder(Protocol):
    """What a batch needs of its output folder, local or remote."""

    #: The current folder when the run started: relative inputs are relative to it.
    cwd: str

    def probe(self) -> OutputFolder:
        """A fresh folder of the same place, with no claims: to work out clashes up front."""

    def target(self, value: Any, index: int) -> Any:
        """Where ``value``'s result goes (a path, or a URL)."""

    async def claim(self, target: Any, value: Any) -> bool:
        """Take ``target`` for ``value`` (see `_provenance.claim`), held until `release`."""

    def release(self, target: Any) -> None:
        """The batch is done with ``target`` (claimed): its folder may be let go."""

    async def open(self) -> None:
        """Get the folder ready; an ``OSError`` every image would meet stops the batch."""

    async def plan(self, value: Any, target: Any, options: str, *, skip_existing: bool) -> Plan:
        """Provenance and verdict of ``value``'s output; unless settled, its input read/opened."""

    async def plan_many(
        self, pairs: list[tuple[Any, Any]], options: str, *, skip_existing: bool
    ) -> list[Plan | OSError]:
        """`plan` of each ``(value, target)``, in as few calls as may be."""

    async def verdict_of(self, value: Any, target: Any, options: str) -> Verdict:
        """The verdict alone (a dry run): nothing read but what provenance needs."""

    def keep(self, target: Any, made: Provenance) -> KeptTarget | RemoteTarget:
        """Where the result goes, recorded in the folder's index once it is in place."""

    async def close(self) -> None:
        """Record what is waiting and let go of the folder."""


def targets_of(outputs: OutputFolder, inputs: list[Any] | tuple[Any, ...]) -> list[Any]:
    """A listed batch's targets, before anything is sent: `OutputClashError` for a clash."""
    probe = outputs.probe()
    targets = [probe.target(value, index) for index, value in enumerate(inputs)]
    claims: dict[Any, str] = {}  # the inputs are all in memory already: so may their claims be
    for target, value in zip(targets, inputs, strict=True):
        claim(claims, target, value, probe.cwd)
    return targets


def output_folder(
    remote: RemoteInputs,
    output_dir: str | os.PathLike[str] | None,
    root: Any,
    extension: str,
    *,
    overwrite: bool,
) -> OutputTree | RemoteOutputTree | None:
    """A batch's output folder, local or remote (None for none)."""
    if output_dir is None:
        return None
    if isinstance(output_dir, str) and is_remote(output_dir):
        return RemoteOutputTree(output_dir, remote, root, extension, overwrite=overwrite)
    return OutputTree(Path(output_dir), root, extension, overwrite=overwrite, remote=remote)


async def dry_run_counts(
    outputs: OutputFolder,
    inputs: Iterable[Any] | AsyncIterable[Any],
    options: str,
    redo: bool,
    cached: Callable[[Any], Awaitable[bool]] | None = None,
) -> dict[str, Any]:
    """``--dry-run``'s counts: inputs, to send, ``cached``, done, refused (and why); nothing
    per input."""
    counts: dict[str, Any] = {"inputs": 0, "send": 0, "cached": 0, "done": 0, "refused": 0}
    try:
        async for value in async_iterator(inputs):
            target = outputs.target(value, counts["inputs"])  # its index: the inputs before it
            counts["inputs"] += 1
            try:
                if not await outputs.claim(target, value):
                    continue
                verdict = await outputs.verdict_of(value, target, options)
            except OutputClashError as error:
                counts["refused"] += 1
                counts["why"] = str(error)
                continue
            finally:
                outputs.release(target)
            if verdict is Verdict.FOREIGN:
                counts["refused"] += 1
                counts["why"] = str(foreign_error(target))
            elif verdict is Verdict.DONE and not redo:
                counts["done"] += 1
            else:
                counts["cached" if cached is not None and await cached(value) else "send"] += 1
    finally:
        await outputs.close()
    return counts
