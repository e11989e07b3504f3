"""The command line's remote inputs (a folder, a glob, an object), listed through fsspec before
anything is sent, and its ``--storage-option KEY=VALUE``."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from .._contract import ALLOWED_EXTENSIONS
from ._stores import import_fsspec, protocol_of

_WILDCARDS = "*?["


def expand_remote(pattern: str, options: Mapping[str, Any]) -> Iterator[tuple[str, PurePosixPath]]:
    """(URL, path relative to the folder or glob) of each image ``pattern`` names: a folder
    (ends in ``/``, or is one) as every image below it, a glob as its matches, else the object.
    Blocking: the command line lists before its loop starts."""
    fs, path = import_fsspec(pattern).core.url_to_fs(pattern, **options)
    if any(char in path for char in _WILDCARDS):
        base, found, wanted = _static_prefix(path), fs.glob(path), fs.isfile
    elif pattern.endswith("/") or fs.isdir(path):
        base = path.rstrip("/")
        found, wanted = fs.find(base), _is_image_name
    else:
        yield pattern, PurePosixPath(posixpath.basename(path))
        return
    protocol = protocol_of(pattern)
    for name in sorted(found):
        if wanted(name):
            yield _url(fs, name, protocol), PurePosixPath(_below(name, base))


def _url(fs: Any, path: str, protocol: str | None) -> str:
    url = str(fs.unstrip_protocol(path))
    return url if protocol is None or url.startswith(f"{protocol}://") else f"{protocol}://{path}"


def _static_prefix(path: str) -> str:
    """The folder above a glob's first wildcard."""
    first = min(index for index, char in enumerate(path) if char in _WILDCARDS)
    return path[:first].rpartition("/")[0]


def _below(path: str, base: str) -> str:
    return path[len(base) :].lstrip("/") if base and path.startswith(base) else path


def _is_image_name(path: str) -> bool:
    name = posixpath.basename(path)
    hidden = name.startswith(".") or "/.rembg-async-index/" in path
    return not hidden and name.rpartition(".")[2].lower() in ALLOWED_EXTENSIONS


def parse_storage_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as fsspec's keywords: a dotted key nests
    (``client_kwargs.endpoint_url=…``), a JSON value (``true``, ``3``, ``{…}``) is decoded."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--storage-option needs KEY=VALUE, not {pair!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        *parents, last = key.split(".")
        place = options
        for parent in parents:
            place = place.setdefault(parent, {})
        place[last] = value
    return options
