"""What a ``rembg-async remove`` run is (`Job`): its inputs (streamed: `_walk`), those
``--retry-failed`` takes from a manifest, where their outputs go, and its ``--dry-run``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from .._batch import failed_in
from .._client import AsyncRembg
from .._exceptions import RembgError
from .._imageinfo import extension_for
from .._inputs import RemoteInputs, content_digest, open_input
from .._options import RemoveOptions
from .._outputs import OutputFolder, dry_run_counts, options_key, output_folder, targets_of
from .._paths import safe_leaf
from .._storage._stores import Stores, import_fsspec, is_remote
from ._walk import FolderCheck, Inputs


class Failed:
    """``--retry-failed``'s inputs: those whose latest line in the manifest failed (held: only
    they, not every input the manifest names), placed as the INPUTs given place them."""

    def __init__(self, names: list[str], listed: Inputs) -> None:
        self._names = names
        self.place = listed.place

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def walk(self, check: FolderCheck | None = None) -> Iterator[str]:
        """The inputs, all checked by ``check`` first."""
        self.count(check)
        return iter(self._names)

    def count(self, check: FolderCheck | None = None, stop: object = None) -> int:
        """How many there are; ``check`` sees them all at once (they are few, and held)."""
        if check is not None:
            check(".", self._names)
        return len(self._names)


def inputs_of(args: argparse.Namespace) -> Inputs | Failed:
    """The inputs of ``remove``, streamed: its INPUTs; with ``--retry-failed MANIFEST`` only
    those that failed in it, placed under ``-o`` as the INPUTs place them (by name, or under
    ``--root``, when no INPUT names them). ValueError when an INPUT names nothing (each is
    walked up to its first input only: a typo, most often), or says what else is wrong."""
    exclude = None if args.base64 else args.output_dir
    listed = Inputs(
        args.inputs, root=args.root, exclude=exclude, storage_options=args.storage_options
    )
    unmatched = listed.first_unmatched()
    if unmatched:
        raise ValueError(f"no image matches {', '.join(map(repr, unmatched))}")
    if args.retry_failed is None:
        return listed
    try:
        names = failed_in(_manifest_lines(args.retry_failed, args.storage_options or {}))
    except (OSError, ValueError, KeyError, TypeError) as error:  # missing, not a manifest
        raise ValueError(f"cannot read the manifest {str(args.retry_failed)!r}: {error}") from None
    return Failed(names, listed)


def _manifest_lines(place: Any, options: dict[str, Any]) -> Iterator[str]:
    """A manifest's lines as they are read, local or remote (a URL, through fsspec)."""
    if is_remote(place):
        opened = import_fsspec(place).open(place, "rt", encoding="utf-8", **options)
    else:
        opened = open(place, encoding="utf-8")  # noqa: SIM115  # closed by the with below
    with opened as lines:
        yield from lines


def check_manifest(path: Path | str | None) -> None:
    """Refuse a manifest that cannot be written before anything is sent (OSError); a remote
    one is written at the end (and every few seconds)."""
    if path is not None and not is_remote(path):
        with open(path, "a", encoding="utf-8"):
            pass


@attrs.frozen(kw_only=True)
class Job:
    """One ``remove`` run: its arguments, the options and inputs made of them, where it sends."""

    args: argparse.Namespace
    options: RemoveOptions
    inputs: Inputs | Failed
    base_url: str | None = None
    api_key: str | None = None

    def folder_check(self) -> FolderCheck | None:
        """The folders' clash check (None with ``--base64``: nothing is written): two images of
        a folder that would make one output (``x.png`` and ``x.jpg``, both ``x.webp``) raise
        `OutputClashError` with the output folder's message, before any is sent."""
        if self.args.base64:
            return None
        tree = self._tree(RemoteInputs(stores=Stores(), options=self.args.storage_options or {}))
        extension = extension_for(self.options.output_format)

        def check(folder: str, names: list[str]) -> None:
            if len({safe_leaf(name, extension) for name in names}) < len(names):
                prefix = "" if folder == "." else os.path.join(folder, "")
                targets_of(tree, [prefix + name for name in names])  # the exact targets, only now

        return check

    def _tree(self, remote: RemoteInputs) -> OutputFolder:
        """The output folder (local or remote, reached through ``remote``)."""
        extension = extension_for(self.options.output_format)
        output_dir, overwrite = self.args.output_dir, self.args.overwrite
        tree = output_folder(remote, output_dir, self.inputs.place, extension, overwrite=overwrite)
        assert tree is not None
        return tree

    def batch_arguments(self) -> dict[str, Any]:
        """remove_many's arguments for files (none with ``--base64``: results are printed)."""
        args = self.args
        if args.base64:
            return {}
        return {
            "output_dir": args.output_dir,
            "root": self.inputs.place,
            "skip_existing": not args.redo,
            "overwrite": args.overwrite,
            "manifest": args.manifest,
            "storage_options": args.storage_options or None,
        }

    async def dry_run(self, client: AsyncRembg) -> int:
        """``--dry-run``: what would be sent, what the cache would serve, what is done, what is
        refused; the credits left. The inputs are walked once, as the run would walk them,
        and counted on the way."""
        args = self.args
        served = cache_lookup(client, self.options)
        if args.base64:
            counts: dict[str, Any] = {"inputs": 0, "send": 0, "cached": 0, "done": 0, "refused": 0}
            for value in self.inputs:
                counts["inputs"] += 1
                counts["cached" if served is not None and await served(value) else "send"] += 1
        else:  # the output folder, through the client's stores and storage_options
            tree = self._tree(RemoteInputs(stores=client._stores, options=None))
            key = options_key(self.options.form_fields())
            counts = await dry_run_counts(tree, self.inputs, key, args.redo, served)
        print(f"inputs: {counts['inputs']}")
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
