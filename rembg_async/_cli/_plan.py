"""``rembg-async remove``'s inputs, listed up front, where their outputs go, and its
``--dry-run``."""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path, PurePath
from typing import Any

from .._batch import failed_in, failed_inputs
from .._client import AsyncRembg
from .._contract import ALLOWED_EXTENSIONS
from .._exceptions import RembgError
from .._imageinfo import HEAD_BYTES, extension_for, sniff_kind
from .._inputs import RemoteInputs, content_digest, open_input
from .._options import RemoveOptions
from .._outputs import (
    dry_run_counts,
    options_key,
    output_folder,
)
from .._storage._listing import expand_remote, read_text
from .._storage._stores import is_remote


def expand_inputs(
    patterns: list[str],
    *,
    root: Path | None = None,
    exclude: Path | str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, PurePath]:
    """Every input, with the path its output takes under ``-o``: files as given (their name,
    or their path under ``root``); folders as every image inside them (recursively), relative
    to the folder; globs expanded, relative to the folder before the first wildcard. Nothing
    under ``exclude`` (the output folder) is taken. Listed up front: clashes are refused, and
    a dry run can count, before anything is sent. A folder or glob that names no input
    raises `NothingMatchedError`. A URL (``s3://bucket/in/``, ``s3://bucket/in/*.jpg``) is
    listed through fsspec, its images told by their extensions.
    """
    found: dict[str, PurePath] = {}
    empty = []
    excluded = os.path.abspath(exclude) if isinstance(exclude, Path) else None
    folders: dict[Path, str] = {}  # absolute
    for pattern in patterns:
        matched = False
        if is_remote(pattern):
            for url, below in expand_remote(pattern, storage_options or {}):
                if isinstance(exclude, str) and url.startswith(exclude.rstrip("/") + "/"):
                    continue  # the outputs of an earlier run, under the input folder
                found.setdefault(url, below)
                matched = True
            if not matched:
                empty.append(pattern)
            continue
        for path, base in _expand(pattern):
            absolute = os.path.abspath(path)
            if excluded is not None and _below(absolute, excluded) is not None:
                continue
            folder = root if root is not None else base
            if folder not in folders:  # once per folder, not once per input under it
                folders[folder] = os.path.abspath(folder)
            relative = _below(absolute, folders[folder])
            found.setdefault(str(path), PurePath(relative or path.name))
            matched = True
        if not matched:
            empty.append(pattern)
    if empty:
        raise NothingMatchedError(empty)
    return found


