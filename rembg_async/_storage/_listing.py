"""The command line's remote inputs (``s3://bucket/in/``, ``s3://bucket/in/*.jpg``), listed
through fsspec before anything is sent, and its ``--storage-option KEY=VALUE``."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from .._contract import ALLOWED_EXTENSIONS
from ._stores import import_fsspec, protocol_of


def expand_remote(pattern: str, options: Mapping[str, Any]) -> Iterator[tuple[str, PurePosixPath]]:
    """(URL, its path relative to the folder or glob given) for each image ``pattern`` names:
    a folder (ends in ``/``, or is one) as every image below it by extension, a glob as its
    matches, else the one object. Blocking: the command line lists before its loop starts."""
    fsspec = import_fsspec(pattern)
    fs, path = fsspec.core.url_to_fs(pattern, **options)
    protocol = protocol_of(pattern)
    if any(char in path for char in "*?["):
        base = _static_prefix(path)
        for found in sorted(fs.glob(path)):
            if fs.isfile(found):
                yield _url(fs, found, protocol), PurePosixPath(_below(found, base))
    elif pattern.endswith("/") or fs.isdir(path):
        base = path.rstrip("/")
        for found in sorted(fs.find(base)):
            if _is_image_name(found):
                yield _url(fs, found, protocol), PurePosixPath(_below(found, base))
    else:
        yield pattern, PurePosixPath(posixpath.basename(path))


def _url(fs: Any, path: str, protocol: str | None) -> str:
    url = str(fs.unstrip_protocol(path))
    return url if protocol is None or url.startswith(f"{protocol}://") else f"{protocol}://{path}"


def _static_prefix(path: str) -> str:
    """The folder above a glob's first wildcard."""
    for index, char in enumerate(path):
        if char in "*?[":
            return path[:index].rpartition("/")[0]
    return posixpath.dirname(path)


def _below(path: str, base: str) -> str:
    return path[len(base) :].lstrip("/") if base and path.startswith(base) else path


def _is_image_name(path: str) -> bool:
    name = posixpath.basename(path)
    extension = name.rpartition(".")[2].lower()
    hidden = name.startswith(".") or "/.rembg-async-index/" in path
    return not hidden and extension in ALLOWED_EXTENSIONS


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
