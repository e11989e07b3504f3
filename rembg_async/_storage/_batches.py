"""What a batch does differently when its inputs, outputs or manifest are remote.

A remote input's provenance is its object's details (size, and ETag or time): read with one
request before anything else, so that an input already done is skipped without reading it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from .._inputs import LocalRead, RemoteInputs, Source, local_source, read_local
from .._outputs import OutputClashError, OutputTree, Provenance, Verdict, identify
from .._threads import run_to_completion
from ._manifest import RemoteManifest
from ._stores import is_remote
from ._tree import RemoteOutputTree


def output_tree(
    remote: RemoteInputs,
    output_dir: str | os.PathLike[str] | None,
    root: Any,
    extension: str,
    *,
    overwrite: bool,
) -> OutputTree | RemoteOutputTree | None:
    """A batch's output folder, local or remote."""
    if output_dir is None:
        return None
    if isinstance(output_dir, str) and is_remote(output_dir):
        store = remote.stores.store(output_dir, remote.options)
        return RemoteOutputTree(output_dir, store, root, extension, overwrite=overwrite)
    return OutputTree(Path(output_dir), root, extension, overwrite=overwrite)


def manifest_place(remote: RemoteInputs, manifest: str | os.PathLike[str] | None) -> Any:
    """The manifest's place: a local path, a remote URL, or None."""
    if manifest is None or (isinstance(manifest, str) and is_remote(manifest)):
        return manifest
    return Path(manifest)


async def open_manifest(remote: RemoteInputs, url: str) -> RemoteManifest:
    """The remote manifest at ``url``, ready for lines."""
    return await RemoteManifest.open(remote.stores.store(url, remote.options), url)


def needs_async_plan(outputs: Any, value: Any) -> bool:
    """Whether an image's planning needs the network: a remote input or output folder."""
    return isinstance(outputs, RemoteOutputTree) or is_remote(value)


@attrs.frozen(kw_only=True)
class Plan:
    """An image's planning: its provenance, its output's verdict, the source to send (None:
    let ``remove()`` open it), or the problem that fails it unsent."""

    made: Provenance
    verdict: Verdict
    source: Source | None = None
    problem: Exception | None = None


async def plan_image(
    remote: RemoteInputs,
    outputs: OutputTree | RemoteOutputTree,
    value: Any,
    target: Any,
    options: str,
    skip_existing: bool,
) -> Plan:
    """Provenance and verdict of ``value``'s output at ``target``; unless it is skipped, the
    input opened and the output's place checked."""
    if is_remote(value):
        try:
            found = await remote.stat(value)
        except Exception as error:  # missing, refused: the item fails unsent
            return Plan(made=Provenance(source=value, stamp="", options=options),
                        verdict=Verdict.TODO, problem=error)  # fmt: skip
        made = Provenance(source=value, stamp=found.stamp, options=options)
        read = None
    else:
        read = await run_to_completion(_read_or_none, value)
        status = read.status if read is not None else None
        made = await run_to_completion(identify, value, options, status, outputs.cwd)
    verdict = await _verdict(outputs, target, made)
    if verdict is Verdict.FOREIGN or (verdict is Verdict.DONE and skip_existing):
        return Plan(made=made, verdict=verdict)
    try:
        if isinstance(outputs, OutputTree):
            await run_to_completion(outputs.check_place, target)
        source = None  # remove() opens it, and says what is wrong with it
        if is_remote(value):
            source = await remote.source(found)
        elif read is not None:
            source = local_source(Path(value), read)
    except Exception as error:  # the place cannot be written, the input is refused
        return Plan(made=made, verdict=verdict, problem=error)
    return Plan(made=made, verdict=verdict, source=source)


async def _verdict(
    outputs: OutputTree | RemoteOutputTree, target: Any, made: Provenance
) -> Verdict:
    if isinstance(outputs, RemoteOutputTree):
        return outputs.verdict(target, made)  # from its listing: no I/O
    return await run_to_completion(outputs.verdict, target, made)


def _read_or_none(value: Any) -> LocalRead | None:
    """A local input's file read, or None (not a path, or unreadable: ``remove()`` says so)."""
    if not isinstance(value, (str, os.PathLike)):
        return None
    try:
        return read_local(Path(value))
    except OSError:
        return None


async def dry_run_counts(
    remote: RemoteInputs,
    outputs: OutputTree | RemoteOutputTree,
    inputs: list[Any],
    options: str,
    redo: bool,
) -> dict[str, Any]:
    """``--dry-run``'s counts when inputs or the output folder are remote: each input's
    provenance from its object's details (one request, only when its output is there)."""
    counts: dict[str, Any] = {"send": 0, "done": 0, "refused": 0, "why": ""}
    if isinstance(outputs, RemoteOutputTree):
        await outputs.open()
    for index, value in enumerate(inputs):
        target: Any = outputs.target(value, index)
        try:
            if not outputs.claim(target, value):
                continue
        except OutputClashError as error:
            counts["refused"] += 1
            counts["why"] = str(error)
            continue
        verdict = await _verdict(outputs, target, await _provenance(remote, value, options))
        if verdict is Verdict.FOREIGN:
            counts["refused"] += 1
            counts["why"] = str(outputs.foreign(target))
        else:
            counts["done" if verdict is Verdict.DONE and not redo else "send"] += 1
    return counts


async def _provenance(remote: RemoteInputs, value: Any, options: str) -> Provenance:
    if not is_remote(value):
        return await run_to_completion(identify, value, options)
    try:
        stamp = (await remote.stat(value)).stamp
    except Exception:  # missing or refused: it would be sent, and fail
        stamp = ""
    return Provenance(source=value, stamp=stamp, options=options)