class NothingMatchedError(ValueError):
    """Folders or globs that name no image (a typo, most often): refused before anything runs."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns
        named = ", ".join(repr(pattern) for pattern in patterns)
        super().__init__(f"no image matches {named}")


def _expand(pattern: str) -> Iterator[tuple[Path, Path]]:
    """(path, the folder it is relative to) for each input ``pattern`` names."""
    if os.path.isdir(pattern):
        for path in sorted(Path(pattern).rglob("*")):
            if _is_image_file(path):
                yield path, Path(pattern)
    elif glob.has_magic(pattern) and not os.path.exists(pattern):  # "[bold].png" is a file
        static = Path(pattern.split("*")[0].split("?")[0].split("[")[0] or ".")
        base = static if pattern.endswith(os.sep) or static.is_dir() else static.parent
        for name in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isfile(name):
                yield Path(name), base
    else:
        yield Path(pattern), Path(pattern).parent


def _below(path: str, folder: str) -> str | None:
    """Absolute ``path`` relative to absolute ``folder`` ("" for the folder itself), or None
    when it is not under it: string arithmetic, as it is asked for every input."""
    if os.path.normcase(path) == os.path.normcase(folder):  # Windows: names without case
        return ""
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    if not os.path.normcase(path).startswith(os.path.normcase(prefix)):
        return None
    if len(os.path.normcase(prefix)) != len(prefix):  # a letter that folds to two ("İ")
        return os.path.relpath(path, folder)
    return path[len(prefix) :]


def _is_image_file(path: Path) -> bool:
    """An image by its extension, or (whatever its name) by its first bytes."""
    if path.name.startswith(".") or not path.is_file():
        return False
    if path.suffix.lower().lstrip(".") in ALLOWED_EXTENSIONS:
        return True
    try:
        with path.open("rb") as file:
            return sniff_kind(file.read(HEAD_BYTES)) is not None
    except OSError:
        return False


async def dry_run(
    client: AsyncRembg, args: argparse.Namespace, options: RemoveOptions, inputs: dict[str, Any]
) -> int:
    """``--dry-run``: what would be sent, what the cache would serve, what is done, what is
    refused; the credits left."""
    served = cache_lookup(client, options)
    if args.base64:
        counts: dict[str, Any] = {"send": 0, "cached": 0, "done": 0, "refused": 0, "why": ""}
        for value in inputs:
            counts["cached" if served is not None and await served(value) else "send"] += 1
    else:
        counts = await _counts(client, args, options, inputs, served)
    print(f"inputs: {len(inputs)}")
    print(f"would send: {counts['send']} image(s), costing at most {counts['send']} credit(s)")
    if served is not None:
        print(f"cached: {counts['cached']} image(s) the cache would serve, costing nothing")
    print(f"already done: {counts['done']}")
    if counts["refused"]:
        print(f"refused: {counts['refused']} ({counts['why']})")
    print(f"credits left: {await _credits_left(client)}")
    if args.max_credits is not None and counts["send"] > args.max_credits:
        print(f"--max-credits {args.max_credits}: the run would stop after {args.max_credits}")
    return 0


async def _counts(
    client: AsyncRembg,
    args: argparse.Namespace,
    options: RemoveOptions,
    inputs: dict[str, Any],
    served: Callable[[Any], Awaitable[bool]] | None,
) -> dict[str, Any]:
    """What the output folder (local or remote, through the client's stores) says of each
    input."""
    remote = RemoteInputs(stores=client._stores, options=None)  # the client's storage_options
    extension = extension_for(options.output_format)
    tree = output_folder(
        remote, args.output_dir, root_of(inputs), extension, overwrite=args.overwrite
    )
    assert tree is not None
    key = options_key(options.form_fields())
    return await dry_run_counts(tree, list(inputs), key, args.redo, served)


def cache_lookup(
    client: AsyncRembg, options: RemoveOptions
) -> Callable[[Any], Awaitable[bool]] | None:
    """Whether the client's result cache holds a sound answer for an input with ``options``
    (None: the client has no cache). It reads each input once, to digest it; sends nothing."""
    seam = client._exchange.cache
    if seam is None:
        return None
    fields = options.form_fields()
    remote = RemoteInputs(stores=client._stores, options=None)  # the client's storage_options

    async def served(value: Any) -> bool:
        try:
            source = await open_input(value, remote=remote)
        except (RembgError, OSError):  # an input the batch would refuse: not served either
            return False
        try:
            digest = await content_digest(source)
        finally:
            source.close()
        return await seam.lookup(seam.key(digest, fields)) is not None

    return served


async def _credits_left(client: AsyncRembg) -> str:
    try:
        usage = await client.membership_usage(billing_cycle=True)
    except RembgError as error:
        return f"unknown ({error})"
    cycle = usage.billing_cycle
    included = (
        cycle.remaining_included_credits
        if cycle is not None
        else max(0, usage.credits - usage.api_usage - usage.app_usage)
    )
    return (
        f"{included + usage.prepaid_credits} ({included} included in this cycle, "
        f"{usage.prepaid_credits} prepaid; plan {usage.membership})"
    )


def inputs_of(args: argparse.Namespace) -> dict[str, PurePath]:
    """The inputs of ``remove``: its INPUTs; with ``--retry-failed MANIFEST`` only those that
    failed in it, placed under ``-o`` as the INPUTs place them (by name, or under ``--root``,
    when no INPUT names them). ValueError says what is wrong."""
    exclude = None if args.base64 else args.output_dir
    options = args.storage_options
    listed = (
        expand_inputs(args.inputs, root=args.root, exclude=exclude, storage_options=options)
        if args.inputs
        else {}
    )
    if args.retry_failed is None:
        return listed
    try:
        if is_remote(args.retry_failed):
            failed = failed_in(read_text(args.retry_failed, options or {}))
        else:
            failed = failed_inputs(args.retry_failed)
    except (OSError, ValueError, KeyError) as error:  # missing, unreadable, not a manifest
        raise ValueError(f"cannot read the manifest {str(args.retry_failed)!r}: {error}") from None
    placed = {name: listed[name] for name in failed if name in listed}
    rest = [name for name in failed if name not in listed]
    for name, relative in expand_inputs(rest, root=args.root, storage_options=options).items():
        placed.setdefault(name, relative)
    return placed


def check_manifest(path: Path | str | None) -> None:
    """Refuse a manifest that cannot be written before anything is sent (OSError); a remote
    one is written at the end (and every few seconds)."""
    if path is not None and not is_remote(path):
        with open(path, "a", encoding="utf-8"):
            pass


def root_of(inputs: dict[str, PurePath]) -> Callable[[Any], PurePath]:
    """Where each input's output goes under ``-o``, as `expand_inputs` placed it (by name when
    it did not list it)."""
    return lambda value: inputs.get(str(value), PurePath(Path(str(value)).name))


def batch_arguments(args: argparse.Namespace, inputs: dict[str, PurePath]) -> dict[str, Any]:
    """remove_many's arguments for files (none with ``--base64``: results are printed)."""
    if args.base64:
        return {}
    return {
        "output_dir": args.output_dir,
        "root": root_of(inputs),
        "skip_existing": not args.redo,
        "overwrite": args.overwrite,
        "manifest": args.manifest,
        "storage_options": args.storage_options or None,
    }
